package ckks

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// seedProgram is a one-multiplication program on a tiny ring, to produce
// real serialized keys and ciphertexts as fuzz seeds.
func seedProgram() *ckksir.Program {
	lay := ckksir.Layout{Shape: ir.Shape{4}}
	return &ckksir.Program{
		Params: smallParams(1), BlockSize: 64, Batch: 32,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 1}},
		Values:  []ckksir.Value{{Layout: lay, Level: 1}, {Layout: lay, Level: 0}},
		Instrs:  []ckksir.Instr{{Op: ckksir.OpMul, Out: 1, In: []int{0, 0}}},
	}
}

// FuzzUnmarshalCiphertext feeds arbitrary bytes to the ciphertext decoder: it
// must return an error or a well-formed ciphertext, never crash (Lattigo's
// own decoder dies on truncated input and on large length fields).
func FuzzUnmarshalCiphertext(f *testing.F) {
	c, _, _ := setup(f, seedProgram())
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{1, 4}, []float64{1, 2, 3, 4}))
	if err != nil {
		f.Fatal(err)
	}
	data, err := cts[0].MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)/3])
	f.Add([]byte("ccCT\x01garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ct, err := c.UnmarshalCiphertext(b)
		if err == nil && (ct == nil || ct.Bytes() != int64(len(b))) {
			t.Fatalf("decoded %d bytes into %v without an error", len(b), ct)
		}
	})
}

// keySeedProgram is a linear transformation with two diagonals (Galois
// keys) followed by a product (relinearization key) on a tiny ring with two
// RNS digits, to produce a real serialized key set.
func keySeedProgram() *ckksir.Program {
	lay := ckksir.Layout{Shape: ir.Shape{4}}
	diags := map[int][]float64{}
	for _, d := range []int{0, 1} {
		v := make([]float64, 64)
		for j := range v {
			v[j] = 0.5
		}
		diags[d] = v
	}
	m := ckksir.NewMatrix(diags)
	return &ckksir.Program{
		Params: smallParams(2), BlockSize: 64, Batch: 32,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 2}},
		Values:  []ckksir.Value{{Layout: lay, Level: 2}, {Layout: lay, Level: 1}, {Layout: lay, Level: 0}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{m}},
			{Op: ckksir.OpMul, Out: 2, In: []int{1, 1}},
		},
	}
}

func marshalKeys(t testing.TB, p *ckksir.Program) []byte {
	t.Helper()
	_, evk, _ := setup(t, p)
	data, err := evk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestUnmarshalEvaluationKeys(t *testing.T) {
	p := keySeedProgram()
	data := marshalKeys(t, p)
	pl, err := newPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.needRelin || len(pl.galEls) == 0 || pl.params.BaseRNSDecompositionVectorSize(pl.params.MaxLevelQ(), pl.params.MaxLevelP()) < 2 {
		t.Fatalf("seed program: relin %v, %d Galois keys: not the intended coverage", pl.needRelin, len(pl.galEls))
	}
	evk, err := UnmarshalEvaluationKeys(p, data)
	if err != nil {
		t.Fatal(err)
	}
	if evk.Count() != len(pl.galEls) || evk.Bytes() != int64(len(data)) {
		t.Fatalf("round trip: %d Galois keys, %d bytes; want %d, %d", evk.Count(), evk.Bytes(), len(pl.galEls), len(data))
	}
	again, err := evk.MarshalBinary()
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-marshaled keys differ (err %v)", err)
	}
	if _, err := NewEvaluator(p, evk); err != nil {
		t.Fatal(err)
	}

	tamper := func(off int, v uint64) []byte {
		b := bytes.Clone(data)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	hdr := len(evkMagic) + 1 // magic, relinearization flag
	cases := []struct {
		name string
		p    *ckksir.Program
		b    []byte
		want string
	}{
		{"truncated", p, data[:len(data)-1], "truncated"},
		{"truncated header", p, data[:len(evkMagic)+1], "truncated"},
		{"trailing byte", p, append(bytes.Clone(data), 0), "trailing"},
		{"bad magic", p, data[1:], "bad header"},
		{"other program's keys", p, marshalKeys(t, seedProgram()), "malformed"},
		{"keys for another program", seedProgram(), data, "malformed"},
		{"huge digit count", p, tamper(hdr+8, 1<<40), "RNS digit count"},
		{"huge row count", p, tamper(hdr+8+8+8+8, 1<<50), "RNS row count"},
		{"huge coefficient count", p, tamper(hdr+8+8+8+8+8, 1<<60), "coefficient count"},
		{"base-two decomposition", p, tamper(hdr, 7), "base-two"},
		{"bad flag", p, append(append([]byte{}, evkMagic...), 2), "flag"},
	}
	for _, tc := range cases {
		_, err := UnmarshalEvaluationKeys(tc.p, tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// FuzzUnmarshalEvaluationKeys feeds arbitrary bytes to the evaluation key
// decoder: it must return an error or exactly the keys the program needs,
// never crash.
func FuzzUnmarshalEvaluationKeys(f *testing.F) {
	p := keySeedProgram()
	data := marshalKeys(f, p)
	f.Add(data)
	for _, n := range []int{0, 6, 7, 16, 40, len(data) / 3, len(data) - 1} {
		f.Add(data[:n])
	}
	for _, off := range []int{7, 15, 23, 31, 39, len(data) - 8*4096 - 8} {
		b := bytes.Clone(data)
		b[off] ^= 0x40
		f.Add(b)
	}
	f.Add(marshalKeys(f, seedProgram()))
	pl, err := newPlan(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evk, err := pl.unmarshalEvaluationKeys(b)
		if err != nil {
			return
		}
		if evk.Bytes() != int64(len(b)) || evk.Count() != len(pl.galEls) || evk.set.RelinearizationKey == nil {
			t.Fatalf("decoded %d bytes into %d Galois keys without an error", len(b), evk.Count())
		}
	})
}
