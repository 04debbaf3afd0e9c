package passes

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// Transformer operators under encryption.
//
// DecomposeTransformer rewrites the operators of transformers that CKKS has
// no instruction for into what LowerCKKS lowers (affine maps, Poly, and
// products of two encrypted values of one shape), so that the approximated
// graph a plan records is, node for node, what the encrypted program
// computes, and its plaintext run is the plan's reference:
//
//   - MatMul of two encrypted operands A [..., M, K] and B [..., K, N]
//     (attention's Q·Kᵀ and scores·V) becomes a product of two copies of
//     its operands laid out side by side, summed: skewed where A's rows
//     pair with an axis of B of their length (transformer_skew.go), else
//     the replication ReduceSum_k(Expand(A[..., M, K, 1]) ·
//     Expand(B[..., 1, K, N])). The copies are affine (Gather or Expand),
//     so LowerCKKS fuses each into the linear map computing its operand
//     (the Q, K and V projections, the softmax normalization), one OpMul
//     multiplies all the products at once in the slots, and the sum fuses
//     into the next linear map (the 1/√d scale, the softmax shift): one
//     level for the copies, one for the product, and the rotations of two
//     diagonal-method linear maps.
//     A product of more than TransformerOptions.MaxSlots elements (one
//     ciphertext) is computed in parts: both operands are sliced along the
//     outermost axis (heads, then A's rows) whose parts fit, each part is
//     one replicated product, and the sums are concatenated (Slice and
//     Concat are affine and fuse into the same linear maps).
//   - Softmax over the last axis becomes exp(x - c) / Σ exp(x - c). The
//     shift c is a constant per row (per head and query position), set by
//     calibration: the centre of the row's calibrated log-sum-exp range (the
//     row's calibrated maximum plus at most log of the row length), so that
//     the row sums of every calibration sample lie in [e^-δ, e^δ], δ the
//     half-width of that range, around 1. Exp is a polynomial on its
//     calibrated interval (ApproximateActivations chooses its degree);
//     the sum is broadcast over the row by one linear map, and its inverse
//     is computed by Newton's iteration y ← y·(2 - s·y) from a Chebyshev
//     starting polynomial on the calibrated range of the sums (widened,
//     see TransformerOptions.Widen).
//     A causal mask, a constant added to the softmax's input (or selected
//     by Where) whose entries are 0 or at most TransformerMaskBelow (GPT
//     exports use -1e4, or -inf), is removed from the input and becomes a
//     0/1 plaintext multiplier after the Exp: masked entries are exactly 0,
//     as with a -inf mask, and drop out of the row sums, and the Exp's
//     calibrated interval no longer stretches to the mask's constant.
//   - LayerNormalization over the last axis becomes c·r·γ + β with
//     c = (x - mean(x))·m^-1/2 and r = (mean(c²) + ε/m)^-1/2: the mean and
//     the variance are linear maps (sums over the row broadcast back over
//     it), the variance of each row is normalized by a calibrated constant m
//     per row (the geometric centre of its calibrated range) so that every
//     row's variance lies around 1, and the inverse square root is
//     Newton's iteration y ← y·(3/2 - v·y²/2) from a Chebyshev starting
//     polynomial on the calibrated range of the normalized variances.
//
// For each inverse, the starting degree and the number of iterations are
// the pair of least depth (then fewest products) whose relative error is
// within TransformerOptions.RelTol over the widened interval, as measured
// on a fine logarithmic grid by the same float64 arithmetic the reference
// interpreter runs; the starting polynomials are Poly nodes (the
// approximation pass leaves them as they are) and the iterations are Mul
// and Add nodes, so the encrypted program's error bounds (error_bound.go)
// and costs (package cost) cover them as products and polynomials.

// TransformerOptions tune DecomposeTransformer. The zero value selects every
// default.
type TransformerOptions struct {
	// Widen widens the calibrated interval [lo, hi] of the softmax sums
	// and normalized variances to [lo/Widen, hi·Widen] for the starting
	// polynomials of the inverses. 0 means 2.
	Widen float64
	// RelTol is the largest relative error of the inverses (1/s and v^-1/2)
	// over the widened interval after the Newton iterations. 0 means 2^-12.
	RelTol float64
	// MaxIterations caps the Newton iterations. 0 means 6.
	MaxIterations int
	// MaxSlots bounds the elements of one replicated product (one
	// ciphertext's slots): a product with more is computed in parts, split
	// along its outermost axis that allows it (attention heads, then query
	// rows). 0 means 1<<(DefaultMaxLogN-1), the slots of the largest ring.
	MaxSlots int
	// Replicated lays every product out replicated ([..., M, K, N]) rather
	// than skewed where the rows pair with an axis of their length (see
	// transformer_skew.go); for comparisons.
	Replicated bool
	// KeepLayerNorm leaves LayerNormalization nodes whole, for a split
	// whose data owner computes them (SplitPolicy.ClientAided
	// ClientAidedLayerNorm): no encrypted stage may then hold one.
	KeepLayerNorm bool
}

func (o TransformerOptions) withDefaults() TransformerOptions {
	if o.Widen <= 1 {
		o.Widen = 2
	}
	if o.RelTol <= 0 {
		o.RelTol = math.Ldexp(1, -12)
	}
	if o.MaxIterations <= 0 {
		o.MaxIterations = 6
	}
	if o.MaxSlots <= 0 {
		o.MaxSlots = 1 << (DefaultMaxLogN - 1)
	}
	return o
}

// TransformerInverse records one inverse computed by Newton's iteration.
type TransformerInverse struct {
	// Func is Reciprocal or InvSqrt.
	Func string
	// A, B is the interval of the starting polynomial.
	A, B float64
	// Degree is the starting polynomial's Chebyshev degree, Iterations the
	// Newton iterations after it.
	Degree, Iterations int
	// StartErr is the starting polynomial's largest relative error on
	// [A, B], RelErr that of the result after the iterations.
	StartErr, RelErr float64
	// Depth is the levels the polynomial and the iterations take.
	Depth int
}

