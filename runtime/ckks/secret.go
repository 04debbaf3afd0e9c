package ckks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// skMagic opens a serialized secret key, followed by the length (uint32
// little-endian) of the description of the parameters it belongs to, that
// description, and the key (Lattigo's serialization, NTT and Montgomery
// form over the Q and P primes).
var skMagic = []byte("ccSK\x01")

// paramsDescription identifies the parameters and secret distribution a
// secret key belongs to.
func (pl *plan) paramsDescription() string {
	return fmt.Sprintf("%s, secret Hamming weight %d", pl.prog.Params, pl.params.XsHammingWeight())
}

// WriteSecretKey writes the client's secret key, with a description of
// the parameters it belongs to, to w: for a data owner that keeps its key
// between runs, so that the evaluation keys it uploaded to workers stay
// valid. Whoever reads what it writes decrypts everything encrypted under
// the key: write it only to a private file (mode 0600), never to the
// network.
func (c *Client) WriteSecretKey(w io.Writer) error {
	desc := c.plan.paramsDescription()
	var hdr bytes.Buffer
	hdr.Write(skMagic)
	binary.Write(&hdr, binary.LittleEndian, uint32(len(desc)))
	hdr.WriteString(desc)
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return err
	}
	_, err := c.sk.WriteTo(w)
	return err
}

// NewInterfaceClientWithSecretKey is NewInterfaceClient with the secret
// key WriteSecretKey wrote (data) instead of a fresh one. The key must
// belong to the interface's parameters.
func NewInterfaceClientWithSecretKey(iface *ckksir.Program, keys *KeyNeeds, data []byte) (*Client, error) {
	pl, err := newInterfacePlan(iface, keys)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(data, skMagic) || len(data) < len(skMagic)+4 {
		return nil, fmt.Errorf("ckks: not a serialized secret key (bad header)")
	}
	rest := data[len(skMagic):]
	n := binary.LittleEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) > uint64(len(rest)) || n > 4096 {
		return nil, fmt.Errorf("ckks: truncated secret key")
	}
	if desc, want := string(rest[:n]), pl.paramsDescription(); desc != want {
		return nil, fmt.Errorf("ckks: the secret key belongs to the parameters %s, the program has %s", desc, want)
	}
	// Check the layout (a ring.Poly over the Q primes, one over the P
	// primes, nothing after) before Lattigo allocates what it announces.
	body := rest[n:]
	r := &wireReader{b: body}
	if err := r.poly(uint64(pl.params.N()), pl.params.MaxLevelQ()+1, "secret key (Q)"); err != nil {
		return nil, fmt.Errorf("ckks: malformed secret key: %w", err)
	}
	if err := r.poly(uint64(pl.params.N()), pl.params.MaxLevelP()+1, "secret key (P)"); err != nil {
		return nil, fmt.Errorf("ckks: malformed secret key: %w", err)
	}
	if r.pos != len(body) {
		return nil, fmt.Errorf("ckks: malformed secret key: %d trailing bytes", len(body)-r.pos)
	}
	sk := rlwe.NewSecretKey(pl.params)
	if err := protect("reading the secret key", func() error { return readStrict(sk, body) }); err != nil {
		return nil, fmt.Errorf("ckks: reading the secret key: %w", err)
	}
	if sk.Value.Q.N() != pl.params.N() || sk.LevelQ() != pl.params.MaxLevelQ() || sk.LevelP() != pl.params.MaxLevelP() {
		return nil, fmt.Errorf("ckks: the secret key does not fit the program's ring")
	}
	return newClient(pl, sk)
}

// UnmarshalEvaluationKeys reads evaluation keys serialized by
// EvaluationKeys.MarshalBinary (or WriteTo) for this client's program,
// validated as the package-level UnmarshalEvaluationKeys does against a
// whole program: a data owner reloading the keys it generated and keeps.
func (c *Client) UnmarshalEvaluationKeys(data []byte) (*EvaluationKeys, error) {
	return c.plan.unmarshalEvaluationKeys(data)
}
