// Benchmarks of the plaintext interpreter's heavy kernels.

package plain

import (
	"math/rand"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

func benchRand(r *rand.Rand, shape ...int) *ir.Tensor {
	t := ir.NewFloat(ir.Shape(shape), nil)
	for i := range t.Float {
		t.Float[i] = r.NormFloat64()
	}
	return t
}

// BenchmarkConv32x32x16 is a 3x3 convolution, 16 -> 16 channels over a
// 32x32 image, pad 1, batch 1, with bias.
func BenchmarkConv32x32x16(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	in := []*ir.Tensor{benchRand(r, 1, 16, 32, 32), benchRand(r, 16, 16, 3, 3), benchRand(r, 16)}
	n := &ir.Node{Name: "conv", Op: "Conv", Attrs: ir.Attrs{
		"pads": {Kind: ir.AttrInts, Ints: []int64{1, 1, 1, 1}},
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EvalNode(n, 13, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGemm is a 256x512 by 512x256 Gemm with a bias row.
func BenchmarkGemm(b *testing.B) {
	r := rand.New(rand.NewSource(2))
	in := []*ir.Tensor{benchRand(r, 256, 512), benchRand(r, 512, 256), benchRand(r, 256)}
	n := &ir.Node{Name: "gemm", Op: "Gemm", Attrs: ir.Attrs{}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EvalNode(n, 13, in); err != nil {
			b.Fatal(err)
		}
	}
}