// TransformerEntry records how one softmax or layer normalization was
// decomposed.
type TransformerEntry struct {
	// Node is the decomposed node's name; Op is Softmax or
	// LayerNormalization.
	Node, Op string
	// Rows is the number of rows normalized (per sample), Length their
	// length.
	Rows, Length int
	// ShiftMin and ShiftMax bound the per-row constants: the softmax shifts
	// c (exp((x - c)/2^Rounds)), or the layer normalization's variance
	// normalizers m.
	ShiftMin, ShiftMax float64
	// Rounds is the softmax's squaring rounds.
	Rounds int
	// Inverses are the normalizations' inverses, in order.
	Inverses []TransformerInverse
	// Depth is the levels from the values the decomposition reads to its
	// output, without the Exp polynomial (chosen later) and the linear maps
	// computing its input.
	Depth int
}

// TransformerReport lists what DecomposeTransformer did.
type TransformerReport struct {
	// Products counts the MatMuls of two encrypted operands decomposed,
	// Skewed those laid out skewed (transformer_skew.go); Parts counts the
	// slot products they became (more when one did not fit
	// TransformerOptions.MaxSlots).
	Products, Skewed, Parts int
	// Masks counts the causal masks turned into multipliers.
	Masks   int
	Entries []TransformerEntry
}

// WriteTable writes the report as an aligned table, one inverse a line,
// after a line counting the products; nothing when nothing was
// decomposed.
func (r *TransformerReport) WriteTable(w io.Writer) error {
	if r == nil || r.Products == 0 && len(r.Entries) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "%d products of two encrypted matrices (%d skewed), as %d slot products\n", r.Products, r.Skewed, r.Parts); err != nil {
		return err
	}
	if r.Masks > 0 {
		if _, err := fmt.Fprintf(w, "%d causal masks as 0/1 multipliers after exp\n", r.Masks); err != nil {
			return err
		}
	}
	if len(r.Entries) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "node\top\trows\tshift/normalizer\trounds\tdepth\tinverse\ton\tstart degree\tnewton\tstart rel err\trel err\t")
	for _, e := range r.Entries {
		for i, inv := range e.Inverses {
			head := "\t\t\t\t\t\t"
			if i == 0 {
				head = fmt.Sprintf("%s\t%s\t%dx%d\t[%.4g, %.4g]\t%d\t%d\t", e.Node, e.Op, e.Rows, e.Length, e.ShiftMin, e.ShiftMax, e.Rounds, e.Depth)
			}
			fmt.Fprintf(tw, "%s%s\t[%.4g, %.4g]\t%d\t%d\t%.3g\t%.3g\t\n", head, inv.Func, inv.A, inv.B, inv.Degree, inv.Iterations, inv.StartErr, inv.RelErr)
		}
	}
	return tw.Flush()
}

func (r *TransformerReport) String() string {
	var b strings.Builder
	r.WriteTable(&b)
	return b.String()
}

// DecomposeTransformer rewrites encrypted matrix products, Softmax and
// LayerNormalization (over the last axis) as described above, calibrating
// the per-row constants and the inverses' intervals on calib (samples
// stacked along the leading axis; g must have one input). Run it before
// ApproximateActivations, which then approximates the Exp nodes it leaves.
// A Softmax or LayerNormalization over another axis, or a LayerNormalization
// whose mean or inverse standard deviation outputs are read, is an
// *ir.UnsupportedError.
func DecomposeTransformer(g *ir.Graph, calib *ir.Tensor, opts TransformerOptions) (*TransformerReport, error) {
	opts = opts.withDefaults()
	rep := &TransformerReport{}
	if err := g.Sort(); err != nil {
		return nil, err
	}
	nm := newNamer(g)
	repl := map[*ir.Node][]*ir.Node{}
	var norms []*ir.Node
	for _, n := range g.Nodes {
		switch {
		case n.Op == "MatMul" && len(n.Inputs) == 2 && !n.Inputs[0].IsConst() && !n.Inputs[1].IsConst():
			nodes, err := tfMatMul(g, nm, n, opts.MaxSlots, opts.Replicated)
			if err != nil {
				return nil, err
			}
			repl[n] = nodes
			rep.Products++
			for _, x := range nodes {
				if x.Op == "Mul" {
					rep.Parts++
				}
			}
			if nodes[len(nodes)-1].Op == "Gather" {
				rep.Skewed++
			}
		case n.Op == "Softmax" || (n.Op == "LayerNormalization" && !opts.KeepLayerNorm):
			if err := tfCheckNorm(g, n); err != nil {
				return nil, err
			}
			if !n.Inputs[0].IsConst() {
				norms = append(norms, n)
			}
		}
	}
	spliceReplacements(g, repl)
	if len(norms) == 0 {
		return rep, g.Sort()
	}
	masks := map[*ir.Node]*tfMask{}
	for _, n := range norms {
		if n.Op == "Softmax" {
			if m := tfFindMask(g, n); m != nil {
				masks[n] = m
			}
		}
	}
	stats, err := tfCalibrate(g, calib, norms, masks)
	if err != nil {
		return nil, err
	}
	repl = map[*ir.Node][]*ir.Node{}
	for _, n := range norms {
		var nodes []*ir.Node
		var e TransformerEntry
		var err error
		if n.Op == "Softmax" {
			m := masks[n]
			nodes, e, err = tfSoftmax(g, nm, n, stats[n], m, opts)
			if m != nil {
				repl[m.node] = nil // the masking node goes
				rep.Masks++
			}
		} else {
			nodes, e, err = tfLayerNorm(g, nm, n, stats[n], opts)
		}
		if err != nil {
			return nil, err
		}
		repl[n] = nodes
		rep.Entries = append(rep.Entries, e)
	}
	spliceReplacements(g, repl)
	return rep, g.Sort()
}

// spliceReplacements puts each node's replacement nodes where it stands
// in g.Nodes.
func spliceReplacements(g *ir.Graph, repl map[*ir.Node][]*ir.Node) {
	if len(repl) == 0 {
		return
	}
	var nodes []*ir.Node
	for _, n := range g.Nodes {
		if r, ok := repl[n]; ok {
			nodes = append(nodes, r...)
			continue
		}
		nodes = append(nodes, n)
	}
	g.Nodes = nodes
}

