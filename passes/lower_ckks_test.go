package passes

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// lcChebyshev returns the degree-deg Chebyshev interpolant of f on [a, b]
// (at the Chebyshev nodes) and its largest error on a fine grid.
func lcChebyshev(f func(float64) float64, a, b float64, deg int) (coeffs []float64, maxErr float64) {
	coeffs = ChebyshevInterpolant(f, a, b, deg)
	for i := 0; i <= 2000; i++ {
		x := a + (b-a)*float64(i)/2000
		maxErr = max(maxErr, math.Abs(plain.Chebyshev(coeffs, (2*x-a-b)/(b-a))-f(x)))
	}
	return coeffs, maxErr
}

// lcPolyAttrs returns the attributes of a Poly node approximating f (named
// fn) by its degree-deg interpolant on [-r, r].
func lcPolyAttrs(fn string, f func(float64) float64, r float64, deg int) ir.Attrs {
	c, e := lcChebyshev(f, -r, r, deg)
	return ir.Attrs{
		"func":    {Kind: ir.AttrString, String: fn},
		"a":       {Kind: ir.AttrFloat, Float: -r},
		"b":       {Kind: ir.AttrFloat, Float: r},
		"coeffs":  {Kind: ir.AttrFloats, Floats: c},
		"max_err": {Kind: ir.AttrFloat, Float: e},
	}
}

func lcRelu(x float64) float64 { return max(x, 0) }

// lcCanonical opens a bundled model, binds its input to one sample and
// canonicalizes it (the passes of compiler.Canonicalize, which this package
// cannot import).
func lcCanonical(t testing.TB, name string) (*ir.Graph, *ir.Tensor) {
	t.Helper()
	m, err := zoo.OpenDir(filepath.Join("..", "testsuite", "models", name))
	if err != nil {
		t.Skip(err)
	}
	g := m.Graph
	s := m.Inputs.Shape.Clone()
	s[0] = 1
	if err := BindInputs(g, map[string]ir.Shape{g.Inputs[0].Name: s}); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []func(*ir.Graph) error{InferShapes, FoldConstants, RemoveIdentity, Prune, FuseMatMulAdd,
		FoldBatchNorm, RecognizeSiLU, RecognizeGELU, RecognizeLayerNorm} {
		if err := pass(g); err != nil {
			t.Fatal(err)
		}
	}
	return g, m.Inputs
}

// lcSplitMaxPool rewrites every 2x2, stride 2 MaxPool as max(max(a, b),
// max(c, d)) over its four strided Slices, with max(x, y) = (x + y +
// Abs(x - y))·0.5, as the MaxPool decomposition does.
func lcSplitMaxPool(t testing.TB, g *ir.Graph) {
	t.Helper()
	var nodes []*ir.Node
	k := 0
	for _, n := range g.Nodes {
		if n.Op != "MaxPool" {
			nodes = append(nodes, n)
			continue
		}
		if fmt.Sprint(n.Attrs.Ints("kernel_shape", nil)) != "[2 2]" || fmt.Sprint(n.Attrs.Ints("strides", nil)) != "[2 2]" {
			t.Fatalf("%v: only 2x2 stride-2 pooling is decomposed here", n)
		}
		x, y := n.Inputs[0], n.Outputs[0]
		h, w := int64(x.Shape[2]), int64(x.Shape[3])
		ints := func(vs ...int64) *ir.Value {
			k++
			return newConst(fmt.Sprintf("%s_c%d", n.Name, k), ir.NewInt(ir.Shape{len(vs)}, vs))
		}
		half := newConst(n.Name+"_half", ir.NewFloat(ir.Shape{}, []float64{0.5}))
		op := func(opName string, out *ir.Value, ins ...*ir.Value) *ir.Value {
			k++
			if out == nil {
				out = &ir.Value{Name: fmt.Sprintf("%s_%s%d", n.Name, strings.ToLower(opName), k), DType: x.DType}
			}
			m := &ir.Node{Name: fmt.Sprintf("%s/%s%d", n.Name, opName, k), Op: opName, Inputs: ins, Outputs: []*ir.Value{out}}
			out.Producer = m
			nodes = append(nodes, m)
			return out
		}
		slice := func(i, j int64) *ir.Value {
			return op("Slice", nil, x, ints(i, j), ints(h, w), ints(2, 3), ints(2, 2))
		}
		maxOf := func(a, b, out *ir.Value) *ir.Value {
			return op("Mul", out, op("Add", nil, op("Add", nil, a, b), op("Abs", nil, op("Sub", nil, a, b))), half)
		}
		maxOf(maxOf(slice(0, 0), slice(0, 1), nil), maxOf(slice(1, 0), slice(1, 1), nil), y)
	}
	g.Nodes = nodes
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
}

