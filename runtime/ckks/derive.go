package ckks

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// ForProgram returns a client for another program on the same CKKS
// parameters that shares this client's secret key: the data owner of a
// program split into segments (see runtime/segment) generates each
// segment's evaluation keys, and decrypts any segment's outputs, under the
// one secret key its inputs are encrypted with.
func (c *Client) ForProgram(p *ckksir.Program) (*Client, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	return c.derive(pl)
}

// derive returns a client on pl sharing c's secret key, encoder, encryptor
// and decryptor, which pl's parameters must therefore equal.
func (c *Client) derive(pl *plan) (*Client, error) {
	a, b := c.plan.prog.Params, pl.prog.Params
	if a.LogN != b.LogN || a.LogScale != b.LogScale || !slices.Equal(a.LogQ, b.LogQ) || !slices.Equal(a.LogP, b.LogP) ||
		c.plan.params.XsHammingWeight() != pl.params.XsHammingWeight() {
		return nil, fmt.Errorf("ckks: the program's parameters %s differ from the client's %s", b, a)
	}
	return &Client{plan: pl, sk: c.sk, ecd: c.ecd, enc: c.enc, dec: c.dec}, nil
}

// LeaksSecretKey reports whether data holds any 64-byte run of the
// client's serialized secret key (its coefficients as stored, in the NTT
// domain over the Q and P primes), at any offset: the audit a test of the
// network path runs over every byte sent to a worker. It reads data once.
func (c *Client) LeaksSecretKey(data []byte) (bool, error) {
	sk, err := c.sk.MarshalBinary()
	if err != nil {
		return false, fmt.Errorf("ckks: serializing the secret key: %w", err)
	}
	const w = 64
	// Index every 8-byte-aligned window of the key by its first word; the
	// serialization's small header fields are skipped by requiring a
	// window of non-trivial words.
	windows := map[uint64][]int{}
	for i := 0; i+w <= len(sk); i += 8 {
		first := binary.LittleEndian.Uint64(sk[i:])
		if first < 1<<20 {
			continue // a length field or a zero coefficient: too common
		}
		windows[first] = append(windows[first], i)
	}
	for off := 0; off+w <= len(data); off++ {
		for _, i := range windows[binary.LittleEndian.Uint64(data[off:])] {
			if string(data[off:off+w]) == string(sk[i:i+w]) {
				return true, nil
			}
		}
	}
	return false, nil
}

// WriteTo streams the serialization MarshalBinary returns to w, without
// building it in memory: the bootstrapping keys included.
func (k *EvaluationKeys) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(evkMagic)
	if err != nil {
		return int64(n), err
	}
	m, err := keyStream{k}.WriteTo(w)
	return int64(n) + m, err
}