// tfCheckNorm checks that a Softmax or LayerNormalization normalizes over
// its input's last axis, with a known shape, and (LayerNormalization) that
// only its first output is read.
func tfCheckNorm(g *ir.Graph, n *ir.Node) error {
	unsupported := func(reason string) error {
		return &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: g.Opset, Reason: reason}
	}
	if len(n.Inputs) == 0 || n.Inputs[0] == nil || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return unsupported("missing input or output")
	}
	x := n.Inputs[0]
	rank := len(x.Shape)
	if rank == 0 || !x.Shape.Known() {
		return unsupported(fmt.Sprintf("input shape %v; encrypted normalization needs a static shape of rank >= 1", x.Shape))
	}
	def := int64(-1)
	if n.Op == "Softmax" && g.Opset < 13 {
		def = 1
	}
	axis := n.Attrs.Int("axis", def)
	if axis < 0 {
		axis += int64(rank)
	}
	if axis != int64(rank-1) {
		return unsupported(fmt.Sprintf("normalization over axis %d of a rank-%d input; under encryption only the last axis is supported", n.Attrs.Int("axis", def), rank))
	}
	if n.Op == "LayerNormalization" {
		uses := g.Consumers()
		for _, o := range n.Outputs[1:] {
			if o != nil && (len(uses[o]) > 0 || g.IsOutput(o)) {
				return unsupported("the mean and inverse standard deviation outputs are not computed under encryption")
			}
		}
		if len(n.Inputs) < 2 || !n.Inputs[1].IsConst() || len(n.Inputs) > 2 && n.Inputs[2] != nil && !n.Inputs[2].IsConst() {
			return unsupported("scale and bias must be constants under encryption")
		}
	}
	return nil
}

// tfMaxRounds is the largest number of squaring rounds of a softmax.
const tfMaxRounds = 4

// tfStats are the calibrated per-row ranges of one normalization's input:
// lo[k][r] and hi[k][r] bound, over the calibration samples, the
// log-sum-exp of row r of x/2^k (Softmax, k = 0..tfMaxRounds) or the
// variance plus epsilon of row r (LayerNormalization, k = 0 only).
type tfStats struct {
	lo, hi [][]float64
}

// tfRowStats computes, for each row of length k of x, the statistics of
// the normalization n (see tfStats); a softmax's entries where keep (per
// element of x, nil: all) is false are masked, left out.
func tfRowStats(n *ir.Node, x []float64, k int, keep []bool) [][]float64 {
	rows := len(x) / k
	if n.Op != "Softmax" {
		out := make([]float64, rows)
		eps := n.Attrs.Float("epsilon", 1e-5)
		for r := range out {
			row := x[r*k : (r+1)*k]
			mean := 0.0
			for _, v := range row {
				mean += v
			}
			mean /= float64(k)
			vr := 0.0
			for _, v := range row {
				vr += (v - mean) * (v - mean)
			}
			out[r] = vr/float64(k) + eps
		}
		return [][]float64{out}
	}
	out := make([][]float64, tfMaxRounds+1)
	for j := range out {
		out[j] = make([]float64, rows)
		scale := math.Ldexp(1, -j)
		for r := range out[j] {
			row := x[r*k : (r+1)*k]
			kept := func(i int) bool { return keep == nil || keep[r*k+i] }
			mx := math.Inf(-1)
			for i, v := range row {
				if kept(i) {
					mx = max(mx, v*scale)
				}
			}
			s := 0.0
			for i, v := range row {
				if kept(i) {
					s += math.Exp(v*scale - mx)
				}
			}
			out[j][r] = mx + math.Log(s)
		}
	}
	return out
}

