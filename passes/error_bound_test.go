package passes

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/testsuite/synth"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// TestCKKSNoiseConstants pins the per-operation noise of the model to the
// values measured with Lattigo v5 (see error_bound.go).
func TestCKKSNoiseConstants(t *testing.T) {
	p := ckksChain(14, 11, 30, 1)
	near := func(name string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got/want-1) > tol {
			t.Errorf("%s = %.4g, want %.4g", name, got, want)
		}
	}
	sigR := CKKSRescaleSigma(p)
	near("σ_r (N=2^14, 2^30)", sigR, 2.543e-6, 0.01)
	// One 51-bit P prime over a 50-bit base prime: the base digit's key
	// error is about 1.96 σ_r (measured 2.2 σ_r with the ModDown rounding of
	// a plain rotation, which a hoisted transformation does not pay).
	near("σ_ks one P", ckksKeySwitchSigma(p, 11)/sigR, 1.96, 0.02)
	if ks := ckksKeySwitchSigma(ckksChain(14, 5, 40, 2), 5); ks > 1e-3*CKKSRescaleSigma(ckksChain(14, 5, 40, 2)) {
		t.Errorf("σ_ks with two P primes = %g, want negligible", ks)
	}
	near("σ_fresh", ckksFreshSigma(p)/sigR, 0.11, 0.05)
	// Diagonals repeating every 64 slots: √(64/6)·2^-40.
	near("σ_pt", ckksEncodeSigma(ckksChain(15, 8, 40, 2), 64), math.Sqrt(64.0/6)/math.Ldexp(1, 40), 1e-12)
}

// TestCKKSPolyLipschitz checks L = max |p'| on [A, B] with the change of
// variable.
func TestCKKSPolyLipschitz(t *testing.T) {
	for _, c := range []struct {
		poly    ckksir.Poly
		lip, mx float64
	}{
		{ckksir.Poly{A: -1, B: 1, Coeffs: []float64{0, 1}}, 1, 1},
		{ckksir.Poly{A: 0, B: 4, Coeffs: []float64{0, 1}}, 0.5, 1},                // t = (x-2)/2
		{ckksir.Poly{A: -1, B: 1, Coeffs: []float64{0, 0, 0, 1}}, 9, 1},           // T3' = 12t²-3
		{ckksir.Poly{A: -1, B: 1, Coeffs: []float64{2, 0, 0.5}}, 2, 2.5},          // 2 + 0.5·T2
		{ckksir.Poly{A: -2, B: 2, Coeffs: []float64{0.5, 0.5, 0.25}}, 0.75, 1.25}, // p(t)=0.5+0.5t+0.25(2t²-1)
	} {
		lip, mx := ckksPolyLipschitz(&c.poly)
		if math.Abs(lip-c.lip*ckksLipschitzMargin) > 1e-9 || math.Abs(mx-c.mx) > 1e-9 {
			t.Errorf("%v: L %g, max %g; want %g, %g", c.poly.Coeffs, lip, mx, c.lip*ckksLipschitzMargin, c.mx)
		}
	}
}

