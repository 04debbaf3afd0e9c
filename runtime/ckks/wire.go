package ckks

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ciphercut/ciphercut/ir/ckksir"
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

// UnmarshalEvaluationKeys decodes evaluation keys written by
// EvaluationKeys.MarshalBinary for the program p, and is safe on bytes from
// an untrusted peer: like ciphertexts (see unmarshalCiphertext), the
// serialized layout is walked against the program's parameters before
// Lattigo reads a byte, since Lattigo's decoder allocates whatever its
// length fields claim and overflows the stack on truncated data. It accepts
// exactly the key set Client.EvaluationKeys generates for p: the
// relinearization key if and only if p needs one and one Galois key for each
// rotation p uses, no more, every key at the maximum Q and P levels without
// base-two decomposition. The program is verified and its plan derived on
// every call (cheap next to key decoding).
func UnmarshalEvaluationKeys(p *ckksir.Program, data []byte) (*EvaluationKeys, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	return pl.unmarshalEvaluationKeys(data)
}

func (pl *plan) unmarshalEvaluationKeys(data []byte) (*EvaluationKeys, error) {
	if !bytes.HasPrefix(data, evkMagic) {
		return nil, fmt.Errorf("ckks: not serialized evaluation keys (bad header)")
	}
	body := data[len(evkMagic):]
	if err := pl.walkEvaluationKeys(body); err != nil {
		return nil, fmt.Errorf("ckks: malformed evaluation keys: %w", err)
	}
	set := &rlwe.MemEvaluationKeySet{}
	err := protect("reading evaluation keys", func() error { return readStrict(set, body) })
	if err != nil {
		return nil, fmt.Errorf("ckks: reading evaluation keys: %w", err)
	}
	if set.GaloisKeys == nil {
		set.GaloisKeys = map[uint64]*rlwe.GaloisKey{}
	}
	// The walk already guarantees what follows; check the decoded set
	// anyway, so that a divergence between walker and decoder cannot pass.
	if (set.RelinearizationKey != nil) != pl.needRelin {
		return nil, fmt.Errorf("ckks: the evaluation keys hold a relinearization key: %v, the program needs one: %v",
			set.RelinearizationKey != nil, pl.needRelin)
	}
	if len(set.GaloisKeys) != len(pl.galEls) {
		return nil, fmt.Errorf("ckks: the evaluation keys hold %d Galois keys, the program needs %d", len(set.GaloisKeys), len(pl.galEls))
	}
	for _, g := range pl.galEls {
		if gk := set.GaloisKeys[g]; gk == nil || gk.GaloisElement != g {
			return nil, fmt.Errorf("ckks: the evaluation keys lack the Galois key %d (rotation by %d)", g, rotationOf(pl.params, g))
		}
	}
	if err := checkKeys(pl, set); err != nil {
		return nil, err
	}
	return &EvaluationKeys{set: set}, nil
}

// wireReader reads little-endian fields off a byte slice, erring (never
// panicking) when the data ends early.
type wireReader struct {
	b   []byte
	pos int
}

func (r *wireReader) need(n uint64, what string) error {
	if uint64(len(r.b)-r.pos) < n {
		return fmt.Errorf("truncated at %s (byte %d of %d)", what, r.pos, len(r.b))
	}
	return nil
}

func (r *wireReader) u8(what string) (uint8, error) {
	if err := r.need(1, what); err != nil {
		return 0, err
	}
	v := r.b[r.pos]
	r.pos++
	return v, nil
}

func (r *wireReader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.pos:])
	r.pos += 4
	return v, nil
}

func (r *wireReader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.pos:])
	r.pos += 8
	return v, nil
}

// expect reads a uint64 length or value field that must equal want.
func (r *wireReader) expect(want uint64, what string) error {
	v, err := r.u64(what)
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("%s is %d, want %d (byte %d)", what, v, want, r.pos-8)
	}
	return nil
}