// tfCalibrate runs g on the calibration samples and returns the per-row
// statistic ranges of the inputs of norms, without the entries masks[n]
// masks.
func tfCalibrate(g *ir.Graph, calib *ir.Tensor, norms []*ir.Node, masks map[*ir.Node]*tfMask) (map[*ir.Node]*tfStats, error) {
	watch := map[*ir.Value][]*ir.Node{}
	stats := map[*ir.Node]*tfStats{}
	for _, n := range norms {
		x := n.Inputs[0]
		watch[x] = append(watch[x], n)
		rows := x.Shape.Size() / x.Shape[len(x.Shape)-1]
		levels := 1
		if n.Op == "Softmax" {
			levels = tfMaxRounds + 1
		}
		st := &tfStats{lo: make([][]float64, levels), hi: make([][]float64, levels)}
		for j := range st.lo {
			st.lo[j], st.hi[j] = make([]float64, rows), make([]float64, rows)
			for r := range st.lo[j] {
				st.lo[j][r], st.hi[j][r] = math.Inf(1), math.Inf(-1)
			}
		}
		stats[n] = st
	}
	var mu sync.Mutex
	observe := func(v *ir.Value, t *ir.Tensor) {
		for _, n := range watch[v] {
			k := v.Shape[len(v.Shape)-1]
			st := stats[n]
			f := t.Floats()
			if len(f) != len(st.lo[0])*k {
				continue
			}
			var keep []bool
			if m := masks[n]; m != nil {
				keep = m.full
			}
			s := tfRowStats(n, f, k, keep)
			mu.Lock()
			for j := range s {
				for r, x := range s[j] {
					if !math.IsNaN(x) {
						st.lo[j][r], st.hi[j][r] = min(st.lo[j][r], x), max(st.hi[j][r], x)
					}
				}
			}
			mu.Unlock()
		}
	}
	err := calibForEachChunk(g, calib, func(first int, feeds map[string]*ir.Tensor) error {
		for _, x := range g.Inputs {
			observe(x, feeds[x.Name])
		}
		_, err := plain.Run(g, feeds, &plain.Options{Observe: func(n *ir.Node, outs []*ir.Tensor) {
			for i, o := range n.Outputs {
				if o != nil && i < len(outs) && watch[o] != nil {
					observe(o, outs[i])
				}
			}
		}})
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, n := range norms {
		st := stats[n]
		for j := range st.lo {
			for r := range st.lo[j] {
				lo, hi := st.lo[j][r], st.hi[j][r]
				if !(lo <= hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
					return nil, fmt.Errorf("%v: calibration found no finite range for row %d", n, r)
				}
				if n.Op == "LayerNormalization" && !(lo > 0) {
					return nil, fmt.Errorf("%v: row %d has a calibrated variance of %g; its inverse square root is unbounded", n, r, lo)
				}
			}
		}
	}
	return stats, nil
}

// tfBuilder appends nodes that replace one node of a graph.
type tfBuilder struct {
	g     *ir.Graph
	nm    *namer
	base  string // the replaced node's name
	dtype ir.DType
	nodes []*ir.Node
}

func newTFBuilder(g *ir.Graph, nm *namer, n *ir.Node) *tfBuilder {
	return &tfBuilder{g: g, nm: nm, base: n.Name, dtype: floatDType(n.Outputs[0].DType)}
}

// add appends a node op(ins) named base/suffix with a fresh output of the
// given shape, or writing into out when out is not nil (the replaced node's
// output: the node then keeps the replaced node's name).
func (b *tfBuilder) add(op, suffix string, shape ir.Shape, attrs ir.Attrs, out *ir.Value, ins ...*ir.Value) *ir.Value {
	name := b.base
	if out == nil {
		name = b.nm.node(b.base + "/" + suffix)
		out = &ir.Value{Name: b.nm.value(b.base + "/" + suffix), DType: b.dtype, Shape: shape.Clone()}
	}
	if attrs == nil {
		attrs = ir.Attrs{}
	}
	n := &ir.Node{Name: name, Op: op, Inputs: ins, Outputs: []*ir.Value{out}, Attrs: attrs}
	out.Producer = n
	b.nodes = append(b.nodes, n)
	return out
}

// floats returns a float constant.
func (b *tfBuilder) floats(suffix string, shape ir.Shape, data []float64) *ir.Value {
	return newConst(b.nm.value(b.base+"/"+suffix), &ir.Tensor{DType: b.dtype, Shape: shape.Clone(), Float: data})
}

// ints returns an int64 vector constant.
func (b *tfBuilder) ints(suffix string, data ...int64) *ir.Value {
	return newConst(b.nm.value(b.base+"/"+suffix), ir.NewInt(ir.Shape{len(data)}, data))
}

// axesOp appends an op taking an axes list (Unsqueeze, ReduceSum,
// ReduceMean): as an input from opset 13 (ReduceMean: 18), else as an
// attribute.
func (b *tfBuilder) axesOp(op, suffix string, shape ir.Shape, x *ir.Value, axes []int64, attrs ir.Attrs) *ir.Value {
	since := int64(13)
	if op == "ReduceMean" {
		since = 18
	}
	if attrs == nil {
		attrs = ir.Attrs{}
	}
	if b.g.Opset >= since {
		return b.add(op, suffix, shape, attrs, nil, x, b.ints(suffix+"_axes", axes...))
	}
	attrs["axes"] = ir.Attr{Kind: ir.AttrInts, Ints: axes}
	return b.add(op, suffix, shape, attrs, nil, x)
}

// expand broadcasts x to shape.
func (b *tfBuilder) expand(suffix string, x *ir.Value, shape ir.Shape) *ir.Value {
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	return b.add("Expand", suffix, shape, nil, nil, x, b.ints(suffix+"_shape", dims...))
}

// rowSum returns the sum (or mean) of x over its last axis times the
// per-row constants scale (nil: 1), plus the per-row constants bias (nil:
// none), broadcast back over the last axis: one linear map of x.
func (b *tfBuilder) rowSum(suffix string, x *ir.Value, mean bool, scale, bias []float64) *ir.Value {
	shape := x.Shape
	rank := len(shape)
	keep := shape.Clone()
	keep[rank-1] = 1
	op := "ReduceSum"
	if mean {
		op = "ReduceMean"
	}
	s := b.axesOp(op, suffix, keep, x, []int64{int64(rank - 1)}, ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 1}})
	if scale != nil {
		s = b.add("Mul", suffix+"_scaled", keep, nil, nil, s, b.floats(suffix+"_scale", keep, scale))
	}
	if bias != nil {
		s = b.add("Add", suffix+"_shifted", keep, nil, nil, s, b.floats(suffix+"_bias", keep, bias))
	}
	return b.expand(suffix+"_broadcast", s, shape)
}

// poly appends a Poly node.
func (b *tfBuilder) poly(suffix, fn string, x *ir.Value, lo, hi float64, coeffs []float64, maxErr float64) *ir.Value {
	return b.add("Poly", suffix, x.Shape, ir.Attrs{
		"func":    {Kind: ir.AttrString, String: fn},
		"a":       {Kind: ir.AttrFloat, Float: lo},
		"b":       {Kind: ir.AttrFloat, Float: hi},
		"coeffs":  {Kind: ir.AttrFloats, Floats: coeffs},
		"max_err": {Kind: ir.AttrFloat, Float: maxErr},
	}, nil, x)
}

