package passes_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// openCanonical opens a bundled model and canonicalizes its graph.
func openCanonical(t *testing.T, name string) *zoo.Model {
	t.Helper()
	m, err := zoo.OpenDir(filepath.Join("..", "testsuite", "models", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := compiler.RunPasses(m.Graph, compiler.Canonicalize, compiler.Options{Verify: true}); err != nil {
		t.Fatal(err)
	}
	return m
}

// rowsAt stacks the given samples of t.
func rowsAt(t *ir.Tensor, idx []int) *ir.Tensor {
	var out *ir.Tensor
	for _, i := range idx {
		r := zoo.Rows(t, i, i+1)
		if out == nil {
			out = r
			continue
		}
		out.Shape[0]++
		out.Float = append(out.Float, r.Float...)
		out.Int = append(out.Int, r.Int...)
	}
	return out
}

func TestDecomposeMaxPoolDigitsCNN(t *testing.T) {
	m := openCanonical(t, "digits-cnn")
	want, err := zoo.RunBatched(m.Graph, m.Inputs, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph.Clone()
	if err := passes.DecomposeMaxPool(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Nodes {
		if n.Op == "MaxPool" {
			t.Fatal("a MaxPool is left")
		}
	}
	got, err := zoo.RunBatched(g, m.Inputs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d := zoo.MaxAbsDiff(got, want); d > 1e-12 {
		t.Errorf("decomposed MaxPool differs by %g over %d samples", d, m.Samples())
	}
}

// TestApproximateModels approximates the bundled models' activations with
// the default targets, calibrating on their held-out samples, and checks
// the targets on the calibration samples and the accuracy on all of them.
func TestApproximateModels(t *testing.T) {
	for _, name := range []string{"cancer-mlp", "digits-mlp", "digits-cnn"} {
		t.Run(name, func(t *testing.T) {
			m := openCanonical(t, name)
			g := m.Graph
			if err := passes.DecomposeMaxPool(g); err != nil {
				t.Fatal(err)
			}
			exact := g.Clone()
			exactOut, err := zoo.RunBatched(exact, m.Inputs, 1)
			if err != nil {
				t.Fatal(err)
			}
			opts := passes.ApproxOptions{}
			rep, err := passes.ApproximateActivations(g, m.Inputs, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s:\n%s", name, rep)
			if err := ir.Verify(g); err != nil {
				t.Fatal(err)
			}
			var summary []string
			for _, e := range rep.Entries {
				summary = append(summary, fmt.Sprintf("%v/d%d", e.Degrees, e.Depth))
			}
			t.Logf("%s degrees: %s", name, strings.Join(summary, " "))
			polys := 0
			for _, n := range g.Nodes {
				if passes.NeedsPolynomial(n.Op) && n.Op != "Poly" {
					t.Errorf("%v left unapproximated", n)
				}
				if n.Op == "Poly" {
					polys++
				}
			}
			if polys < len(rep.Entries) || len(rep.Entries) == 0 {
				t.Errorf("%d Poly nodes for %d entries", polys, len(rep.Entries))
			}
			if !rep.TargetsMet {
				t.Error("targets not met")
			}
			// Independent check on the calibration samples.
			want := min(m.Samples(), 256)
			if len(rep.Samples) != want {
				t.Errorf("search used %d samples, want %d", len(rep.Samples), want)
			}
			cal := rowsAt(m.Inputs, rep.Samples)
			calExact, err := zoo.RunBatched(exact, cal, 1)
			if err != nil {
				t.Fatal(err)
			}
			calApprox, err := zoo.RunBatched(g, cal, 1)
			if err != nil {
				t.Fatal(err)
			}
			agree, diff := zoo.Agreement(calApprox, calExact), zoo.MaxAbsDiff(calApprox, calExact)
			tol := math.Ldexp(zoo.MaxAbsDiff(calExact, ir.NewFloat(calExact.Shape, nil)), -6)
			if agree < 1 || diff > tol || math.Abs(diff-rep.OutputErr) > 1e-9 || agree != rep.Agreement {
				t.Errorf("calibration set: agreement %.4f (report %.4f), max error %.4g (report %.4g, tolerance %.4g)",
					agree, rep.Agreement, diff, rep.OutputErr, tol)
			}
			// Accuracy over all held-out samples.
			out, err := zoo.RunBatched(g, m.Inputs, 1)
			if err != nil {
				t.Fatal(err)
			}
			accExact, acc := zoo.Accuracy(exactOut, m.Labels), zoo.Accuracy(out, m.Labels)
			t.Logf("%s: accuracy %.4f -> %.4f, agreement %.4f over %d samples, max output error %.3g, max depth %d, %v",
				name, accExact, acc, zoo.Agreement(out, exactOut), m.Samples(), zoo.MaxAbsDiff(out, exactOut), rep.MaxDepth(), rep.Elapsed)
			if acc < accExact-0.005 {
				t.Errorf("accuracy dropped from %.4f to %.4f", accExact, acc)
			}
			if v, err := passes.OutOfRange(g, cal); err != nil || len(v) > 0 {
				t.Errorf("calibration samples leave a polynomial's interval: %v %v", v, err)
			}
		})
	}
}

// graphBuilder assembles small test graphs.
type graphBuilder struct {
	g *ir.Graph
	r *rand.Rand
	k int
}

func newGraphBuilder() *graphBuilder {
	return &graphBuilder{g: &ir.Graph{Name: "test", Opset: 13}, r: rand.New(rand.NewPCG(1, 2))}
}

func (b *graphBuilder) input(shape ...int) *ir.Value {
	v := &ir.Value{Name: "x", DType: ir.Float32, Shape: shape}
	b.g.Inputs = append(b.g.Inputs, v)
	return v
}

// dense multiplies by a random [k, m] matrix of entries of scale s/√k.
func (b *graphBuilder) dense(x *ir.Value, k, m int, s float64) *ir.Value {
	w := ir.NewFloat(ir.Shape{k, m}, nil)
	for i := range w.Float {
		w.Float[i] = s * b.r.NormFloat64() / math.Sqrt(float64(k))
	}
	b.k++
	c := &ir.Value{Name: fmt.Sprintf("w%d", b.k), DType: ir.Float32, Shape: w.Shape, Const: w}
	return b.op("MatMul", nil, x, c)
}

func (b *graphBuilder) op(op string, attrs ir.Attrs, ins ...*ir.Value) *ir.Value {
	b.k++
	n := &ir.Node{Name: fmt.Sprintf("%s_%d", op, b.k), Op: op, Inputs: ins, Attrs: attrs}
	out := &ir.Value{Name: fmt.Sprintf("v%d", b.k), Producer: n}
	n.Outputs = []*ir.Value{out}
	b.g.Nodes = append(b.g.Nodes, n)
	return out
}

func (b *graphBuilder) samples(n, k int) *ir.Tensor {
	t := ir.NewFloat(ir.Shape{n, k}, nil)
	for i := range t.Float {
		t.Float[i] = b.r.NormFloat64()
	}
	return t
}

// checkApproximated verifies g after ApproximateActivations: valid, no
// activation left, every Poly well formed, and the report's targets hold
// when rechecked on the calibration samples.
func checkApproximated(t *testing.T, exact, g *ir.Graph, calib *ir.Tensor, rep *passes.ApproxReport) {
	t.Helper()
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		byName[n.Name] = n
		if passes.NeedsPolynomial(n.Op) && n.Op != "Poly" {
			t.Errorf("%v left", n)
		}
		if n.Op == "Poly" {
			a, b := n.Attrs.Float("a", 0), n.Attrs.Float("b", 0)
			if !(a < b) || len(n.Attrs.Floats("coeffs", nil)) < 2 || n.Attrs.String("func", "") == "" || !n.Attrs.Has("max_err") {
				t.Errorf("malformed Poly %s: %s", n.Name, n.Attrs.Summary())
			}
		}
	}
	ranges, err := passes.Calibrate(exact, calib)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Entries {
		n := byName[e.Node]
		if n == nil {
			t.Errorf("no node named %q after the pass", e.Node)
			continue
		}
		if r := ranges[e.Node]; !(e.A < r.Min && r.Max < e.B) {
			t.Errorf("%s: interval [%g, %g] does not cover the exact range %v with a margin", e.Node, e.A, e.B, r)
		}
		wantDepth := 0
		for _, d := range e.Degrees {
			wantDepth += bits(d)
		}
		if e.Composite {
			wantDepth++
			if n.Op != "Mul" || n.Inputs[1].Producer == nil || n.Inputs[1].Producer.Op != "Poly" {
				t.Errorf("composite %s: final node %v, want a Mul by the sign chain", e.Node, n)
			}
		} else if n.Op != "Poly" || n.Attrs.Float("max_err", -1) != e.MaxErr || len(n.Attrs.Floats("coeffs", nil)) != e.Degrees[0]+1 {
			t.Errorf("%s: node %v (%s) does not match entry %+v", e.Node, n, n.Attrs.Summary(), e)
		}
		if e.Depth != wantDepth {
			t.Errorf("%s: depth %d, want %d for degrees %v", e.Node, e.Depth, wantDepth, e.Degrees)
		}
	}
	if !rep.TargetsMet {
		t.Fatalf("targets not met:\n%s", rep)
	}
	want, err := zoo.RunBatched(exact, calib, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := zoo.RunBatched(g, calib, 1)
	if err != nil {
		t.Fatal(err)
	}
	if a, d := zoo.Agreement(got, want), zoo.MaxAbsDiff(got, want); a < rep.MinAgreement || d > rep.Tolerance {
		t.Errorf("recheck: agreement %.4f, max error %.4g (tolerance %.4g)", a, d, rep.Tolerance)
	}
	if v, err := passes.OutOfRange(g, calib); err != nil || len(v) > 0 {
		t.Errorf("out of range on the calibration samples: %v %v", v, err)
	}
}

// bits is ceil(log2(d+1)).
func bits(d int) int {
	n := 0
	for 1<<n <= d {
		n++
	}
	return n
}

// TestApproximateEveryActivation chains every supported activation between
// random dense layers.
func TestApproximateEveryActivation(t *testing.T) {
	b := newGraphBuilder()
	x := b.input(1, 8)
	h := x
	acts := []struct {
		op    string
		attrs ir.Attrs
	}{
		{"Tanh", nil}, {"Gelu", nil}, {"SiLU", nil}, {"Sigmoid", nil}, {"Softplus", nil},
		{"Elu", ir.Attrs{"alpha": {Kind: ir.AttrFloat, Float: 0.5}}}, {"Selu", nil},
		{"HardSigmoid", nil}, {"LeakyRelu", ir.Attrs{"alpha": {Kind: ir.AttrFloat, Float: 0.1}}},
		{"Relu", nil}, {"Abs", nil},
	}
	for _, a := range acts {
		h = b.op(a.op, a.attrs, b.dense(h, 8, 8, 2))
	}
	b.g.Outputs = []*ir.Value{b.dense(h, 8, 4, 3)}
	g := b.g
	if err := passes.InferShapes(g); err != nil {
		t.Fatal(err)
	}
	calib := b.samples(64, 8)
	exact := g.Clone()
	rep, err := passes.ApproximateActivations(g, calib, passes.ApproxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	if len(rep.Entries) != len(acts) {
		t.Fatalf("%d entries, want %d", len(rep.Entries), len(acts))
	}
	for i, e := range rep.Entries {
		if e.Op != acts[i].op {
			t.Errorf("entry %d is %s, want %s (topological order)", i, e.Op, acts[i].op)
		}
	}
	checkApproximated(t, exact, g, calib, rep)
}

// TestApproximateComposite caps the Chebyshev degree and asks for more
// precision than it gives, so that Relu and Abs take composite forms.
func TestApproximateComposite(t *testing.T) {
	b := newGraphBuilder()
	x := b.input(1, 16)
	h := b.op("Relu", nil, b.dense(x, 16, 16, 2))
	h = b.op("Abs", nil, b.dense(h, 16, 16, 2))
	b.g.Outputs = []*ir.Value{b.dense(h, 16, 4, 2)}
	g := b.g
	if err := passes.InferShapes(g); err != nil {
		t.Fatal(err)
	}
	calib := b.samples(32, 16)
	exact := g.Clone()
	opts := passes.ApproxOptions{MaxDegree: 15, PrecisionBits: 10, Margin: 0.1}
	rep, err := passes.ApproximateActivations(g, calib, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	composites := 0
	for _, e := range rep.Entries {
		if e.Composite {
			composites++
			if len(e.Degrees) < 1 || e.MaxErr > rep.Tolerance {
				t.Errorf("composite entry %+v", e)
			}
		}
	}
	if composites == 0 {
		t.Fatal("no composite chosen")
	}
	checkApproximated(t, exact, g, calib, rep)
	// The composite computes x·(g0 + g1·s(x)): check the Relu one
	// against its definition on a few points of its interval.
	for _, n := range g.Nodes {
		if n.Op != "Mul" || n.Name != rep.Entries[0].Node {
			continue
		}
		e := rep.Entries[0]
		var chain []*ir.Node
		for p := n.Inputs[1].Producer; p != nil && p.Op == "Poly"; p = p.Inputs[0].Producer {
			chain = append([]*ir.Node{p}, chain...)
		}
		scale := chain[0].Inputs[0].Producer
		if len(chain) != len(e.Degrees) || scale == nil || scale.Op != "Mul" || scale.Inputs[0] != n.Inputs[0] {
			t.Fatalf("sign chain of %d Polys, want %d reading the Mul's other input, scaled", len(chain), len(e.Degrees))
		}
		for _, p := range chain {
			if p.Attrs.Float("a", 0) != -1 || p.Attrs.Float("b", 0) != 1 {
				t.Errorf("sign stage %s on [%g, %g], want [-1, 1]", p.Name, p.Attrs.Float("a", 0), p.Attrs.Float("b", 0))
			}
		}
		for i := 0; i <= 100; i++ {
			v := e.A + (e.B-e.A)*float64(i)/100
			y := ir.NewFloat(ir.Shape{1}, []float64{v})
			for _, p := range append([]*ir.Node{scale}, chain...) {
				if p == scale {
					outs, err := plain.EvalNode(p, 13, []*ir.Tensor{y, p.Inputs[1].Const})
					if err != nil {
						t.Fatal(err)
					}
					y = outs[0]
					continue
				}
				outs, err := plain.EvalNode(p, 13, []*ir.Tensor{y})
				if err != nil {
					t.Fatal(err)
				}
				y = outs[0]
			}
			if d := math.Abs(v*y.Float[0] - max(v, 0)); d > e.MaxErr+1e-12 {
				t.Fatalf("Relu composite at %g is off by %g (max_err %g)", v, d, e.MaxErr)
			}
		}
	}
}

func TestApproximateNoActivations(t *testing.T) {
	b := newGraphBuilder()
	x := b.input(1, 4)
	b.g.Outputs = []*ir.Value{b.dense(x, 4, 2, 1)}
	rep, err := passes.ApproximateActivations(b.g, b.samples(4, 4), passes.ApproxOptions{})
	if err != nil || len(rep.Entries) != 0 || !rep.TargetsMet {
		t.Fatalf("got %v, %v", rep, err)
	}
}

// TestApproximateTargetsMissed asks for more than degree 15 can give, with
// composites disabled: the pass still rewrites the graph with the most
// precise candidates and reports the miss.
func TestApproximateTargetsMissed(t *testing.T) {
	b := newGraphBuilder()
	x := b.input(1, 16)
	h := b.op("Relu", nil, b.dense(x, 16, 16, 2))
	b.g.Outputs = []*ir.Value{b.dense(h, 16, 4, 2)}
	g := b.g
	if err := passes.InferShapes(g); err != nil {
		t.Fatal(err)
	}
	calib := b.samples(16, 16)
	rep, err := passes.ApproximateActivations(g, calib, passes.ApproxOptions{MaxDegree: 15, NoComposite: true, PrecisionBits: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	if rep.TargetsMet || rep.Entries[0].Met || !strings.Contains(rep.String(), "NOT met") {
		t.Errorf("targets reported met:\n%s", rep)
	}
	if e := rep.Entries[0]; e.Degrees[0] != 15 || e.Tried != 3 {
		t.Errorf("entry %+v: want the degree-15 candidate after 3 tries", e)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	if rep.OutputErr <= rep.Tolerance || rep.OutputErr > 10 {
		t.Errorf("output error %g, tolerance %g", rep.OutputErr, rep.Tolerance)
	}
}
