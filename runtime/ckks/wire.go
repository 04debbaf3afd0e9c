package ckks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
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
// rotation p uses, no more, every key at the level the plan generates it
// and every P prime without base-two decomposition; and, exactly when p
// bootstraps, the bootstrapping keys (see walkEvaluationKeys). The program
// is verified and its plan derived on every call (cheap next to key
// decoding).
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
	lay, err := pl.walkEvaluationKeys(body)
	if err != nil {
		return nil, fmt.Errorf("ckks: malformed evaluation keys: %w", err)
	}
	set, err := readKeySet(body[lay.set[0]:lay.set[1]])
	if err != nil {
		return nil, err
	}
	// The walk already guarantees what follows; check the decoded set
	// anyway, so that a divergence between walker and decoder cannot pass.
	if err := checkExactSet(pl.keySpec(), set); err != nil {
		return nil, err
	}
	if err := checkKeys(pl, set); err != nil {
		return nil, err
	}
	keys := &EvaluationKeys{set: set}
	if !pl.needBoot {
		return keys, nil
	}
	bk := &bootstrapping.EvaluationKeys{}
	if lay.encapsulation {
		bk.EvkDenseToSparse, bk.EvkSparseToDense = new(rlwe.EvaluationKey), new(rlwe.EvaluationKey)
		for i, k := range []*rlwe.EvaluationKey{bk.EvkDenseToSparse, bk.EvkSparseToDense} {
			if err := protect("reading a bootstrapping key", func() error { return readStrict(k, body[lay.enc[i][0]:lay.enc[i][1]]) }); err != nil {
				return nil, fmt.Errorf("ckks: reading a bootstrapping encapsulation key: %w", err)
			}
		}
	}
	if bk.MemEvaluationKeySet, err = readKeySet(body[lay.boot[0]:lay.boot[1]]); err != nil {
		return nil, err
	}
	if err := checkExactSet(pl.bootKeySpec(), bk.MemEvaluationKeySet); err != nil {
		return nil, err
	}
	if err := checkBootKeys(pl, bk); err != nil {
		return nil, fmt.Errorf("ckks: %w", err)
	}
	keys.boot = bk
	return keys, nil
}

// readKeySet decodes a walked key set.
func readKeySet(b []byte) (*rlwe.MemEvaluationKeySet, error) {
	set := &rlwe.MemEvaluationKeySet{}
	if err := protect("reading evaluation keys", func() error { return readStrict(set, b) }); err != nil {
		return nil, fmt.Errorf("ckks: reading evaluation keys: %w", err)
	}
	if set.GaloisKeys == nil {
		set.GaloisKeys = map[uint64]*rlwe.GaloisKey{}
	}
	return set, nil
}

// checkExactSet checks that a decoded key set holds exactly the keys of
// spec: the relinearization key if and only if spec needs it, and its
// Galois keys, no more.
func checkExactSet(spec keySetSpec, set *rlwe.MemEvaluationKeySet) error {
	if (set.RelinearizationKey != nil) != spec.relin {
		return fmt.Errorf("ckks: the evaluation keys hold a %srelinearization key: %v, the program needs one: %v",
			spec.what, set.RelinearizationKey != nil, spec.relin)
	}
	if len(set.GaloisKeys) != len(spec.galEls) {
		return fmt.Errorf("ckks: the evaluation keys hold %d %sGalois keys, the program needs %d", len(set.GaloisKeys), spec.what, len(spec.galEls))
	}
	for _, g := range spec.galEls {
		if gk := set.GaloisKeys[g]; gk == nil || gk.GaloisElement != g {
			return fmt.Errorf("ckks: the evaluation keys lack the %sGalois key %d (rotation by %d)", spec.what, g, rotationOf(spec.params, g))
		}
	}
	return nil
}

// keyStream writes evaluation keys: the key set (rlwe.MemEvaluationKeySet)
// then, when there are bootstrapping keys, uint8 has-encapsulation (0|1) |
// [EvaluationKey dense-to-sparse | EvaluationKey sparse-to-dense] | the
// bootstrapping key set (rlwe.MemEvaluationKeySet).
type keyStream struct{ k *EvaluationKeys }

