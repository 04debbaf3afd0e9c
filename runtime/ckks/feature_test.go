package ckks

import (
	"math"
	"math/rand"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// refFeature runs a feature-packed program on one sample in float64.
func refFeature(p *ckksir.Program, inputs map[string][]float64) map[string][]float64 {
	vals := make([][]float64, len(p.Values))
	for _, in := range p.Inputs {
		vals[in.Value] = inputs[in.Name]
	}
	for _, ins := range p.Instrs {
		k := p.Values[ins.Out].Layout.Size()
		out := make([]float64, k)
		x := func(i int) []float64 { return vals[ins.In[i]] }
		for r := range out {
			switch ins.Op {
			case ckksir.OpLinear:
				for i, m := range ins.Dense {
					for c := 0; c < m.Cols; c++ {
						out[r] += m.At(r, c) * x(i)[c]
					}
				}
				if ins.Bias != nil {
					out[r] += ins.Bias[r]
				}
			case ckksir.OpPoly:
				out[r] = chebyshev(ins.Poly.Coeffs, ins.Poly.A, ins.Poly.B, x(0)[r])
			case ckksir.OpAdd:
				out[r] = x(0)[r] + x(1)[r]
			case ckksir.OpMul:
				out[r] = x(0)[r] * x(1)[r]
			case ckksir.OpAddConst:
				out[r] = x(0)[r] + ins.Bias[r]
			case ckksir.OpMulConst:
				out[r] = x(0)[r] * ins.Vector[r]
			}
		}
		vals[ins.Out] = out
	}
	res := map[string][]float64{}
	for _, o := range p.Outputs {
		res[o.Name] = vals[o.Value]
	}
	return res
}

// randDense is a random rows x cols dense matrix with some zeros.
func randDense(rng *rand.Rand, rows, cols int, amp float64) *ckksir.DenseMatrix {
	m := &ckksir.DenseMatrix{Rows: rows, Cols: cols, Data: randVec(rng, rows*cols, amp)}
	for i := range m.Data {
		if rng.Intn(4) == 0 {
			m.Data[i] = 0
		}
	}
	return m
}

// TestFeaturePackingInsecureSmallRing runs every instruction kind in
// feature packing (one sample per slot, one ciphertext per element) on more
// samples than a batch holds, with off-scale (product) inputs to a linear
// instruction, and checks the results against float64 and that no Galois
// key is generated.
func TestFeaturePackingInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	params := smallParams(7)
	sh := func(n int) ckksir.Layout { return ckksir.Layout{Shape: ir.Shape{n}} }
	p := &ckksir.Program{
		Params: params, Packing: ckksir.PackFeature, BlockSize: 1, Batch: params.Slots(),
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 5}, {Name: "m", Value: 6}, {Name: "a", Value: 7}, {Name: "s", Value: 8}},
		Values: []ckksir.Value{
			{Layout: sh(6), Level: 7}, // x
			{Layout: sh(5), Level: 6}, // v1 = W1 x + b1
			{Layout: sh(5), Level: 2}, // v2 = p(v1) on [-2, 2]
			{Layout: sh(5), Level: 5}, // v3 = v1 * v1
			{Layout: sh(5), Level: 1}, // v4 = W2 v2 + W3 v3
			{Layout: sh(3), Level: 0}, // v5 = W4 v4 + b4
			{Layout: sh(5), Level: 4}, // v6 = v3 * c
			{Layout: sh(5), Level: 5}, // v7 = v3 + c
			{Layout: sh(5), Level: 2}, // v8 = v2 + v7
		},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Dense: []*ckksir.DenseMatrix{randDense(rng, 5, 6, 0.5)}, Bias: randVec(rng, 5, 0.3)},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: &ckksir.Poly{A: -2, B: 2, Coeffs: randVec(rng, 8, 0.5)}},
			{Op: ckksir.OpMul, Out: 3, In: []int{1, 1}},
			{Op: ckksir.OpLinear, Out: 4, In: []int{2, 3}, Dense: []*ckksir.DenseMatrix{randDense(rng, 5, 5, 1), randDense(rng, 5, 5, 1)}},
			{Op: ckksir.OpLinear, Out: 5, In: []int{4}, Dense: []*ckksir.DenseMatrix{randDense(rng, 3, 5, 1)}, Bias: randVec(rng, 3, 1)},
			{Op: ckksir.OpMulConst, Out: 6, In: []int{3}, Vector: randVec(rng, 5, 2)},
			{Op: ckksir.OpAddConst, Out: 7, In: []int{3}, Bias: randVec(rng, 5, 2)},
			{Op: ckksir.OpAdd, Out: 8, In: []int{2, 7}},
		},
	}
	c, evk, e := setup(t, p)
	if evk.Count() != 0 {
		t.Errorf("feature packing generated %d Galois keys, want none", evk.Count())
	}
	n := params.Slots() + 37 // two batches
	xs := randVec(rng, n*6, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 6}, xs))
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 2*6 {
		t.Fatalf("Encrypt returned %d ciphertexts, want 2 batches x 6 elements", len(cts))
	}
	outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"y": 3, "m": 5, "a": 5, "s": 5}
	worst := map[string]float64{}
	got := map[string]*ir.Tensor{}
	for name, k := range sizes {
		if len(outs[name]) != 2*k {
			t.Fatalf("%s: %d ciphertexts, want %d", name, len(outs[name]), 2*k)
		}
		if got[name], err = c.Decrypt(name, outs[name], n); err != nil {
			t.Fatal(err)
		}
	}
	for s := 0; s < n; s++ {
		want := refFeature(p, map[string][]float64{"x": xs[s*6 : (s+1)*6]})
		for name, k := range sizes {
			worst[name] = math.Max(worst[name], maxAbsDiff(got[name].Float[s*k:(s+1)*k], want[name]))
		}
	}
	for name, w := range worst {
		t.Logf("%s: max error %.3g over %d samples", name, w, n)
		if w > 1e-5 {
			t.Errorf("%s: max error %.3g", name, w)
		}
	}
	if _, err := c.Decrypt("y", outs["y"][:5], n); err == nil {
		t.Error("Decrypt accepted a truncated ciphertext list")
	}
	if _, err := e.Run(map[string][]*Ciphertext{"x": cts[:5]}); err == nil {
		t.Error("Run accepted an input list that is not a whole number of batches")
	}
}

