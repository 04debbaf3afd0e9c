package local

import (
	"errors"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// program is a one-matrix program with diagonals 0..k-1 on a small ring.
func program(k int) *ckksir.Program {
	lay := ckksir.Layout{Shape: ir.Shape{16}}
	diags := map[int][]float64{}
	for d := 0; d < k; d++ {
		v := make([]float64, 64)
		for j := range v {
			if j+d < 64 {
				v[j] = 1.0 / float64(k)
			}
		}
		diags[d] = v
	}
	m := ckksir.NewMatrix(diags)
	return &ckksir.Program{
		Params:    ckksir.Params{LogN: 12, LogQ: []int{55, 40}, LogP: []int{56}, LogScale: 40},
		BlockSize: 64, Batch: 32,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 1}},
		Values:  []ckksir.Value{{Layout: lay, Level: 1}, {Layout: lay, Level: 0}},
		Instrs:  []ckksir.Instr{{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{m}}},
	}
}

// TestSessionRefusesPlansBeyondMemoryInsecureSmallRing checks that a plan
// whose keys and encoded weights exceed the memory budget is refused before
// any key is generated, as an ir.UnsupportedError naming the sizes.
func TestSessionRefusesPlansBeyondMemoryInsecureSmallRing(t *testing.T) {
	defer func(f func() int64) { memoryAvailable = f }(memoryAvailable)
	memoryAvailable = func() int64 { return 1 << 20 } // 1 MiB
	_, err := NewSession(program(8), Progress{})
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "more than the 0.0 GiB memory limit") {
		t.Fatalf("got %v, want a refusal for lack of memory", err)
	}
}

// TestSessionInferInsecureSmallRing runs a matrix product end to end: the
// decrypted output averages 8 neighbouring input slots.
func TestSessionInferInsecureSmallRing(t *testing.T) {
	s, err := NewSession(program(8), Progress{})
	if err != nil {
		t.Fatal(err)
	}
	x := ir.NewFloat(ir.Shape{2, 16}, nil)
	for i := range x.Float {
		x.Float[i] = float64(i%16) / 16
	}
	y, timing, err := s.Infer(x)
	if err != nil {
		t.Fatal(err)
	}
	for smp := 0; smp < 2; smp++ {
		for j := 0; j < 16; j++ {
			want := 0.0
			for d := 0; d < 8 && j+d < 16; d++ {
				want += x.Float[smp*16+j+d] / 8
			}
			if got := y.Float[smp*16+j]; got-want > 1e-6 || want-got > 1e-6 {
				t.Fatalf("sample %d slot %d: %g, want %g", smp, j, got, want)
			}
		}
	}
	if timing.Ciphertexts != 1 || s.Setup.GaloisKeys == 0 || timing.UploadBytes == 0 {
		t.Errorf("timing %+v, setup %+v", timing, s.Setup)
	}
}
