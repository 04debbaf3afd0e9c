package passes

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/synth"
)

// canonicalAttention returns a synthetic attention block, shapes inferred
// with a batch of 1, and calibration samples for it.
func canonicalAttention(t *testing.T, o synth.AttentionOptions, n int) (*ir.Graph, *ir.Tensor) {
	t.Helper()
	g := synth.Attention(o)
	if err := BindInputs(g, map[string]ir.Shape{"input": {1, g.Inputs[0].Shape[1], g.Inputs[0].Shape[2]}}); err != nil {
		t.Fatal(err)
	}
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	return g, synth.Inputs(o, n, 5)
}

// TestDecomposeTransformer checks that the decomposed block computes the
// block: matrix products exactly, softmax and layer normalization within
// the inverses' relative tolerance, on the calibration samples and on
// fresh ones, with no Softmax, LayerNormalization or encrypted MatMul left;
// a causal mask becomes a multiplier (no mask constant left), and products
// larger than MaxSlots are computed in parts (along the skew, or per head
// when replicated). Products are skewed unless asked to be replicated.
func TestDecomposeTransformer(t *testing.T) {
	for _, c := range []struct {
		o            synth.AttentionOptions
		maxSlots     int
		parts, masks int
		replicated   bool
	}{
		{synth.AttentionOptions{}, 0, 2, 0, false},
		{synth.AttentionOptions{}, 0, 2, 0, true},
		{synth.AttentionOptions{Tokens: 8, Dim: 16, Heads: 2, Seed: 3, Opset: 17}, 0, 2, 0, false},
		{synth.AttentionOptions{Tokens: 8, Dim: 16, Heads: 2, Seed: 3, Opset: 17, Causal: true}, 512, 4, 1, false},
		{synth.AttentionOptions{Tokens: 8, Dim: 16, Heads: 2, Seed: 3, Opset: 17, Causal: true}, 512, 4, 1, true},
		{synth.AttentionOptions{Tokens: 6, Dim: 8, Heads: 1, Seed: 4, Causal: true}, 160, 4, 1, false},
	} {
		o := c.o
		g, calib := canonicalAttention(t, o, 64)
		exact := g.Clone()
		rep, err := DecomposeTransformer(g, calib, TransformerOptions{MaxSlots: c.maxSlots, Replicated: c.replicated})
		if err != nil {
			t.Fatal(err)
		}
		if err := ir.Verify(g); err != nil {
			t.Fatal(err)
		}
		if rep.Products != 2 || len(rep.Entries) != 2 || rep.Parts != c.parts || rep.Masks != c.masks {
			t.Fatalf("report: %d products in %d parts, %d entries, %d masks; want 2 in %d, 2, %d\n%s", rep.Products, rep.Parts, len(rep.Entries), rep.Masks, c.parts, c.masks, rep)
		}
		for _, n := range g.Nodes {
			for _, in := range n.Inputs {
				if in != nil && in.IsConst() && in.Const.DType.IsFloat() && slices.ContainsFunc(in.Const.Float, func(v float64) bool { return v <= TransformerMaskBelow }) {
					t.Errorf("%v still reads the mask constant %s", n, in.Name)
				}
			}
		}
		exps, gathers := 0, 0
		for _, n := range g.Nodes {
			if n.Op == "Gather" && strings.HasSuffix(n.Name, "rhs_replicated") {
				gathers++
			}
			switch {
			case n.Op == "Softmax" || n.Op == "LayerNormalization":
				t.Errorf("%v left", n)
			case n.Op == "MatMul" && !n.Inputs[0].IsConst() && !n.Inputs[1].IsConst():
				t.Errorf("%v: encrypted product left", n)
			case n.Op == "Exp":
				exps++
			}
		}
		if exps != 1 {
			t.Errorf("%d Exp nodes, want 1", exps)
		}
		if skewed := gathers > 0; skewed == c.replicated || c.replicated && gathers != 0 {
			t.Errorf("replicated %v: %d skewed operands", c.replicated, gathers)
		}
		for _, e := range rep.Entries {
			last := e.Inverses[len(e.Inverses)-1]
			if last.RelErr > math.Ldexp(1, -12) || e.Depth <= last.Depth {
				t.Errorf("%s: last inverse rel err %.3g, depth %d of %d", e.Node, last.RelErr, last.Depth, e.Depth)
			}
		}
		t.Logf("\n%s", rep)
		for _, seed := range []uint64{5, 99} {
			x := synth.Inputs(o, 16, seed)
			for i := 0; i < 16; i++ {
				feed := map[string]*ir.Tensor{"input": calibRows(x, i, i+1)}
				want, err := plain.Run(exact, feed, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := plain.Run(g, feed, nil)
				if err != nil {
					t.Fatal(err)
				}
				w, y := want["output"].Floats(), got["output"].Floats()
				for k := range w {
					if d := math.Abs(w[k] - y[k]); !(d < 1e-3) {
						t.Fatalf("seed %d sample %d element %d: decomposed %g, exact %g", seed, i, k, y[k], w[k])
					}
				}
			}
		}
	}
}

// TestPlanNewton checks the choice of starting polynomials and iterations:
// a narrow interval needs no iteration, a wide one several, and each plan
// meets its tolerance on its interval.
func TestPlanNewton(t *testing.T) {
	opts := TransformerOptions{}.withDefaults()
	for _, c := range []struct {
		inv    tfInverse
		lo, hi float64
	}{{tfReciprocal, 0.5, 2}, {tfReciprocal, 1e-2, 1e2}, {tfInvSqrt, 0.25, 4}, {tfInvSqrt, 1e-3, 1e2}} {
		p, err := tfPlanNewton(c.inv, c.lo, c.hi, opts)
		if err != nil {
			t.Fatalf("%s on [%g, %g]: %v", c.inv.name, c.lo, c.hi, err)
		}
		if p.relErr > opts.RelTol || p.depth != approxDegreeDepth(p.degree)+p.iters*c.inv.stepDepth {
			t.Errorf("%s on [%g, %g]: %+v", c.inv.name, c.lo, c.hi, p)
		}
		for _, x := range []float64{c.lo, math.Sqrt(c.lo * c.hi), c.hi} {
			y := plain.Chebyshev(p.coeffs, (2*x-c.lo-c.hi)/(c.hi-c.lo))
			for k := 0; k < p.iters; k++ {
				y = c.inv.step(x, y)
			}
			if r := math.Abs(y/c.inv.f(x) - 1); r > opts.RelTol {
				t.Errorf("%s(%g): relative error %.3g", c.inv.name, x, r)
			}
		}
		t.Logf("%s on [%g, %g]: degree %d, %d iterations, depth %d, rel err %.3g", c.inv.name, c.lo, c.hi, p.degree, p.iters, p.depth, p.relErr)
	}
	if p, _ := tfPlanNewton(tfReciprocal, 1e-2, 1e2, opts); p.iters == 0 {
		t.Errorf("1/x on [1e-2, 1e2] without Newton iterations: %+v", p)
	}
}

// TestSkewedAttentionDiagonals lowers a causal attention block with its
// products skewed and shared product layouts, and replicated with
// contiguous operands: the skewed program computes the same (checked by
// TestDecomposeTransformer and the encrypted zoo tests) with less than half
// the diagonals.
func TestSkewedAttentionDiagonals(t *testing.T) {
	o := synth.AttentionOptions{Tokens: 8, Dim: 16, Heads: 2, Seed: 3, Opset: 17, Causal: true}
	for _, maxSlots := range []int{0, 512} { // whole, and in two parts
		diagonals := func(replicated bool) int {
			g, calib := canonicalAttention(t, o, 16)
			if _, err := DecomposeTransformer(g, calib, TransformerOptions{Replicated: replicated, MaxSlots: maxSlots}); err != nil {
				t.Fatal(err)
			}
			if _, err := ApproximateActivations(g, calib, ApproxOptions{}); err != nil {
				t.Fatal(err)
			}
			p, err := LowerCKKS(g, LowerOptions{Calib: calib, SharedProductLayouts: !replicated})
			if err != nil {
				t.Fatal(err)
			}
			return p.DiagonalCount()
		}
		skewed, replicated := diagonals(false), diagonals(true)
		t.Logf("products of at most %d slots: diagonals skewed %d, replicated %d", maxSlots, skewed, replicated)
		if 2*skewed > replicated {
			t.Errorf("products of at most %d slots: skewed %d diagonals, replicated %d; want less than half", maxSlots, skewed, replicated)
		}
	}
}