// lcApproximate replaces every Relu and Abs of g by a degree-15 Chebyshev
// interpolant on [-r, r], r = 1.25·max |input| over the given samples, and
// MaxPool first by its Abs decomposition: a stand-in for
// ApproximateActivations.
func lcApproximate(t testing.TB, g *ir.Graph, samples *ir.Tensor) {
	t.Helper()
	lcSplitMaxPool(t, g)
	// Observe the inputs of Relu and Abs through their producers' outputs
	// (or the graph input).
	rng := map[*ir.Value]float64{}
	watch := map[*ir.Value]bool{}
	for _, n := range g.Nodes {
		if n.Op == "Relu" || n.Op == "Abs" {
			watch[n.Inputs[0]] = true
		}
	}
	obs := &plain.Options{}
	obs.Observe = func(n *ir.Node, outs []*ir.Tensor) {
		for i, o := range n.Outputs {
			if watch[o] {
				for _, f := range outs[i].Float {
					rng[o] = max(rng[o], math.Abs(f))
				}
			}
		}
	}
	x := g.Inputs[0]
	for s := range samples.Shape[0] {
		in := zoo.Rows(samples, s, s+1)
		in.DType = x.DType
		if _, err := plain.Run(g, map[string]*ir.Tensor{x.Name: in}, obs); err != nil {
			t.Fatal(err)
		}
		if watch[x] {
			for _, f := range in.Float {
				rng[x] = max(rng[x], math.Abs(f))
			}
		}
	}
	for _, n := range g.Nodes {
		switch n.Op {
		case "Relu":
			n.Op, n.Attrs = "Poly", lcPolyAttrs("Relu", lcRelu, 1.25*rng[n.Inputs[0]], 15)
		case "Abs":
			n.Op, n.Attrs = "Poly", lcPolyAttrs("Abs", math.Abs, 1.25*rng[n.Inputs[0]], 15)
		}
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
}

// lcSimulate executes p on float64 slot vectors, as CKKS would without its
// errors: matrices by their generalized diagonals with rotations over the
// whole slot vector, polynomials by Clenshaw, products and sums slotwise.
// samples[name][b] is the flat tensor of sample b for input name; slots
// outside the samples' tensors are filled with garbage, which the program
// must never read. It returns the outputs the same way.
func lcSimulate(t testing.TB, p *ckksir.Program, samples map[string][][]float64) map[string][][]float64 {
	t.Helper()
	vals := lcRunSlots(t, p, samples, nil, true)
	res := map[string][][]float64{}
	bs := p.BlockSize
	for _, o := range p.Outputs {
		lay := p.Values[o.Value].Layout
		for b := range len(samples[p.Inputs[0].Name]) {
			row := make([]float64, lay.Size())
			for j := range row {
				row[j] = vals[o.Value][b*bs+lay.Slot(j)]
			}
			res[o.Name] = append(res[o.Name], row)
		}
	}
	return res
}

// lcNoise injects Gaussian noise of the error model's standard deviations
// where CKKS adds noise (see error_bound.go), for checking the propagation
// of AssignErrorBounds.
type lcNoise struct {
	r *rand.Rand
}

func (n *lcNoise) add(v []float64, sigma float64) {
	if n == nil || sigma == 0 {
		return
	}
	for i := range v {
		v[i] += sigma * n.r.NormFloat64()
	}
}

// lcRunSlots runs p on slot vectors (see lcSimulate), with noise when noise
// is not nil, and returns every value's slot vector. With garbage, the slots
// outside the input tensors hold random values, else zeros.
func lcRunSlots(t testing.TB, p *ckksir.Program, samples map[string][][]float64, noise *lcNoise, garbage bool) [][]float64 {
	t.Helper()
	slots, bs := p.Params.Slots(), p.BlockSize
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([][]float64, len(p.Values))
	sigR := CKKSRescaleSigma(p.Params)
	sigPt := ckksEncodeSigma(p.Params, p.BlockSize)
	for _, in := range p.Inputs {
		v := make([]float64, slots)
		if garbage {
			for i := range v {
				v[i] = 2*r.Float64() - 1
			}
		}
		lay := p.Values[in.Value].Layout
		xs := samples[in.Name]
		if len(xs) > p.Batch {
			t.Fatalf("%d samples for %d blocks", len(xs), p.Batch)
		}
		for b, x := range xs {
			if len(x) != lay.Size() {
				t.Fatalf("input %q: sample of %d values for layout %v", in.Name, len(x), lay.Shape)
			}
			for j, xj := range x {
				v[b*bs+lay.Slot(j)] = xj
			}
		}
		noise.add(v, ckksFreshSigma(p.Params))
		vals[in.Value] = v
	}
	repeat := func(vec []float64) []float64 {
		out := make([]float64, slots)
		if vec != nil {
			for b := 0; b < slots; b += bs {
				copy(out[b:], vec)
			}
		}
		return out
	}
	rot := func(j int) int { return (j%slots + slots) % slots }
	for _, ins := range p.Instrs {
		var out []float64
		switch ins.Op {
		case ckksir.OpLinear:
			out = repeat(ins.Bias)
			enc2 := make([]float64, slots)
			for i, m := range ins.Matrices {
				x := vals[ins.In[i]]
				rotates := false
				for d := range m.Diagonals {
					rotates = rotates || d != 0
				}
				if noise != nil && rotates {
					x = append([]float64(nil), x...)
					noise.add(x, ckksKeySwitchSigma(p.Params, p.Values[ins.In[i]].Level))
				}
				for _, d := range m.Indices() {
					dd := m.Diagonals[d]
					diag := dd.Dense()
					for b := 0; b < slots; b += bs {
						for j, a := range diag {
							xv := x[rot(b+j+d)]
							out[b+j] += a * xv
							enc2[b+j] += xv * xv
						}
					}
				}
			}
			if noise != nil {
				for j := range out {
					out[j] += sigPt * math.Sqrt(enc2[j]) * noise.r.NormFloat64()
				}
				noise.add(out, sigR)
			}
		case ckksir.OpPoly:
			x := vals[ins.In[0]]
			out = make([]float64, slots)
			a, b := ins.Poly.A, ins.Poly.B
			for i, v := range x {
				t := (2*v - a - b) / (b - a)
				if noise != nil && (a != -1 || b != 1) {
					t += sigR * noise.r.NormFloat64()
				}
				out[i] = plain.Chebyshev(ins.Poly.Coeffs, t)
			}
			noise.add(out, sigR*ckksPolyNoiseFactor(ins.Poly))
		case ckksir.OpMul, ckksir.OpAdd:
			x, y := vals[ins.In[0]], vals[ins.In[1]]
			out = make([]float64, slots)
			for i := range out {
				if ins.Op == ckksir.OpMul {
					out[i] = x[i] * y[i]
				} else {
					out[i] = x[i] + y[i]
				}
			}
			if ins.Op == ckksir.OpMul {
				noise.add(out, sigR)
			}
		case ckksir.OpAddConst, ckksir.OpMulConst:
			x := vals[ins.In[0]]
			c := repeat(ins.Bias)
			if ins.Op == ckksir.OpMulConst {
				c = repeat(ins.Vector)
			}
			out = make([]float64, slots)
			for i := range out {
				if ins.Op == ckksir.OpMulConst {
					out[i] = x[i] * c[i]
				} else {
					out[i] = x[i] + c[i]
				}
			}
		default:
			t.Fatalf("simulate: op %v", ins.Op)
		}
		vals[ins.Out] = out
	}
	return vals
}

// lcCheckSimulation runs p by lcSimulate on the samples and g by the
// interpreter on each, and fails when they differ by more than tol relative
// to max(1, |want|).
func lcCheckSimulation(t testing.TB, g *ir.Graph, p *ckksir.Program, samples map[string][][]float64, tol float64) {
	t.Helper()
	got := lcSimulate(t, p, samples)
	n := len(samples[g.Inputs[0].Name])
	worst := 0.0
	for b := range n {
		feeds := map[string]*ir.Tensor{}
		for _, x := range g.Inputs {
			feeds[x.Name] = &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Float: samples[x.Name][b]}
		}
		want, err := plain.Run(g, feeds, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range g.Outputs {
			w := want[o.Name].Float
			gv := got[o.Name][b]
			for i := range w {
				d := math.Abs(gv[i]-w[i]) / max(1, math.Abs(w[i]))
				if !(d <= tol) {
					t.Fatalf("sample %d output %q[%d]: simulated %g, interpreter %g", b, o.Name, i, gv[i], w[i])
				}
				worst = max(worst, d)
			}
		}
	}
	t.Logf("simulation of %d samples matches the interpreter within %.1e", n, worst)
}

// lcRandomSamples returns n random samples in [-1, 1] for every input of g.
func lcRandomSamples(g *ir.Graph, n int, seed uint64) map[string][][]float64 {
	r := rand.New(rand.NewPCG(seed, 5))
	out := map[string][][]float64{}
	for _, x := range g.Inputs {
		for range n {
			v := make([]float64, x.Shape.Size())
			for i := range v {
				v[i] = 2*r.Float64() - 1
			}
			out[x.Name] = append(out[x.Name], v)
		}
	}
	return out
}

// lcTiny builds x[1,4] -> Dense -> Poly(relu on [-2, 2]) -> Dense -> y.
func lcTiny() *ir.Graph {
	b := newBuilder("tiny", 13)
	x := b.input("x", 1, 4)
	h := b.op("Dense", nil, x, b.konst("w1", ir.Shape{4, 3}), b.konst("b1", ir.Shape{3}))
	h = b.op("Poly", lcPolyAttrs("Relu", lcRelu, 2, 7), h)
	y := b.op("Dense", nil, h, b.konst("w2", ir.Shape{3, 2}), b.konst("b2", ir.Shape{2}))
	return b.output(y)
}

// lcMixed builds a graph exercising products, sums of encrypted values,
// reshapes and a batch-fixing Reshape: x[1,2,3] -> Reshape [1,6] -> Dense ->
// h; s = Poly(sigmoid)(h); r = Poly(relu)(h); m = h·s; outputs m + s (a
// linear: m's scale is not the default), Dense(m + s), Flatten(s) (an
// add-const) and s + r (an add).
func lcMixed() *ir.Graph {
	b := newBuilder("mixed", 13)
	x := b.input("x", 1, 2, 3)
	flat := b.op("Reshape", nil, x, b.ints("shape", 1, 6))
	h := b.op("Dense", nil, flat, b.konst("w1", ir.Shape{6, 4}), b.konst("b1", ir.Shape{4}))
	s := b.op("Poly", lcPolyAttrs("Sigmoid", func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, 4, 7), h)
	m := b.op("Mul", nil, h, s)
	sum := b.op("Add", nil, m, s)
	y := b.op("Dense", nil, sum, b.konst("w2", ir.Shape{4, 2}), nil)
	f := b.op("Flatten", ir.Attrs{"axis": intAttr(1)}, b.op("Unsqueeze", nil, s, b.ints("axes", 2)))
	r := b.op("Poly", lcPolyAttrs("Relu", lcRelu, 4, 3), h)
	return b.output(sum, y, f, b.op("Add", nil, s, r))
}

// lcPooled builds a small convolutional network whose pooled tensors stay
// where their windows started: x[1,1,8,8] -> Conv 1->2 (3x3, pad 1) ->
// relu -> AveragePool 2x2 stride 2 -> Conv 2->3 (3x3, pad 1) -> relu ->
// GlobalAveragePool -> Flatten -> Dense 3->2.
func lcPooled() *ir.Graph {
	b := newBuilder("pooled", 13)
	x := b.input("x", 1, 1, 8, 8)
	conv := ir.Attrs{"kernel_shape": intsAttr(3, 3), "pads": intsAttr(1, 1, 1, 1)}
	h := b.op("Conv", conv, x, b.konst("c1", ir.Shape{2, 1, 3, 3}), b.konst("c1b", ir.Shape{2}))
	h = b.op("Poly", lcPolyAttrs("Relu", lcRelu, 4, 3), h)
	h = b.op("AveragePool", ir.Attrs{"kernel_shape": intsAttr(2, 2), "strides": intsAttr(2, 2)}, h)
	h = b.op("Conv", conv, h, b.konst("c2", ir.Shape{3, 2, 3, 3}), b.konst("c2b", ir.Shape{3}))
	h = b.op("Poly", lcPolyAttrs("Relu", lcRelu, 4, 3), h)
	h = b.op("Flatten", ir.Attrs{"axis": intAttr(1)}, b.op("GlobalAveragePool", nil, h))
	return b.output(b.op("Dense", nil, h, b.konst("w", ir.Shape{3, 2}), b.konst("wb", ir.Shape{2})))
}

// lcDump renders a program with ckksir.Dump.
func lcDump(t testing.TB, p *ckksir.Program) string {
	t.Helper()
	var sb strings.Builder
	if err := ckksir.Dump(&sb, p); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestLowerCKKSGolden checks the lowering of small hand-built graphs against
// testdata/lower_ckks_*.golden and simulates the programs.
func TestLowerCKKSGolden(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func() *ir.Graph
	}{{"tiny", lcTiny}, {"mixed", lcMixed}, {"pooled", lcPooled}} {
		t.Run(c.name, func(t *testing.T) {
			g := c.build()
			if err := InferShapes(g); err != nil {
				t.Fatal(err)
			}
			p, err := LowerCKKS(g, LowerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			text := lcDump(t, p)
			checkGolden(t, "lower_ckks_"+c.name, text)
			lcCheckSimulation(t, g, p, lcRandomSamples(g, 5, 1), 1e-9)
		})
	}
}

// TestLowerCKKSTinyStructure checks the folding and levels of the tiny graph.
func TestLowerCKKSTinyStructure(t *testing.T) {
	g := lcTiny()
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	p, err := LowerCKKS(g, LowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Instrs) != 3 || p.Instrs[0].Op != ckksir.OpLinear || p.Instrs[1].Op != ckksir.OpPoly || p.Instrs[2].Op != ckksir.OpLinear {
		t.Fatalf("instructions:\n%s", lcDump(t, p))
	}
	if poly := p.Instrs[1].Poly; poly.A != -1 || poly.B != 1 || poly.Depth() != 3 {
		t.Errorf("poly not folded: [%g, %g] depth %d", poly.A, poly.B, poly.Depth())
	}
	if p.Depth() != 5 || p.Params.MaxLevel() != 5 {
		t.Errorf("depth %d, max level %d; want 5", p.Depth(), p.Params.MaxLevel())
	}
	if p.BlockSize != 4 || p.Batch != p.Params.Slots()/4 {
		t.Errorf("block %d batch %d", p.BlockSize, p.Batch)
	}
	for i, v := range p.Values {
		if !(v.Bound > 0) || v.Bound > 1e-3 {
			t.Errorf("v%d: bound %g", i, v.Bound)
		}
	}
}

// TestLowerCKKSModels lowers the approximated cancer-mlp, digits-mlp and
// digits-cnn, logs their statistics and checks a plaintext simulation of the
// program against the interpreter on bundled samples batched into blocks.
func TestLowerCKKSModels(t *testing.T) {
	for _, name := range []string{"cancer-mlp", "digits-mlp", "digits-cnn"} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			g, inputs := lcCanonical(t, name)
			calib := zoo.Rows(inputs, 0, min(32, inputs.Shape[0]))
			lcApproximate(t, g, calib)
			p, err := LowerCKKS(g, LowerOptions{Calib: calib})
			if err != nil {
				t.Fatal(err)
			}
			lowered := time.Since(start)
			var diags []string
			for _, ins := range p.Instrs {
				if ins.Op == ckksir.OpLinear {
					diags = append(diags, fmt.Sprint(len(ins.Matrices[0].Diagonals)))
					for _, m := range ins.Matrices[1:] {
						diags[len(diags)-1] += fmt.Sprintf("+%d", len(m.Diagonals))
					}
				}
			}
			t.Logf("%s: depth %d, %v, block %d, batch %d, diagonals per linear %s (lowered in %v)",
				name, p.Depth(), p.Params, p.BlockSize, p.Batch, strings.Join(diags, ", "), lowered.Round(time.Millisecond))
			t.Logf("\n%s", lcDump(t, p))
			n := min(p.Batch, 8, inputs.Shape[0])
			samples := map[string][][]float64{}
			x := g.Inputs[0].Name
			for s := range n {
				samples[x] = append(samples[x], zoo.Rows(inputs, inputs.Shape[0]-1-s, inputs.Shape[0]-s).Float)
			}
			lcCheckSimulation(t, g, p, samples, 1e-9)
		})
	}
}