// tfMatMul decomposes a MatMul of two encrypted operands into replications,
// products and sums (see DecomposeTransformer), skewed unless replicated
// (transformer_skew.go), in parts when the product has more than maxSlots
// elements.
func tfMatMul(g *ir.Graph, nm *namer, n *ir.Node, maxSlots int, replicated bool) ([]*ir.Node, error) {
	a, c, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	ra, rc, ry := len(a.Shape), len(c.Shape), len(y.Shape)
	if ra < 2 || rc < 2 || !a.Shape.Known() || !c.Shape.Known() || !y.Shape.Known() || ry < 2 {
		return nil, &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: g.Opset,
			Reason: fmt.Sprintf("product of encrypted operands of shapes %v and %v; under encryption both need static shapes of rank >= 2", a.Shape, c.Shape)}
	}
	k := a.Shape[ra-1]
	full := append(y.Shape[:ry-1:ry-1], k, y.Shape[ry-1]) // [..., M, K, N]
	b := newTFBuilder(g, nm, n)
	if skew := tfChooseSkew(a, c, y); skew != tfSkewNone && !replicated && b.tfSkewedProduct(skew, a, c, y, maxSlots) {
		return b.takeOver(n), nil
	}
	ax, size, err := tfProductSplit(full, maxSlots)
	if err != nil {
		return nil, &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: g.Opset, Reason: err.Error()}
	}
	if ax < 0 {
		b.product("", a, c, y.Shape)
	} else {
		// Operand axes, right-aligned with y's; the rows of A (axis ry-2)
		// slice A only, and an operand broadcast along ax is not sliced.
		axA, axC := ax-(ry-ra), ax-(ry-rc)
		if ax == ry-2 {
			axC = -1
		}
		var sums []*ir.Value
		for lo := 0; lo < y.Shape[ax]; lo += size {
			hi := min(lo+size, y.Shape[ax])
			part := fmt.Sprintf("part%d_", lo/size)
			ap, cp := a, c
			if axA >= 0 && a.Shape[axA] == y.Shape[ax] {
				ap = b.slice(part+"lhs", a, axA, lo, hi)
			}
			if axC >= 0 && c.Shape[axC] == y.Shape[ax] {
				cp = b.slice(part+"rhs", c, axC, lo, hi)
			}
			ys := y.Shape.Clone()
			ys[ax] = hi - lo
			sums = append(sums, b.product(part, ap, cp, ys))
		}
		b.add("Concat", "concat", y.Shape, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: int64(ax)}}, nil, sums...)
	}
	return b.takeOver(n), nil
}

// takeOver makes the last node appended write n's output (and take n's
// name) and returns the nodes.
func (b *tfBuilder) takeOver(n *ir.Node) []*ir.Node {
	y := n.Outputs[0]
	last := b.nodes[len(b.nodes)-1]
	last.Name, last.Outputs[0] = n.Name, y
	y.Producer = last
	return b.nodes
}

// tfProductSplit chooses how a replicated product of shape full ([..., M,
// K, N]) fits maxSlots: ax -1 when it fits whole, else the outermost axis
// before K and the part size along it (parts of nearly equal size).
func tfProductSplit(full ir.Shape, maxSlots int) (ax, size int, err error) {
	total := full.Size()
	if total <= maxSlots {
		return -1, 0, nil
	}
	for ax := 0; ax < len(full)-2; ax++ {
		d := full[ax]
		per := total / d
		if d < 2 || per > maxSlots {
			continue
		}
		return ax, tfPartSize(d, maxSlots/per), nil
	}
	return -1, 0, fmt.Errorf("the replicated product %v has %d elements, more than the %d slots of one ciphertext, and no axis before the sum splits it into parts that fit", full, total, maxSlots)
}

// tfPartSize is the size of the parts that split an axis of length d into
// as few parts of at most fit elements as possible, of nearly equal sizes.
func tfPartSize(d, fit int) int {
	parts := (d + fit - 1) / fit
	return (d + parts - 1) / parts
}

// product appends one replicated product: A [..., M, K] and B [..., K, N]
// replicated to [..., M, K, N], multiplied slotwise and summed over K into
// a value of shape y.
func (b *tfBuilder) product(prefix string, a, c *ir.Value, y ir.Shape) *ir.Value {
	ra, rc, ry := len(a.Shape), len(c.Shape), len(y)
	full := append(y[:ry-1:ry-1], a.Shape[ra-1], y[ry-1])
	au := b.axesOp("Unsqueeze", prefix+"lhs_unsqueezed", append(a.Shape.Clone(), 1), a, []int64{int64(ra)}, nil)
	ae := b.expand(prefix+"lhs_replicated", au, full)
	cs := append(c.Shape[:rc-2:rc-2], 1, c.Shape[rc-2], c.Shape[rc-1])
	cu := b.axesOp("Unsqueeze", prefix+"rhs_unsqueezed", cs, c, []int64{int64(rc - 2)}, nil)
	ce := b.expand(prefix+"rhs_replicated", cu, full)
	p := b.add("Mul", prefix+"products", full, nil, nil, ae, ce)
	return b.axesOp("ReduceSum", prefix+"sum", y, p, []int64{int64(ry - 1)}, ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 0}})
}

// slice appends x[lo:hi] along axis (Slice: inputs from opset 10, else
// attributes).
func (b *tfBuilder) slice(suffix string, x *ir.Value, axis, lo, hi int) *ir.Value {
	shape := x.Shape.Clone()
	shape[axis] = hi - lo
	if b.g.Opset >= 10 {
		return b.add("Slice", suffix, shape, nil, nil, x, b.ints(suffix+"_starts", int64(lo)),
			b.ints(suffix+"_ends", int64(hi)), b.ints(suffix+"_axes", int64(axis)))
	}
	return b.add("Slice", suffix, shape, ir.Attrs{
		"starts": {Kind: ir.AttrInts, Ints: []int64{int64(lo)}},
		"ends":   {Kind: ir.AttrInts, Ints: []int64{int64(hi)}},
		"axes":   {Kind: ir.AttrInts, Ints: []int64{int64(axis)}},
	}, nil, x)
}

// TransformerMaskBelow is the largest constant DecomposeTransformer takes
// for a masked entry of a softmax's additive mask: exp of anything
// plausible minus 1000 underflows to exactly 0 in float64, so dropping the
// entry is the softmax's own arithmetic.
const TransformerMaskBelow = -1e3

// tfMask is a causal (or any constant) mask found before a softmax.
type tfMask struct {
	// node adds the mask (Add) or selects it (Where); x is its
	// non-constant input, the unmasked scores.
	node *ir.Node
	x    *ir.Value
	// keep is 1 for the entries kept, 0 for those masked, of shape shape
	// (broadcasting to x's); full is keep broadcast to x's shape, per
	// sample.
	keep  []float64
	shape ir.Shape
	full  []bool
}