// TestFeatureVerifyInsecureSmallRing checks that Verify rejects malformed
// feature-packed programs.
func TestFeatureVerifyInsecureSmallRing(t *testing.T) {
	params := smallParams(2)
	good := func() *ckksir.Program {
		return &ckksir.Program{
			Params: params, Packing: ckksir.PackFeature, BlockSize: 1, Batch: params.Slots(),
			Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
			Outputs: []ckksir.IO{{Name: "y", Value: 1}},
			Values:  []ckksir.Value{{Layout: ckksir.Layout{Shape: ir.Shape{3}}, Level: 2}, {Layout: ckksir.Layout{Shape: ir.Shape{2}}, Level: 1}},
			Instrs: []ckksir.Instr{{Op: ckksir.OpLinear, Out: 1, In: []int{0},
				Dense: []*ckksir.DenseMatrix{{Rows: 2, Cols: 3, Data: make([]float64, 6)}}, Bias: []float64{1, 2}}},
		}
	}
	if err := ckksir.Verify(good()); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(p *ckksir.Program){
		"block size":  func(p *ckksir.Program) { p.BlockSize, p.Batch = 2, params.Slots()/2 },
		"dense shape": func(p *ckksir.Program) { p.Instrs[0].Dense[0].Cols = 2 },
		"no dense":    func(p *ckksir.Program) { p.Instrs[0].Dense = nil },
		"bias":        func(p *ckksir.Program) { p.Instrs[0].Bias = []float64{1} },
		"level":       func(p *ckksir.Program) { p.Values[1].Level = 2 },
	} {
		p := good()
		edit(p)
		if err := ckksir.Verify(p); err == nil {
			t.Errorf("%s: Verify accepted a malformed program", name)
		}
	}
}