// TestAssignErrorBoundsErrors checks the argument checks.
func TestAssignErrorBoundsErrors(t *testing.T) {
	g := lcTiny()
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	p, err := LowerCKKS(g, LowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := AssignErrorBounds(p, nil, 0); err == nil {
		t.Error("no magnitudes accepted")
	}
	mags := make([][]float64, len(p.Values))
	for i, v := range p.Values {
		mags[i] = make([]float64, v.Layout.Size())
	}
	mags[1] = mags[1][:1]
	if err := AssignErrorBounds(p, mags, 0); err == nil {
		t.Error("short magnitudes accepted")
	}
}

// TestErrorBoundsPropagation injects Gaussian noise of the model's standard
// deviations where CKKS adds noise, in a plaintext run of the program, and
// checks that every value stays within its bound: this validates the
// propagation (matrix norms, Lipschitz constants, products, sums), not the
// noise constants (checked against Lattigo outside the unit tests). It logs
// the ratio of bound to the largest deviation, which the Gaussian noise
// keeps well above 1 (CKKSTail allows for heavier tails). The noisy runs
// use samples other than the calibration ones, which the probes of the
// calibrated models are linearized at.
func TestErrorBoundsPropagation(t *testing.T) {
	type model struct {
		name    string
		g       *ir.Graph
		samples map[string][][]float64
		calib   *ir.Tensor
	}
	var models []model
	for _, build := range []func() *ir.Graph{lcTiny, lcMixed} {
		g := build()
		if err := InferShapes(g); err != nil {
			t.Fatal(err)
		}
		models = append(models, model{g.Name, g, lcRandomSamples(g, 64, 9), nil})
	}
	for _, name := range []string{"digits-mlp", "digits-cnn"} {
		g, inputs := lcCanonical(t, name)
		calib := zoo.Rows(inputs, 0, 32)
		lcApproximate(t, g, calib)
		s := map[string][][]float64{}
		for i := range 8 {
			s[g.Inputs[0].Name] = append(s[g.Inputs[0].Name], zoo.Rows(inputs, inputs.Shape[0]-1-i, inputs.Shape[0]-i).Float)
		}
		models = append(models, model{name, g, s, calib})
	}
	{
		// An attention block: products of ciphertexts, Newton steps.
		o := synth.AttentionOptions{}
		g, calib := canonicalAttention(t, o, 256)
		if _, err := DecomposeTransformer(g, calib, TransformerOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ApproximateActivations(g, calib, ApproxOptions{}); err != nil {
			t.Fatal(err)
		}
		x := synth.Inputs(o, 8, 99)
		per := len(x.Float) / 8
		s := map[string][][]float64{}
		for i := range 8 {
			s[g.Inputs[0].Name] = append(s[g.Inputs[0].Name], x.Floats()[i*per:(i+1)*per])
		}
		models = append(models, model{"attention", g, s, calib})
	}
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			opts := LowerOptions{Calib: m.calib}
			if m.calib == nil {
				opts.InputBound = 1
			}
			p, err := LowerCKKS(m.g, opts)
			if err != nil {
				t.Fatal(err)
			}
			clean := lcRunSlots(t, p, m.samples, nil, false)
			noisy := lcRunSlots(t, p, m.samples, &lcNoise{r: rand.New(rand.NewPCG(5, 8))}, false)
			n := len(m.samples[p.Inputs[0].Name])
			worst := math.Inf(1)
			for v, val := range p.Values {
				dev := 0.0
				for b := range n {
					for j := range val.Layout.Size() {
						k := b*p.BlockSize + val.Layout.Slot(j)
						dev = max(dev, math.Abs(noisy[v][k]-clean[v][k]))
					}
				}
				if !(dev <= val.Bound) {
					t.Errorf("v%d: deviation %.3g exceeds the bound %.3g", v, dev, val.Bound)
				}
				worst = min(worst, val.Bound/dev)
			}
			t.Logf("smallest bound/deviation ratio %.1f", worst)
		})
	}
}

// TestErrorBoundsFeaturePacking bounds a feature-packed program with
// constant vectors (one ciphertext per element, so BlockSize 1 while the
// vectors hold the tensor): it panicked on the vectors' length before.
func TestErrorBoundsFeaturePacking(t *testing.T) {
	lay := ckksir.Layout{Shape: ir.Shape{3}}
	p := &ckksir.Program{
		Params:  ckksir.Params{LogN: 12, LogQ: []int{40, 30, 30}, LogP: []int{40}, LogScale: 30},
		Packing: ckksir.PackFeature, BlockSize: 1, Batch: 2048,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "z", Value: 2}},
		Values:  []ckksir.Value{{Layout: lay, Level: 2}, {Layout: lay, Level: 2}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpAddConst, Out: 1, In: []int{0}, Bias: []float64{1, 2, 3}},
			{Op: ckksir.OpMulConst, Out: 2, In: []int{1}, Vector: []float64{0.5, -1, 2}},
		},
	}
	if err := ckksir.Verify(p); err != nil {
		t.Fatal(err)
	}
	mags := [][]float64{{1, 1, 1}, {2, 3, 4}, {1, 3, 8}}
	if err := AssignErrorBounds(p, mags, 0); err != nil {
		t.Fatal(err)
	}
	if b := p.Values[2].Bound; !(b > 0) || math.IsInf(b, 0) {
		t.Errorf("output bound %g", b)
	}
}

