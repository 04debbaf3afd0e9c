package ckks

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// unmarshalCiphertext decodes a serialized ciphertext of the plan's ring.
// Lattigo's decoder allocates whatever its length fields claim and, on
// truncated input, recurses until the stack overflows: both are fatal errors
// that no recover catches, so a peer could crash the process with a few
// bytes. The layout is therefore walked first:
//
//	magic | uint8 has-metadata | metadata (fixed size) |
//	uint64 polys | per poly: uint64 rows | per row: uint64 N | N uint64
//
// with 2 polys, rows <= MaxLevel+1 and every row exactly N coefficients,
// all inside data; only then is a ciphertext of that degree and level
// allocated and filled, which reuses its buffers.
func (pl *plan) unmarshalCiphertext(data []byte) (*Ciphertext, error) {
	if !bytes.HasPrefix(data, ctMagic) {
		return nil, fmt.Errorf("ckks: not a serialized ciphertext (bad header)")
	}
	body := data[len(ctMagic):]
	degree, level, err := pl.walkCiphertext(body)
	if err != nil {
		return nil, fmt.Errorf("ckks: malformed ciphertext: %w", err)
	}
	ct := rlwe.NewCiphertext(pl.params, degree, level)
	err = protect("reading a ciphertext", func() error { return readStrict(ct, body) })
	if err != nil {
		return nil, fmt.Errorf("ckks: reading a ciphertext: %w", err)
	}
	if err := pl.checkCiphertext(ct); err != nil {
		return nil, err
	}
	return &Ciphertext{ct: ct}, nil
}

// walkCiphertext checks the serialized layout and returns the degree and
// level it holds.
func (pl *plan) walkCiphertext(b []byte) (degree, level int, err error) {
	pos := 0
	u64 := func(what string) (uint64, error) {
		if len(b)-pos < 8 {
			return 0, fmt.Errorf("truncated at %s (byte %d)", what, pos)
		}
		v := binary.LittleEndian.Uint64(b[pos:])
		pos += 8
		return v, nil
	}
	if len(b) < 1 {
		return 0, 0, fmt.Errorf("empty")
	}
	switch b[0] {
	case 0:
		pos = 1
	case 1:
		pos = 1 + new(rlwe.MetaData).BinarySize()
	default:
		return 0, 0, fmt.Errorf("bad metadata flag %d", b[0])
	}
	if pos > len(b) {
		return 0, 0, fmt.Errorf("truncated metadata")
	}
	polys, err := u64("polynomial count")
	if err != nil {
		return 0, 0, err
	}
	if polys != 2 {
		return 0, 0, fmt.Errorf("%d polynomials, want 2 (a relinearized ciphertext)", polys)
	}
	n, maxRows := uint64(pl.params.N()), uint64(pl.params.MaxLevel()+1)
	rows := uint64(0)
	for p := uint64(0); p < polys; p++ {
		r, err := u64("row count")
		if err != nil {
			return 0, 0, err
		}
		if r < 1 || r > maxRows || (p > 0 && r != rows) {
			return 0, 0, fmt.Errorf("polynomial %d has %d RNS rows, want 1 to %d, equal across polynomials", p, r, maxRows)
		}
		rows = r
		for i := uint64(0); i < r; i++ {
			c, err := u64("coefficient count")
			if err != nil {
				return 0, 0, err
			}
			if c != n {
				return 0, 0, fmt.Errorf("a row of %d coefficients, want N = %d", c, n)
			}
			if uint64(len(b)-pos) < 8*n {
				return 0, 0, fmt.Errorf("truncated coefficients (byte %d)", pos)
			}
			pos += int(8 * n)
		}
	}
	if pos != len(b) {
		return 0, 0, fmt.Errorf("%d trailing bytes", len(b)-pos)
	}
	return int(polys) - 1, int(rows) - 1, nil
}