// tfFindMask returns the mask the softmax n's input is computed with: an
// Add of a constant whose entries are 0 or at most TransformerMaskBelow, or
// a Where selecting between the scores and such a constant under a
// constant condition; nil when there is none (or when the masked value has
// other readers, or a row is masked whole).
func tfFindMask(g *ir.Graph, n *ir.Node) *tfMask {
	in := n.Inputs[0]
	p := in.Producer
	if p == nil || g.IsOutput(in) || len(g.Consumers()[in]) != 1 || len(p.Outputs) != 1 {
		return nil
	}
	masked := func(v float64) bool { return v <= TransformerMaskBelow }
	m := &tfMask{node: p}
	var keep []bool
	switch {
	case p.Op == "Add" && len(p.Inputs) == 2:
		x, k := p.Inputs[0], p.Inputs[1]
		if x.IsConst() {
			x, k = k, x
		}
		if x.IsConst() || !k.IsConst() || k.Const == nil || !k.Const.DType.IsFloat() {
			return nil
		}
		m.x, m.shape = x, k.Shape
		for _, v := range k.Const.Float {
			if v != 0 && !masked(v) {
				return nil
			}
			keep = append(keep, v == 0)
		}
	case p.Op == "Where" && len(p.Inputs) == 3:
		cond, t, f := p.Inputs[0], p.Inputs[1], p.Inputs[2]
		if !cond.IsConst() || cond.Const == nil || t.IsConst() == f.IsConst() {
			return nil
		}
		x, fill, kept := t, f, true
		if x.IsConst() {
			x, fill, kept = f, t, false
		}
		if fill.Const == nil || !fill.Const.DType.IsFloat() {
			return nil
		}
		for _, v := range fill.Const.Float {
			if !masked(v) {
				return nil
			}
		}
		if cs := cond.Shape; !tfBroadcasts(fill.Shape, cs) {
			return nil
		}
		m.x, m.shape = x, cond.Shape
		for _, c := range cond.Const.Ints() {
			keep = append(keep, (c != 0) == kept)
		}
	default:
		return nil
	}
	if !m.x.Shape.Equal(in.Shape) || !tfBroadcasts(m.shape, in.Shape) {
		return nil
	}
	m.full = tfBroadcastTo(keep, m.shape, in.Shape)
	k := in.Shape[len(in.Shape)-1]
	any := false
	for r := 0; r < len(m.full); r += k {
		kept := 0
		for _, v := range m.full[r : r+k] {
			if v {
				kept++
			}
		}
		if kept == 0 {
			return nil
		}
		any = any || kept < k
	}
	if !any {
		return nil
	}
	m.keep = make([]float64, len(keep))
	for i, v := range keep {
		if v {
			m.keep[i] = 1
		}
	}
	return m
}

// tfBroadcasts reports whether shape from broadcasts to shape to
// (numpy rules, right-aligned, to unchanged).
func tfBroadcasts(from, to ir.Shape) bool {
	if len(from) > len(to) {
		return false
	}
	off := len(to) - len(from)
	for i, d := range from {
		if d != 1 && d != to[off+i] {
			return false
		}
	}
	return true
}

// tfBroadcastTo broadcasts data of shape from to shape to (tfBroadcasts).
func tfBroadcastTo(data []bool, from, to ir.Shape) []bool {
	out := make([]bool, to.Size())
	off := len(to) - len(from)
	idx := make([]int, len(to))
	for i := range out {
		src, stride := 0, 1
		for ax := len(from) - 1; ax >= 0; ax-- {
			if from[ax] != 1 {
				src += idx[off+ax] * stride
			}
			stride *= from[ax]
		}
		out[i] = data[src]
		for ax := len(to) - 1; ax >= 0; ax-- {
			idx[ax]++
			if idx[ax] < to[ax] {
				break
			}
			idx[ax] = 0
		}
	}
	return out
}

// tfInverse is one inverse function computed by Newton's iteration.
type tfInverse struct {
	name string
	f    func(x float64) float64
	// step is one Newton iteration y -> y' for the argument x, computed as
	// the graph computes it.
	step func(x, y float64) float64
	// stepDepth is the levels one iteration takes.
	stepDepth, stepProducts int
}

var (
	tfReciprocal = tfInverse{name: "Reciprocal", f: func(x float64) float64 { return 1 / x },
		step:      func(x, y float64) float64 { return y * ((-x)*y + 2) },
		stepDepth: 2, stepProducts: 2}
	tfInvSqrt = tfInverse{name: "InvSqrt", f: func(x float64) float64 { return 1 / math.Sqrt(x) },
		step:      func(x, y float64) float64 { return y * (y*y*(-0.5*x) + 1.5) },
		stepDepth: 3, stepProducts: 3}
)

// tfNewtonPlan is a chosen start polynomial and iteration count.
type tfNewtonPlan struct {
	lo, hi           float64
	degree, iters    int
	coeffs           []float64
	startErr, relErr float64 // largest relative errors on the grid
	startAbs         float64 // largest absolute error of the start
	depth            int
}

// tfNewtonGrid is the number of points, evenly spaced in log x, on which the
// relative errors of the inverses are measured.
const tfNewtonGrid = 4096

