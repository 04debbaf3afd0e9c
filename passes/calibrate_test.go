package passes

import (
	"math"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// calibSamplesOf stacks rows of equal length into a [len(rows), k] tensor: one
// sample a row for a model whose input is [1, k].
func calibSamplesOf(rows ...[]float64) *ir.Tensor {
	t := ir.NewFloat(ir.Shape{len(rows), len(rows[0])}, nil)
	t.Float = t.Float[:0]
	for _, r := range rows {
		t.Float = append(t.Float, r...)
	}
	return t
}

func TestCalibrate(t *testing.T) {
	// x -> Abs;  2x -> Relu -> (-1) -> Sigmoid;  Abs + Sigmoid.
	b := newBuilder("calib", 13)
	x := b.input("x", 1, 4)
	abs := b.op("Abs", nil, x)
	dbl := b.op("Mul", nil, x, b.scalar("two", 2))
	relu := b.op("Relu", nil, dbl)
	shift := b.op("Add", nil, relu, b.scalar("minus1", -1))
	sig := b.op("Sigmoid", nil, shift)
	g := b.output(b.op("Add", nil, abs, sig))
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	samples := calibSamplesOf(
		[]float64{0.5, -1, 2, 0},
		[]float64{-3, 1.5, 0.25, 0.75},
		[]float64{1, 1, 1, math.NaN()},
	)
	r, err := Calibrate(g, samples)
	if err != nil {
		t.Fatal(err)
	}
	want := Ranges{
		abs.Producer.Name:  {-3, 2},
		relu.Producer.Name: {-6, 4},
		sig.Producer.Name:  {-1, 3},
	}
	if len(r) != len(want) {
		t.Errorf("got ranges for %d nodes, want %d: %v", len(r), len(want), r)
	}
	for name, w := range want {
		if got, ok := r[name]; !ok || got != w {
			t.Errorf("%s: range %v, want %v", name, got, w)
		}
	}
	if !NeedsPolynomial("Gelu") || !NeedsPolynomial("Poly") || NeedsPolynomial("Add") {
		t.Error("NeedsPolynomial misclassifies ops")
	}
	// Errors: several inputs; a batch that does not split.
	b2 := newBuilder("two", 13)
	g2 := b2.output(b2.op("Add", nil, b2.input("a", 1), b2.input("b", 1)))
	if _, err := Calibrate(g2, calibSamplesOf([]float64{1})); err == nil {
		t.Error("accepted a two-input graph")
	}
	b3 := newBuilder("batch2", 13)
	g3 := b3.output(b3.op("Relu", nil, b3.input("x", 2, 4)))
	if _, err := Calibrate(g3, samples); err == nil || !strings.Contains(err.Error(), "batches of 2") {
		t.Errorf("3 samples for a batch-2 model: got %v", err)
	}
}

func TestOutOfRange(t *testing.T) {
	// x -> Relu -> Tanh, approximated on samples in [-1, 1].
	b := newBuilder("range", 13)
	x := b.input("x", 1, 3)
	relu := b.op("Relu", nil, x)
	g := b.output(b.op("Tanh", nil, relu))
	reluName, tanhName := relu.Producer.Name, g.Outputs[0].Producer.Name
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	calib := calibSamplesOf([]float64{-1, 0, 1}, []float64{0.5, -0.5, 0.9}, []float64{0.2, 0.3, -0.8})
	rep, err := ApproximateActivations(g, calib, ApproxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	v, err := OutOfRange(g, calib)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 0 {
		t.Errorf("calibration samples flagged: %v", v)
	}
	// Sample 1 holds 5 (outside both intervals, and Relu passes 5 on to
	// the Tanh polynomial: what the polynomial makes of it), sample 2 -7
	// (outside the Relu polynomial's interval only, unless it drives the
	// Tanh input out too).
	test := calibSamplesOf([]float64{0.1, 0.2, 0.3}, []float64{0.1, 5, 0.3}, []float64{-7, 0, 0})
	v, err = OutOfRange(g, test)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range v {
		t.Log(e)
	}
	if len(v) < 2 {
		t.Fatalf("got %d violations, want at least 2", len(v))
	}
	if v[0].Node != reluName || v[0].Sample != 1 || v[0].Value != 5 || v[0].Count != 1 || !(v[0].B < 5) {
		t.Errorf("first violation %+v, want node %q sample 1 value 5", v[0], reluName)
	}
	found := false
	for _, e := range v {
		if e.Sample == 0 {
			t.Errorf("in-range sample flagged: %v", e)
		}
		if e.Node == reluName && e.Sample == 2 && e.Value == -7 {
			found = true
		}
		if e.Node != reluName && e.Node != tanhName {
			t.Errorf("violation on unexpected node %q", e.Node)
		}
	}
	if !found {
		t.Errorf("sample 2's -7 not flagged: %v", v)
	}
}