// TestLowerCKKSUnsupported checks the error for an op with no encrypted
// form.
func TestLowerCKKSUnsupported(t *testing.T) {
	b := newBuilder("relu", 13)
	x := b.input("x", 1, 4)
	g := b.output(b.op("Relu", nil, b.op("Dense", nil, x, b.konst("w", ir.Shape{4, 4}))))
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	_, err := LowerCKKS(g, LowerOptions{})
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) || ue.Node != "Relu_2" || ue.Op != "Relu" || !strings.Contains(err.Error(), "not supported under encryption") {
		t.Fatalf("got %v", err)
	}

	b = newBuilder("div", 13)
	x = b.input("x", 1, 4)
	y := b.input("y", 1, 4)
	g = b.output(b.op("Div", nil, x, y))
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	if _, err := LowerCKKS(g, LowerOptions{}); !errors.As(err, &ue) || ue.Op != "Div" {
		t.Fatalf("got %v", err)
	}
}

// TestLowerCKKSErrors checks the other refusals: dynamic shapes, probing
// limits, depth beyond the largest ring.
func TestLowerCKKSErrors(t *testing.T) {
	b := newBuilder("dyn", 13)
	x := b.input("x", -1, 4)
	g := b.output(b.op("Neg", nil, x))
	g.Nodes[0].Outputs[0].Shape = ir.Shape{-1, 4}
	if _, err := LowerCKKS(g, LowerOptions{}); err == nil || !strings.Contains(err.Error(), "static shapes") {
		t.Errorf("dynamic shape: %v", err)
	}

	b = newBuilder("big", 13)
	x = b.input("x", 1, MaxProbeInput+1)
	g = b.output(b.op("Neg", nil, x))
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	if _, err := LowerCKKS(g, LowerOptions{}); err == nil || !strings.Contains(err.Error(), "blocks of 131072 slots need 131072 slots, but the largest ring (N=2^16) has 32768") {
		t.Errorf("large input: %v", err)
	}

	// 60 chained polynomials of degree 3 on [-1, 1]: depth 120.
	b = newBuilder("deep", 13)
	h := b.input("x", 1, 2)
	for range 60 {
		h = b.op("Poly", ir.Attrs{"coeffs": {Kind: ir.AttrFloats, Floats: []float64{0, 0.5, 0, 0.25}}}, h)
	}
	g = b.output(h)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	_, err := LowerCKKS(g, LowerOptions{})
	want := "model needs depth 120 (levels) but the largest 128-bit ring (N=2^16) holds at most 55 at scale 2^30; bootstrapping is not supported yet"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("deep: %v", err)
	}
}