// tfPlanNewton picks the starting Chebyshev polynomial (degree 2^j - 1, or
// 1) and the iteration count of inv on [lo, hi] of least depth, then fewest
// products, whose relative error after the iterations is within opts.RelTol
// on the grid; every iterate must stay positive. When none meets it, the
// most precise of the deepest is returned with an error.
func tfPlanNewton(inv tfInverse, lo, hi float64, opts TransformerOptions) (*tfNewtonPlan, error) {
	xs := make([]float64, tfNewtonGrid)
	for i := range xs {
		xs[i] = lo * math.Pow(hi/lo, float64(i)/float64(tfNewtonGrid-1))
	}
	var best *tfNewtonPlan
	better := func(p *tfNewtonPlan) bool {
		if best == nil {
			return true
		}
		okP, okB := p.relErr <= opts.RelTol, best.relErr <= opts.RelTol
		if okP != okB {
			return okP
		}
		if !okP {
			return p.relErr < best.relErr
		}
		if p.depth != best.depth {
			return p.depth < best.depth
		}
		return p.degree+p.iters*inv.stepProducts < best.degree+best.iters*inv.stepProducts
	}
	for _, deg := range []int{1, 3, 7, 15, 31, 63} {
		coeffs := approxChebInterp(func(x []float64) []float64 {
			y := make([]float64, len(x))
			for i, v := range x {
				y[i] = inv.f(v)
			}
			return y
		}, lo, hi, deg)
		ys := make([]float64, len(xs))
		startErr, startAbs := 0.0, 0.0
		for i, x := range xs {
			ys[i] = plain.Chebyshev(coeffs, (2*x-lo-hi)/(hi-lo))
			startErr = max(startErr, math.Abs(ys[i]/inv.f(x)-1))
			startAbs = max(startAbs, math.Abs(ys[i]-inv.f(x)))
		}
		for k := 0; k <= opts.MaxIterations; k++ {
			if k > 0 {
				for i, x := range xs {
					ys[i] = inv.step(x, ys[i])
				}
			}
			rel, positive := 0.0, true
			for i, x := range xs {
				positive = positive && ys[i] > 0
				rel = max(rel, math.Abs(ys[i]/inv.f(x)-1))
			}
			if !positive || math.IsNaN(rel) {
				rel = math.Inf(1)
			}
			p := &tfNewtonPlan{lo: lo, hi: hi, degree: deg, iters: k, coeffs: coeffs, startErr: startErr,
				startAbs: startAbs, relErr: rel, depth: approxDegreeDepth(deg) + k*inv.stepDepth}
			if better(p) {
				best = p
			}
			if rel <= opts.RelTol {
				break
			}
		}
	}
	if best.relErr > opts.RelTol {
		return best, fmt.Errorf("%s on [%g, %g]: no start of degree up to 63 with %d Newton iterations reaches a relative error of %.3g (best %.3g)",
			inv.name, lo, hi, opts.MaxIterations, opts.RelTol, best.relErr)
	}
	return best, nil
}

// newton appends the start polynomial and the iterations of plan for the
// argument x (broadcast, positive) and its negated multiple negX =
// -x·negScale (a separate linear map of the same inputs, so that x feeds
// only the polynomial, which then absorbs its change of variable).
func (b *tfBuilder) newton(inv tfInverse, plan *tfNewtonPlan, x, negX *ir.Value, prefix string) *ir.Value {
	y := b.poly(prefix+strings.ToLower(inv.name)+"_start", inv.name+" start", x, plan.lo, plan.hi, plan.coeffs, plan.startAbs)
	shape := x.Shape
	for k := 1; k <= plan.iters; k++ {
		it := fmt.Sprintf("%snewton%d", prefix, k)
		var t *ir.Value
		if inv.name == "Reciprocal" {
			// y·(2 - x·y)
			t = b.add("Mul", it+"_xy", shape, nil, nil, negX, y)
			t = b.add("Add", it+"_residual", shape, nil, nil, t, b.floats(it+"_two", ir.Shape{}, []float64{2}))
		} else {
			// y·(3/2 - x·y²/2)
			sq := b.add("Mul", it+"_yy", shape, nil, nil, y, y)
			t = b.add("Mul", it+"_xyy", shape, nil, nil, sq, negX)
			t = b.add("Add", it+"_residual", shape, nil, nil, t, b.floats(it+"_three_halves", ir.Shape{}, []float64{1.5}))
		}
		y = b.add("Mul", it, shape, nil, nil, y, t)
	}
	return y
}

// tfLooseTol is the relative error of the inverses of a softmax's
// normalizations before its last: they only keep the row sums near 1 (the
// last normalization removes any constant factor of a row).
const tfLooseTol = 0.25

// tfSumSafety widens the intervals of the sums of squares of a softmax's
// squaring rounds, which are bounded in theory, for the encrypted noise.
const tfSumSafety = 1.05