// TestErrorBoundsProductPairsSlots bounds the second-order term of a
// product slot by slot: x errs widely in slot 0 only, y in slot 1 only, so
// e_x·e_y is small in every slot, while the product of the two values'
// largest bounds (the former term, which a softmax's largest exponentials
// and its smallest rows' inverses made vacuous) is about 9e4 here.
func TestErrorBoundsProductPairsSlots(t *testing.T) {
	lay := ckksir.Layout{Shape: ir.Shape{2}}
	p := &ckksir.Program{
		Params:    ckksir.Params{LogN: 10, LogQ: []int{60, 40, 40, 40}, LogP: []int{61}, LogScale: 40},
		BlockSize: 2, Batch: 256,
		Inputs:  []ckksir.IO{{Name: "a", Value: 0}, {Name: "b", Value: 1}},
		Outputs: []ckksir.IO{{Name: "z", Value: 4}},
		Values: []ckksir.Value{
			{Layout: lay, Level: 3}, {Layout: lay, Level: 3},
			{Layout: lay, Level: 2}, {Layout: lay, Level: 2}, {Layout: lay, Level: 1},
		},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpMulConst, Out: 2, In: []int{0}, Vector: []float64{1e12, 1}},
			{Op: ckksir.OpMulConst, Out: 3, In: []int{1}, Vector: []float64{1, 1e12}},
			{Op: ckksir.OpMul, Out: 4, In: []int{2, 3}},
		},
	}
	// Small magnitudes keep the first-order terms (y·e_x, x·e_y) small.
	mags := make([][]float64, len(p.Values))
	for i := range mags {
		mags[i] = []float64{1e-3, 1e-3}
	}
	if err := AssignErrorBounds(p, mags, 0); err != nil {
		t.Fatal(err)
	}
	bx, by, bz := p.Values[2].Bound, p.Values[3].Bound, p.Values[4].Bound
	global := bx * by / (CKKSTail * CKKSSafety)
	t.Logf("bounds: x %.3g, y %.3g, x·y %.3g (product of the largest bounds: %.3g)", bx, by, bz, global)
	if global < 1e4 {
		t.Fatalf("the test's errors are too small to tell the terms apart: %.3g", global)
	}
	// First order: 1e-3 times each factor's bound; second order per slot:
	// one wide error times one fresh one.
	if want := 1e-3 * (bx + by) * 2; !(bz < want) {
		t.Errorf("x·y bound %.3g, want below %.3g: the second-order term pairs slots that never meet", bz, want)
	}
	if !(bz >= 1e-3*max(bx, by)/2) {
		t.Errorf("x·y bound %.3g lost the first-order term (%.3g)", bz, 1e-3*max(bx, by))
	}
}

// TestSampleLipschitzWindowPerSlot widens each slot's window by that
// slot's own error bound: a slot with a small error keeps its local slope
// beside a slot with a wide one.
func TestSampleLipschitzWindowPerSlot(t *testing.T) {
	sq := &ckksir.Poly{A: -1, B: 1, Coeffs: []float64{0.5, 0, 0.5}} // t², slope 2t
	got := ckksSampleLipschitz(sq, [][]float64{{0.1, 0.1}}, [][]float64{{1e-6, 1}})
	if s := got[0][0]; math.Abs(s-0.2*ckksLipschitzMargin) > 0.03 {
		t.Errorf("slot with a small error: factor %.3g, want about %.3g", s, 0.2*ckksLipschitzMargin)
	}
	if s := got[0][1]; math.Abs(s-2*ckksLipschitzMargin) > 1e-9 {
		t.Errorf("slot with a wide error: factor %.3g, want %.3g (max |p'| over [-0.9, 1])", s, 2*ckksLipschitzMargin)
	}
	if nan := ckksSampleLipschitz(sq, [][]float64{{0.1}}, [][]float64{{math.NaN()}}); !(nan[0][0] >= 2) {
		t.Errorf("slot with an unknown error: factor %.3g, want the largest slope", nan[0][0])
	}
}