// lcSimulateFeature runs a feature-packed program on one sample in float64:
// dense matrices by rows, everything else elementwise.
func lcSimulateFeature(t testing.TB, p *ckksir.Program, inputs map[string][]float64) map[string][]float64 {
	t.Helper()
	vals := make([][]float64, len(p.Values))
	for _, in := range p.Inputs {
		vals[in.Value] = inputs[in.Name]
	}
	for _, ins := range p.Instrs {
		out := make([]float64, p.Values[ins.Out].Layout.Size())
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
				a, b := ins.Poly.A, ins.Poly.B
				out[r] = plain.Chebyshev(ins.Poly.Coeffs, (2*x(0)[r]-a-b)/(b-a))
			case ckksir.OpAdd:
				out[r] = x(0)[r] + x(1)[r]
			case ckksir.OpMul:
				out[r] = x(0)[r] * x(1)[r]
			case ckksir.OpAddConst:
				out[r] = x(0)[r]
				if ins.Bias != nil {
					out[r] += ins.Bias[r]
				}
			default:
				t.Fatalf("simulate: op %v", ins.Op)
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

// TestLowerCKKSFeature lowers the tiny and mixed graphs and the MLPs in
// feature packing: dense matrices instead of diagonals, block size 1, a
// sample per slot, the same depth as the slot packing, positive bounds, and
// a float64 simulation matching the interpreter.
func TestLowerCKKSFeature(t *testing.T) {
	type tc struct {
		name string
		g    *ir.Graph
		opts LowerOptions
		xs   map[string][][]float64
	}
	var cases []tc
	for _, c := range []struct {
		name  string
		build func() *ir.Graph
	}{{"tiny", lcTiny}, {"mixed", lcMixed}, {"pooled", lcPooled}} {
		g := c.build()
		if err := InferShapes(g); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{c.name, g, LowerOptions{}, lcRandomSamples(g, 5, 1)})
	}
	for _, name := range []string{"cancer-mlp", "digits-mlp"} {
		g, inputs := lcCanonical(t, name)
		calib := zoo.Rows(inputs, 0, min(32, inputs.Shape[0]))
		lcApproximate(t, g, calib)
		xs := map[string][][]float64{}
		for s := range 8 {
			xs[g.Inputs[0].Name] = append(xs[g.Inputs[0].Name], zoo.Rows(inputs, inputs.Shape[0]-1-s, inputs.Shape[0]-s).Float)
		}
		cases = append(cases, tc{name, g, LowerOptions{Calib: calib}, xs})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slot, err := LowerCKKS(c.g, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			opts := c.opts
			opts.Packing = ckksir.PackFeature
			p, err := LowerCKKS(c.g, opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Packing != ckksir.PackFeature || p.BlockSize != 1 || p.Batch != p.Params.Slots() {
				t.Fatalf("packing %s, block %d, batch %d", p.Packing, p.BlockSize, p.Batch)
			}
			// Slot packing may spend a level on a cut (lowerCutBefore);
			// feature packing never cuts.
			if p.Depth() > slot.Depth() || p.Depth() < slot.Depth()-1 {
				t.Errorf("depth %d, slot packing %d", p.Depth(), slot.Depth())
			}
			for _, ins := range p.Instrs {
				if ins.Op == ckksir.OpLinear && (ins.Matrices != nil || len(ins.Dense) != len(ins.In)) {
					t.Errorf("linear %s: %d matrices, %d dense", ins.Layer, len(ins.Matrices), len(ins.Dense))
				}
			}
			for i, v := range p.Values {
				if !(v.Bound > 0) || v.Bound > 0.05 {
					t.Errorf("v%d: bound %g", i, v.Bound)
				}
			}
			if c.name == "tiny" {
				checkGolden(t, "lower_ckks_feature_tiny", lcDump(t, p))
			}
			n := len(c.xs[c.g.Inputs[0].Name])
			worst := 0.0
			for b := range n {
				feeds := map[string]*ir.Tensor{}
				in := map[string][]float64{}
				for _, x := range c.g.Inputs {
					feeds[x.Name] = &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Float: c.xs[x.Name][b]}
					in[x.Name] = c.xs[x.Name][b]
				}
				want, err := plain.Run(c.g, feeds, nil)
				if err != nil {
					t.Fatal(err)
				}
				got := lcSimulateFeature(t, p, in)
				for _, o := range c.g.Outputs {
					w := want[o.Name].Float
					for i := range w {
						d := math.Abs(got[o.Name][i]-w[i]) / max(1, math.Abs(w[i]))
						if !(d <= 1e-9) {
							t.Fatalf("sample %d output %q[%d]: simulated %g, interpreter %g", b, o.Name, i, got[o.Name][i], w[i])
						}
						worst = max(worst, d)
					}
				}
			}
			t.Logf("%s: %s, depth %d, %d scalar products; simulation within %.1e", c.name, p.Params, p.Depth(), p.ScalarProducts(), worst)
		})
	}
}

