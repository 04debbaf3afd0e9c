package ckks

import (
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