// tfSoftmaxPlans chooses a softmax's squaring rounds k and the inverses of
// its k+1 normalizations: of least total depth, then fewest rounds. Round 0
// normalizes exp((x - c)/2^k), whose row sums lie in [e^-δ, e^δ] for the
// calibrated half-spread δ of the rows' log-sum-exp of x/2^k (widened by
// opts.Widen); round j > 0 normalizes the squares of a vector whose sum is
// within the previous inverse's relative error ε of 1, whose sum of squares
// lies in [(1-ε)²/length, (1+ε)²]. Only the last inverse must meet
// opts.RelTol.
func tfSoftmaxPlans(st *tfStats, length int, opts TransformerOptions) (int, []*tfNewtonPlan, int, error) {
	bestK, bestDepth := -1, 0
	var best []*tfNewtonPlan
	var firstErr error
	for k := 0; k <= tfMaxRounds; k++ {
		delta := 0.0
		for r := range st.lo[k] {
			delta = max(delta, (st.hi[k][r]-st.lo[k][r])/2)
		}
		lo, hi := math.Exp(-delta)/opts.Widen, math.Exp(delta)*opts.Widen
		var plans []*tfNewtonPlan
		depth := k // the squares
		var err error
		for j := 0; j <= k && err == nil; j++ {
			o := opts
			if j < k {
				o.RelTol = max(tfLooseTol, opts.RelTol)
			}
			if j > 0 {
				eps := plans[j-1].relErr
				lo, hi = (1-eps)*(1-eps)/float64(length)/tfSumSafety, (1+eps)*(1+eps)*tfSumSafety
			}
			var p *tfNewtonPlan
			if p, err = tfPlanNewton(tfReciprocal, lo, hi, o); err == nil {
				plans = append(plans, p)
				depth += 1 + p.depth + 1 // the sum, the inverse, the product
			}
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if bestK < 0 || depth < bestDepth {
			bestK, bestDepth, best = k, depth, plans
		}
	}
	if bestK < 0 {
		return 0, nil, 0, firstErr
	}
	return bestK, best, bestDepth, nil
}

// tfSoftmax decomposes a Softmax over the last axis (see
// DecomposeTransformer); with mask, of the unmasked scores mask.x, the
// masked entries multiplied by 0 after the Exp.
func tfSoftmax(g *ir.Graph, nm *namer, n *ir.Node, st *tfStats, mask *tfMask, opts TransformerOptions) ([]*ir.Node, TransformerEntry, error) {
	x, y := n.Inputs[0], n.Outputs[0]
	if mask != nil {
		x = mask.x
	}
	rank := len(x.Shape)
	keep := x.Shape.Clone()
	keep[rank-1] = 1
	e := TransformerEntry{Node: n.Name, Op: n.Op, Rows: len(st.lo[0]), Length: x.Shape[rank-1], ShiftMin: math.Inf(1), ShiftMax: math.Inf(-1)}
	k, plans, depth, err := tfSoftmaxPlans(st, e.Length, opts)
	if err != nil {
		return nil, e, fmt.Errorf("%v: %w", n, err)
	}
	e.Rounds, e.Depth = k, depth
	shift := make([]float64, e.Rows)
	for r := range shift {
		// exp(x/2^k - c_r) with c_r the centre of the row's log-sum-exp
		// range of x/2^k; c = 2^k·c_r in units of x.
		c := (st.lo[k][r] + st.hi[k][r]) / 2
		shift[r] = -c
		e.ShiftMin, e.ShiftMax = min(e.ShiftMin, math.Ldexp(c, k)), max(e.ShiftMax, math.Ldexp(c, k))
	}
	b := newTFBuilder(g, nm, n)
	z := x
	if k > 0 {
		z = b.add("Mul", "scaled", x.Shape, nil, nil, x, b.floats("inv_scale", ir.Shape{}, []float64{math.Ldexp(1, -k)}))
	}
	z = b.add("Add", "shifted", x.Shape, nil, nil, z, b.floats("shift", keep, shift))
	q := b.add("Exp", "exp", x.Shape, nil, nil, z)
	if mask != nil {
		q = b.add("Mul", "masked", x.Shape, nil, nil, q, b.floats("mask", mask.shape, mask.keep))
	}
	neg := make([]float64, e.Rows)
	for r := range neg {
		neg[r] = -1
	}
	for j, p := range plans {
		round := fmt.Sprintf("round%d_", j)
		if j > 0 {
			q = b.add("Mul", round+"square", x.Shape, nil, nil, q, q)
		}
		sum := b.rowSum(round+"sum", q, false, nil, nil)
		negSum := b.rowSum(round+"neg_sum", q, false, neg, nil)
		inv := b.newton(tfReciprocal, p, sum, negSum, round)
		var out *ir.Value
		if j == len(plans)-1 {
			out = y
		}
		q = b.add("Mul", round+"normalized", y.Shape, nil, out, q, inv)
		e.Inverses = append(e.Inverses, tfInverseEntry(tfReciprocal, p))
	}
	return b.nodes, e, nil
}

// tfLayerNorm decomposes a LayerNormalization over the last axis (see
// DecomposeTransformer).
func tfLayerNorm(g *ir.Graph, nm *namer, n *ir.Node, st *tfStats, opts TransformerOptions) ([]*ir.Node, TransformerEntry, error) {
	x, y := n.Inputs[0], n.Outputs[0]
	rank := len(x.Shape)
	d := x.Shape[rank-1]
	keep := x.Shape.Clone()
	keep[rank-1] = 1
	eps := n.Attrs.Float("epsilon", 1e-5)
	rows := len(st.lo[0])
	scale, epsN, negHalf := make([]float64, rows), make([]float64, rows), make([]float64, rows)
	lo, hi := math.Inf(1), math.Inf(-1)
	e := TransformerEntry{Node: n.Name, Op: n.Op, Rows: rows, Length: d, ShiftMin: math.Inf(1), ShiftMax: math.Inf(-1)}
	for r := range scale {
		m := math.Sqrt(st.lo[0][r] * st.hi[0][r])
		scale[r] = 1 / math.Sqrt(m)
		epsN[r] = eps / m
		negHalf[r] = -0.5
		half := math.Sqrt(st.hi[0][r] / st.lo[0][r])
		lo, hi = min(lo, 1/half), max(hi, half)
		e.ShiftMin, e.ShiftMax = min(e.ShiftMin, m), max(e.ShiftMax, m)
	}
	lo, hi = lo/opts.Widen, hi*opts.Widen
	plan, err := tfPlanNewton(tfInvSqrt, lo, hi, opts)
	if err != nil {
		return nil, e, fmt.Errorf("%v: %w", n, err)
	}
	b := newTFBuilder(g, nm, n)
	axes := []int64{int64(rank - 1)}
	mean := b.axesOp("ReduceMean", "mean", keep, x, axes, ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 1}})
	centered := b.add("Sub", "centered", x.Shape, nil, nil, x, mean)
	c := b.add("Mul", "centered_scaled", x.Shape, nil, nil, centered, b.floats("normalizer", keep, scale))
	sq := b.add("Mul", "square", x.Shape, nil, nil, c, c)
	v := b.rowSum("variance", sq, true, nil, epsN)
	negEps := make([]float64, rows)
	for r := range negEps {
		negEps[r] = -0.5 * epsN[r]
	}
	negV := b.rowSum("neg_half_variance", sq, true, negHalf, negEps)
	r := b.newton(tfInvSqrt, plan, v, negV, "")
	normed := b.add("Mul", "normalized", x.Shape, nil, nil, c, r)
	out := normed
	if gamma := n.Input(1); gamma != nil {
		out = b.add("Mul", "scaled", x.Shape, nil, nil, out, gamma)
	}
	if beta := n.Input(2); beta != nil {
		out = b.add("Add", "biased", x.Shape, nil, nil, out, beta)
	}
	// The last node takes over y (and the node's name).
	last := b.nodes[len(b.nodes)-1]
	last.Name, last.Outputs[0] = n.Name, y
	y.Producer = last
	e.Inverses = []TransformerInverse{tfInverseEntry(tfInvSqrt, plan)}
	e.Depth = 1 + 1 + plan.depth + 1 // the square, the variance, the inverse, the product
	return b.nodes, e, nil
}

// tfInverseEntry describes plan for the report.
func tfInverseEntry(inv tfInverse, p *tfNewtonPlan) TransformerInverse {
	return TransformerInverse{Func: inv.name, A: p.lo, B: p.hi, Degree: p.degree, Iterations: p.iters,
		StartErr: p.startErr, RelErr: p.relErr, Depth: p.depth}
}