// TestLowerCKKSWholeTensor lowers a graph without a batch axis, x[3,4] ->
// Gemm -> Poly(relu) -> y[3,5], with WholeTensor: the layouts are the whole
// shapes, calibration samples are stacked on a new leading axis, and a
// plaintext simulation of the program matches the interpreter. Without
// WholeTensor the leading axis of 3 is refused.
func TestLowerCKKSWholeTensor(t *testing.T) {
	b := newBuilder("whole", 13)
	x := b.input("x", 3, 4)
	h := b.op("Gemm", nil, x, b.konst("w", ir.Shape{4, 5}), b.konst("c", ir.Shape{5}))
	g := b.output(b.op("Poly", lcPolyAttrs("Relu", lcRelu, 6, 7), h))
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	if _, err := LowerCKKS(g, LowerOptions{}); err == nil || !strings.Contains(err.Error(), "leading batch axis of 1") {
		t.Fatalf("batch lowering of a [3, 4] input: err = %v, want a leading-axis error", err)
	}
	samples := lcRandomSamples(g, 4, 11)
	calib := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{4, 3, 4}}
	for _, s := range samples["x"] {
		calib.Float = append(calib.Float, s...)
	}
	for _, c := range []*ir.Tensor{nil, calib} {
		p, err := LowerCKKS(g, LowerOptions{WholeTensor: true, Calib: c})
		if err != nil {
			t.Fatal(err)
		}
		in, out := p.Values[p.Inputs[0].Value].Layout, p.Values[p.Outputs[0].Value].Layout
		if !in.Shape.Equal(ir.Shape{3, 4}) || !out.Shape.Equal(ir.Shape{3, 5}) || p.BlockSize != 16 {
			t.Fatalf("input layout %v, output %v, block %d; want [3 4], [3 5], 16\n%s", in.Shape, out.Shape, p.BlockSize, lcDump(t, p))
		}
		if len(p.Instrs) != 2 || p.Instrs[0].Op != ckksir.OpLinear || p.Instrs[1].Op != ckksir.OpPoly {
			t.Fatalf("instructions:\n%s", lcDump(t, p))
		}
		lcCheckSimulation(t, g, p, samples, 1e-9)
	}
	bad := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{3, 4}, Float: make([]float64, 12)}
	if _, err := LowerCKKS(g, LowerOptions{WholeTensor: true, Calib: bad}); err == nil {
		t.Error("calibration samples without a sample axis accepted")
	}
	e := newBuilder("empty", 13)
	ex := e.input("x", 0, 4)
	eg := e.output(e.op("Neg", nil, ex))
	if err := InferShapes(eg); err != nil {
		t.Fatal(err)
	}
	var ue *ir.UnsupportedError
	if _, err := LowerCKKS(eg, LowerOptions{WholeTensor: true}); !errors.As(err, &ue) {
		t.Errorf("empty tensor: err = %v, want an *ir.UnsupportedError", err)
	}
}