// walkEvaluationKeys checks the layout rlwe.MemEvaluationKeySet.WriteTo
// produces (Lattigo v5.0.7, all integers little-endian):
//
//	uint8 has-relin (0|1) | [relin: EvaluationKey]
//	uint8 has-galois (0|1) | [uint32 count | count x (uint64 map key |
//	    uint64 GaloisElement | uint64 NthRoot | EvaluationKey)]
//
// with map keys strictly increasing (Lattigo writes them sorted), each equal
// to its GaloisElement and in the plan's set, count equal to the number of
// Galois keys the plan needs (has-galois 0 only when it needs none),
// NthRoot that of the ring, has-relin 1 exactly when the plan needs
// relinearization, and no trailing bytes. See walkEvaluationKey for a key.
func (pl *plan) walkEvaluationKeys(b []byte) error {
	r := &wireReader{b: b}
	flag := func(what string) (bool, error) {
		f, err := r.u8(what)
		if err != nil {
			return false, err
		}
		if f > 1 {
			return false, fmt.Errorf("bad %s flag %d", what, f)
		}
		return f == 1, nil
	}
	hasRelin, err := flag("relinearization key")
	if err != nil {
		return err
	}
	if hasRelin != pl.needRelin {
		return fmt.Errorf("relinearization key present: %v, the program needs one: %v", hasRelin, pl.needRelin)
	}
	if hasRelin {
		if err := pl.walkEvaluationKey(r, "relinearization key", pl.keyLevel(0)); err != nil {
			return err
		}
	}
	hasGalois, err := flag("Galois keys")
	if err != nil {
		return err
	}
	if hasGalois {
		count, err := r.u32("Galois key count")
		if err != nil {
			return err
		}
		if uint64(count) != uint64(len(pl.galEls)) {
			return fmt.Errorf("%d Galois keys, the program needs %d", count, len(pl.galEls))
		}
		want := map[uint64]bool{}
		for _, g := range pl.galEls {
			want[g] = true
		}
		nthRoot := pl.params.RingQ().NthRoot()
		var prev uint64
		for i := uint32(0); i < count; i++ {
			key, err := r.u64("Galois key index")
			if err != nil {
				return err
			}
			if !want[key] {
				return fmt.Errorf("Galois key %d: element %d is not one the program uses", i, key)
			}
			if i > 0 && key <= prev {
				return fmt.Errorf("Galois key %d: element %d out of order or repeated", i, key)
			}
			prev = key
			if err := r.expect(key, "Galois element"); err != nil {
				return err
			}
			if err := r.expect(nthRoot, "Galois key NthRoot"); err != nil {
				return err
			}
			if err := pl.walkEvaluationKey(r, fmt.Sprintf("Galois key %d", key), pl.keyLevel(key)); err != nil {
				return err
			}
		}
	} else if len(pl.galEls) > 0 {
		return fmt.Errorf("no Galois keys, the program needs %d", len(pl.galEls))
	}
	if r.pos != len(b) {
		return fmt.Errorf("%d trailing bytes", len(b)-r.pos)
	}
	return nil
}

// walkEvaluationKey checks one rlwe.EvaluationKey, a GadgetCiphertext:
//
//	uint64 BaseTwoDecomposition (0) |
//	uint64 digits | per digit: uint64 base-two size (1) |
//	    uint64 polys (2) | per poly (ringqp.Poly): Q part, P part
//
// with digits = BaseRNSDecompositionVectorSize(levelQ, MaxLevelP), and
// each part a ring.Poly: uint64 rows (levelQ+1, resp. MaxLevelP+1) | per
// row: uint64 N | N uint64 coefficients. levelQ is the level the plan
// generates the key at.
func (pl *plan) walkEvaluationKey(r *wireReader, what string, levelQ int) error {
	params := pl.params
	levelP := params.MaxLevelP()
	n := uint64(params.N())
	if err := r.expect(0, what+" base-two decomposition"); err != nil {
		return err
	}
	digits := params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	if err := r.expect(uint64(digits), what+" RNS digit count"); err != nil {
		return err
	}
	part := func(rows int) error {
		if err := r.expect(uint64(rows), what+" RNS row count"); err != nil {
			return err
		}
		for i := 0; i < rows; i++ {
			if err := r.expect(n, what+" coefficient count"); err != nil {
				return err
			}
			if err := r.need(8*n, what+" coefficients"); err != nil {
				return err
			}
			r.pos += int(8 * n)
		}
		return nil
	}
	for d := 0; d < digits; d++ {
		if err := r.expect(1, what+" base-two digit count"); err != nil {
			return err
		}
		if err := r.expect(2, what+" polynomial count"); err != nil {
			return err
		}
		for k := 0; k < 2; k++ {
			if err := part(levelQ + 1); err != nil {
				return err
			}
			if err := part(levelP + 1); err != nil {
				return err
			}
		}
	}
	return nil
}
