package plain

import (
	"math"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

func TestChebyshevBasis(t *testing.T) {
	for _, x := range []float64{-1, -0.3, 0, 0.5, 1} {
		// T3(x) = 4x^3 - 3x; 2*T0 + T3.
		want := 2 + 4*x*x*x - 3*x
		if got := Chebyshev([]float64{2, 0, 0, 1}, x); math.Abs(got-want) > 1e-12 {
			t.Errorf("Chebyshev at %g = %g, want %g", x, got, want)
		}
	}
}

func TestPolyKernelMapsInterval(t *testing.T) {
	// p(t) = t on [0, 4]: x -> (2x - 4)/4.
	n := &ir.Node{Name: "p", Op: "Poly", Attrs: ir.Attrs{
		"a": {Kind: ir.AttrFloat, Float: 0}, "b": {Kind: ir.AttrFloat, Float: 4},
		"coeffs": {Kind: ir.AttrFloats, Floats: []float64{0, 1}},
	}}
	out, err := EvalNode(n, 13, []*ir.Tensor{ir.NewFloat(ir.Shape{3}, []float64{0, 2, 6})})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{-1, 0, 2}
	for i, w := range want {
		if out[0].Float[i] != w {
			t.Errorf("p(%d) = %g, want %g", i, out[0].Float[i], w)
		}
	}
	n.Attrs["b"] = ir.Attr{Kind: ir.AttrFloat, Float: -1}
	if _, err := EvalNode(n, 13, []*ir.Tensor{ir.NewFloat(ir.Shape{1}, nil)}); err == nil {
		t.Error("accepted an empty interval")
	}
}