// TestLowerWidenedRows lowers a transformer's MLP block as a split stage
// sees it (a residual stream and its normalization encrypted fresh, 8
// tokens of width 4 widened to 16 and back): the normalized input's rows
// are spaced 16 apart, the narrowing map's output rows start where its
// input's do, so both dense maps have about 4+16 diagonals instead of one
// band per token (about 16·8); and the program computes the graph.
func TestLowerWidenedRows(t *testing.T) {
	b := newBuilder("mlp", 13)
	x := b.input("x", 1, 8, 4)
	res := b.input("res", 1, 8, 4)
	h := b.op("Dense", nil, x, b.konst("w1", ir.Shape{4, 16}), b.konst("b1", ir.Shape{16}))
	h = b.op("Poly", lcPolyAttrs("Tanh", math.Tanh, 4, 7), h)
	y := b.op("Add", nil, res, b.op("Dense", nil, h, b.konst("w2", ir.Shape{16, 4}), b.konst("b2", ir.Shape{4})))
	g := b.output(y)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	p, err := LowerCKKS(g, LowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := p.Values[p.Inputs[0].Value].Layout
	if in.Contiguous() || in.Slot(4) != 16 || in.Slot(31) != 7*16+3 {
		t.Errorf("input x laid out at %v, want rows 16 slots apart", in)
	}
	if l := p.Values[p.Inputs[1].Value].Layout; !l.Contiguous() {
		t.Errorf("input res laid out at %v, want contiguous (no dense layer reads it)", l)
	}
	for _, ins := range p.Instrs {
		if ins.Op != ckksir.OpLinear {
			continue
		}
		if n := len(ins.Matrices[0].Diagonals); n > 4+16-1 {
			t.Errorf("%s: %d diagonals reading v%d, want at most 19\n%s", ins.Layer, n, ins.In[0], lcDump(t, p))
		}
	}
	lcCheckSimulation(t, g, p, lcRandomSamples(g, 5, 3), 1e-9)
}