// WriteTo implements io.WriterTo.
func (s keyStream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.k.set.WriteTo(w)
	if err != nil || s.k.boot == nil {
		return n, err
	}
	bk := s.k.boot
	parts := []io.WriterTo{bytes.NewReader([]byte{0})}
	if bk.EvkDenseToSparse != nil && bk.EvkSparseToDense != nil {
		parts = []io.WriterTo{bytes.NewReader([]byte{1}), bk.EvkDenseToSparse, bk.EvkSparseToDense}
	}
	parts = append(parts, bk.MemEvaluationKeySet)
	for _, part := range parts {
		m, err := part.WriteTo(w)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// bootKeysSize is the size of the bootstrapping section keyStream writes.
func bootKeysSize(bk *bootstrapping.EvaluationKeys) int64 {
	if bk == nil {
		return 0
	}
	n := int64(1 + bk.MemEvaluationKeySet.BinarySize())
	if bk.EvkDenseToSparse != nil && bk.EvkSparseToDense != nil {
		n += int64(bk.EvkDenseToSparse.BinarySize() + bk.EvkSparseToDense.BinarySize())
	}
	return n
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

// poly checks one serialized ring.Poly of rows RNS rows of n coefficients
// each, and skips it.
func (r *wireReader) poly(n uint64, rows int, what string) error {
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

// keySetSpec is what a key set must hold: over params, the
// relinearization key when relin is set and a Galois key per element of
// galEls (sorted), the key for g generated at level(g) (level(0) for the
// relinearization key). what prefixes key names in errors.
type keySetSpec struct {
	params hefloat.Parameters
	relin  bool
	galEls []uint64
	level  func(g uint64) int
	what   string
}

// keySpec is the key set the program's own instructions need.
func (pl *plan) keySpec() keySetSpec {
	return keySetSpec{params: pl.params, relin: pl.needRelin, galEls: pl.galEls, level: pl.keyLevel}
}

// keyLayout gives the byte ranges of the parts of serialized evaluation
// keys (see keyStream): the key set, and for a bootstrapping program the
// two encapsulation keys (when encapsulation is set) and the bootstrapping
// key set.
type keyLayout struct {
	set, boot     [2]int
	encapsulation bool
	enc           [2][2]int
}

// walkEvaluationKeys checks the layout keyStream produces (see
// walkKeySet): the program's key set and, exactly when the program
// bootstraps, the bootstrapping section: uint8 has-encapsulation, 1 exactly
// when the bootstrapping parameters use an ephemeral secret, then the two
// encapsulation keys at the bootstrapping parameters' top level (see
// walkEvaluationKey), then the bootstrapping key set (relinearization key
// and the bootstrapping circuit's Galois keys, at the levels bootKeyLevels gives). No
// trailing bytes.
func (pl *plan) walkEvaluationKeys(b []byte) (keyLayout, error) {
	var lay keyLayout
	r := &wireReader{b: b}
	if err := walkKeySet(r, pl.keySpec()); err != nil {
		return lay, err
	}
	lay.set = [2]int{0, r.pos}
	if pl.needBoot {
		spec := pl.bootKeySpec()
		enc, err := r.flag("bootstrapping encapsulation keys")
		if err != nil {
			return lay, err
		}
		if want := pl.boot.EphemeralSecretWeight > 0; enc != want {
			return lay, fmt.Errorf("bootstrapping encapsulation keys present: %v, the bootstrapping parameters need them: %v", enc, want)
		}
		lay.encapsulation = enc
		if enc {
			for i, what := range []string{"dense-to-sparse key", "sparse-to-dense key"} {
				start := r.pos
				if err := walkEvaluationKey(r, spec.params, "bootstrapping "+what, spec.level(0)); err != nil {
					return lay, err
				}
				lay.enc[i] = [2]int{start, r.pos}
			}
		}
		start := r.pos
		if err := walkKeySet(r, spec); err != nil {
			return lay, err
		}
		lay.boot = [2]int{start, r.pos}
	}
	if r.pos != len(b) {
		return lay, fmt.Errorf("%d trailing bytes", len(b)-r.pos)
	}
	return lay, nil
}

// flag reads a uint8 that must be 0 or 1.
func (r *wireReader) flag(what string) (bool, error) {
	f, err := r.u8(what)
	if err != nil {
		return false, err
	}
	if f > 1 {
		return false, fmt.Errorf("bad %s flag %d", what, f)
	}
	return f == 1, nil
}

// walkKeySet checks the layout rlwe.MemEvaluationKeySet.WriteTo produces
// (Lattigo v5.0.7, all integers little-endian):
//
//	uint8 has-relin (0|1) | [relin: EvaluationKey]
//	uint8 has-galois (0|1) | [uint32 count | count x (uint64 map key |
//	    uint64 GaloisElement | uint64 NthRoot | EvaluationKey)]
//
// with map keys strictly increasing (Lattigo writes them sorted), each equal
// to its GaloisElement and in spec's set, count equal to the number of
// Galois keys spec needs (has-galois 0 only when it needs none), NthRoot
// that of the ring, has-relin 1 exactly when spec needs relinearization.
// See walkEvaluationKey for a key.
func walkKeySet(r *wireReader, spec keySetSpec) error {
	hasRelin, err := r.flag(spec.what + "relinearization key")
	if err != nil {
		return err
	}
	if hasRelin != spec.relin {
		return fmt.Errorf("%srelinearization key present: %v, the program needs one: %v", spec.what, hasRelin, spec.relin)
	}
	if hasRelin {
		if err := walkEvaluationKey(r, spec.params, spec.what+"relinearization key", spec.level(0)); err != nil {
			return err
		}
	}
	hasGalois, err := r.flag(spec.what + "Galois keys")
	if err != nil {
		return err
	}
	if hasGalois {
		count, err := r.u32(spec.what + "Galois key count")
		if err != nil {
			return err
		}
		if uint64(count) != uint64(len(spec.galEls)) {
			return fmt.Errorf("%d %sGalois keys, the program needs %d", count, spec.what, len(spec.galEls))
		}
		want := map[uint64]bool{}
		for _, g := range spec.galEls {
			want[g] = true
		}
		nthRoot := spec.params.RingQ().NthRoot()
		var prev uint64
		for i := uint32(0); i < count; i++ {
			key, err := r.u64(spec.what + "Galois key index")
			if err != nil {
				return err
			}
			if !want[key] {
				return fmt.Errorf("%sGalois key %d: element %d is not one the program uses", spec.what, i, key)
			}
			if i > 0 && key <= prev {
				return fmt.Errorf("%sGalois key %d: element %d out of order or repeated", spec.what, i, key)
			}
			prev = key
			if err := r.expect(key, "Galois element"); err != nil {
				return err
			}
			if err := r.expect(nthRoot, "Galois key NthRoot"); err != nil {
				return err
			}
			if err := walkEvaluationKey(r, spec.params, fmt.Sprintf("%sGalois key %d", spec.what, key), spec.level(key)); err != nil {
				return err
			}
		}
	} else if len(spec.galEls) > 0 {
		return fmt.Errorf("no %sGalois keys, the program needs %d", spec.what, len(spec.galEls))
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
// row: uint64 N | N uint64 coefficients, over params. levelQ is the level
// the key is generated at.
func walkEvaluationKey(r *wireReader, params hefloat.Parameters, what string, levelQ int) error {
	levelP := params.MaxLevelP()
	n := uint64(params.N())
	if err := r.expect(0, what+" base-two decomposition"); err != nil {
		return err
	}
	digits := params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	if err := r.expect(uint64(digits), what+" RNS digit count"); err != nil {
		return err
	}
	part := func(rows int) error { return r.poly(n, rows, what) }
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
