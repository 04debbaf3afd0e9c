package passes

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// ApproxOptions tune ApproximateActivations. The zero value selects every
// default.
type ApproxOptions struct {
	// Margin widens each calibrated interval by Margin times its half-width
	// on each side. 0 means 0.25; a negative value means no widening.
	Margin float64
	// MinAgreement is the fraction of calibration samples (of output rows,
	// for outputs with several rows) whose top-1 class must stay that of the
	// exact model. 0 means 1.
	MinAgreement float64
	// PrecisionBits sets the default OutputTolerance:
	// 2^-PrecisionBits · max|exact output|. 0 means 6.
	PrecisionBits int
	// OutputTolerance bounds max |approximated output - exact output| over
	// every element of every graph output and calibration sample. 0 means
	// the PrecisionBits default; a negative value disables the bound.
	OutputTolerance float64
	// MaxSamples caps the calibration samples the search uses, spread
	// evenly over the given ones. 0 means 256.
	MaxSamples int
	// MaxDegree caps the Chebyshev degrees tried (2^k - 1 up to it). 0
	// means 255.
	MaxDegree int
	// NoComposite disables the composite sign candidates for Relu,
	// LeakyRelu and Abs.
	NoComposite bool
}

func (o ApproxOptions) withDefaults() ApproxOptions {
	if o.Margin == 0 {
		o.Margin = 0.25
	} else if o.Margin < 0 {
		o.Margin = 0
	}
	if o.MinAgreement == 0 {
		o.MinAgreement = 1
	}
	if o.PrecisionBits == 0 {
		o.PrecisionBits = 6
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 256
	}
	if o.MaxDegree <= 0 {
		o.MaxDegree = 255
	}
	return o
}

// ApproxEntry describes the polynomial chosen for one activation.
type ApproxEntry struct {
	// Node is the activation's node name; the Poly node (or the final Mul of
	// a composite) replacing it keeps that name.
	Node string
	// Op is the activation's op, Func the Poly nodes' func attribute.
	Op, Func string
	// A, B is the interval: calibrated input range widened by the margin.
	A, B float64
	// Degrees holds the Chebyshev degree, or the stage degrees of a
	// composite.
	Degrees []int
	// Composite is set for x·s(x) forms built on a composite sign
	// approximation s (a chain of odd minimax polynomials on [-B', B'],
	// B' = max(|A|, |B|)).
	Composite bool
	// Depth is the multiplicative depth the lowering will spend:
	// ceil(log2(d+1)) for degree d (the interval change folded into the
	// previous layer), or the sum over a composite's stages plus 1 for the
	// product x·s(x).
	Depth int
	// MaxErr is max |p(x) - f(x)| over a grid of 4096 points on [A, B].
	MaxErr float64
	// Agreement and OutputErr are the model's top-1 agreement with the
	// exact model and max |output - exact output| over the calibration
	// samples when this candidate was last chosen: in the search, with this
	// and every earlier activation approximated (later ones exact); in the
	// repair or the trim, for the whole approximated model.
	Agreement, OutputErr float64
	// Tried counts the candidates evaluated for this activation.
	Tried int
	// Met reports whether the candidate met the targets (agreement, and the
	// whole output tolerance) when chosen.
	Met bool
	// Raised and Lowered count the final repair's raises and the trim's
	// lowerings of this activation's degree.
	Raised, Lowered int
}

// ApproxReport is what ApproximateActivations chose and measured.
type ApproxReport struct {
	Entries []ApproxEntry
	// Samples are the indices (in the calibration tensor) of the samples
	// the search used.
	Samples []int
	// Tolerance and MinAgreement are the targets.
	Tolerance, MinAgreement float64
	// Agreement and OutputErr are measured on the whole approximated model
	// over Samples; TargetsMet says whether they meet the targets.
	Agreement, OutputErr float64
	TargetsMet           bool
	// Elapsed is the search's wall time.
	Elapsed time.Duration
}

// MaxDepth is the largest depth of any entry.
func (r *ApproxReport) MaxDepth() int {
	d := 0
	for _, e := range r.Entries {
		d = max(d, e.Depth)
	}
	return d
}

// WriteTable writes the report as an aligned table, one activation a line,
// followed by a summary line.
func (r *ApproxReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "node\tfunc\tinterval\tdegree\tdepth\tmax|p-f|\tagreement\tmax out err\t")
	for _, e := range r.Entries {
		deg := fmt.Sprint(e.Degrees[0])
		if e.Composite {
			parts := make([]string, len(e.Degrees))
			for i, d := range e.Degrees {
				parts[i] = fmt.Sprint(d)
			}
			deg = "sign(" + strings.Join(parts, "∘") + ")"
		}
		flag := ""
		if !e.Met {
			flag = " (target missed)"
		}
		if e.Raised > 0 {
			flag += fmt.Sprintf(" (raised %d)", e.Raised)
		}
		if e.Lowered > 0 {
			flag += fmt.Sprintf(" (lowered %d)", e.Lowered)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%.4g, %.4g]\t%s\t%d\t%.3g\t%.4f\t%.3g%s\t\n",
			e.Node, e.Func, e.A, e.B, deg, e.Depth, e.MaxErr, e.Agreement, e.OutputErr, flag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	status := "met"
	if !r.TargetsMet {
		status = "NOT met"
	}
	_, err := fmt.Fprintf(w, "%d activations, max depth %d, %d samples: agreement %.4f (target %.4f), max output error %.3g (tolerance %.3g): targets %s, %v\n",
		len(r.Entries), r.MaxDepth(), len(r.Samples), r.Agreement, r.MinAgreement, r.OutputErr, r.Tolerance, status, r.Elapsed.Round(time.Millisecond))
	return err
}

func (r *ApproxReport) String() string {
	var b strings.Builder
	r.WriteTable(&b)
	return b.String()
}

// ApproximateActivations replaces every activation that needs a polynomial
// (see NeedsPolynomial; existing Poly nodes stay) by a Poly node, or, for
// Relu, LeakyRelu and Abs, possibly by a composite x·s(x) where s is a
// chain of Poly nodes approximating sign and the product a Mul of two
// non-constant values. calib holds calibration samples along its leading
// axis (g must have one input); at most opts.MaxSamples of them, spread
// evenly, are used. Run DecomposeMaxPool first, so that the Abs nodes of
// max pooling are approximated too.
//
// Each Poly is the Chebyshev interpolant (first-kind nodes) of the exact
// activation on its interval: the range its input takes on the calibration
// samples, in the exact model and with the approximations chosen before it,
// widened by opts.Margin. The degree is chosen by its measured effect on the
// model's outputs: activations are taken in topological order and, for
// each, candidates are tried cheapest depth first, Chebyshev degrees 3, 7,
// 15, ..., 255 (each the largest of its depth), then for Relu, LeakyRelu
// and Abs composite sign forms of growing precision (see SignCompositeFor).
// The first candidate is kept for which the model with every approximation
// chosen so far plus this one (later activations exact) keeps, over the
// calibration samples, the top-1 agreement with the exact model at least
// opts.MinAgreement, and max |output - exact output| within this
// activation's share of the tolerance: (k+1)/K of it for the k-th of K
// activations, so that early choices leave room for later ones and the last
// check, on the fully approximated model, is against the whole tolerance.
// When no candidate fits the share, the first that fits the whole tolerance
// is kept; when none does, the most precise (least max |p - f|).
//
// A final check runs the whole approximated model; when it misses the
// targets (only possible when some activation missed them), the repair
// raises one activation to its next candidate at a time, each time the one
// whose raise gives the best model (fewest disagreements, then smallest
// output error), while that improves the model and until the targets are
// met. The report then says whether they are.
//
// Since the shares make early activations more precise than the whole
// tolerance requires, a trim follows when the targets are met: activations
// are taken by decreasing depth and moved back to their previous (cheaper)
// candidate whenever the whole model still meets the targets (and every
// Poly input stays in its interval), until no move succeeds.
//
// Every Poly node records its interval, Chebyshev coefficients, and
// max |p - f| on a 4096-point grid of the interval in max_err; composite
// sign stages record their minimax error on their domain outside the dead
// zone (-eps, eps) and eps.
func ApproximateActivations(g *ir.Graph, calib *ir.Tensor, opts ApproxOptions) (*ApproxReport, error) {
	start := time.Now()
	opts = opts.withDefaults()
	if err := g.Sort(); err != nil {
		return nil, err
	}
	s, err := newApproxSearch(g, calib, opts)
	if err != nil {
		return nil, err
	}
	rep := &ApproxReport{Samples: s.sampleIdx, Tolerance: s.tol, MinAgreement: opts.MinAgreement}
	if len(s.acts) == 0 {
		rep.Agreement, rep.TargetsMet, rep.Elapsed = 1, true, time.Since(start)
		return rep, nil
	}
	for k := range s.acts {
		if err := s.choose(k); err != nil {
			return nil, err
		}
	}
	if err := s.finalCheck(); err != nil {
		return nil, err
	}
	if err := s.trim(); err != nil {
		return nil, err
	}
	// Rewrite the graph with the chosen candidates.
	nm := newNamer(g)
	repl := map[*ir.Node][]*ir.Node{}
	for k, a := range s.acts {
		st := &s.state[k]
		repl[a.node] = st.cand.build(a, nm, true)
		e := st.entry
		rep.Entries = append(rep.Entries, e)
	}
	spliceReplacements(g, repl)
	if err := g.Sort(); err != nil {
		return nil, err
	}
	rep.Agreement, rep.OutputErr = s.final.agreement(), s.final.maxErr
	rep.TargetsMet = s.final.meets(s.tol, s.allowDis)
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// approxAct is one node to approximate.
type approxAct struct {
	node *ir.Node
	pos  int    // index in g.Nodes
	fn   string // func attribute
	// f evaluates the exact activation on a batch of points.
	f func(xs []float64) ([]float64, error)
}

// approxCand is one approximation of an activation.
type approxCand struct {
	a, b   float64
	degree int       // Chebyshev degree, when comp is nil
	coeffs []float64 // Chebyshev coefficients on [a, b]
	comp   *SignComposite
	scale  float64 // composite: x/scale, in [-1, 1], feeds the first stage
	// gate maps the composite sign s to the factor multiplying x:
	// gate0 + gate1·s.
	gate0, gate1 float64
	depth        int
	maxErr       float64
}

func (c *approxCand) degrees() []int {
	if c.comp != nil {
		return c.comp.Degrees()
	}
	return []int{c.degree}
}

// build returns the nodes computing the candidate from act's input into
// act's output value; only final builds set that value's producer.
func (c *approxCand) build(act *approxAct, nm *namer, final bool) []*ir.Node {
	x, y := act.node.Inputs[0], act.node.Outputs[0]
	// The node taking over y keeps the activation's name (the activation
	// goes away).
	name := act.node.Name
	poly := func(name, fn string, a, b float64, coeffs []float64, maxErr float64, in, out *ir.Value) *ir.Node {
		return &ir.Node{Name: name, Op: "Poly", Inputs: []*ir.Value{in}, Outputs: []*ir.Value{out}, Attrs: ir.Attrs{
			"func":    {Kind: ir.AttrString, String: fn},
			"a":       {Kind: ir.AttrFloat, Float: a},
			"b":       {Kind: ir.AttrFloat, Float: b},
			"coeffs":  {Kind: ir.AttrFloats, Floats: coeffs},
			"max_err": {Kind: ir.AttrFloat, Float: maxErr},
		}}
	}
	if c.comp == nil {
		n := poly(name, act.fn, c.a, c.b, c.coeffs, c.maxErr, x, y)
		if final {
			y.Producer = n
		}
		return []*ir.Node{n}
	}
	// x/scale by a Mul with a constant (affine: the lowering folds it into
	// the layer computing x), so that every stage works on [-1, 1] and costs
	// no level for a change of variable, though x itself also feeds the
	// final Mul.
	dtype := floatDType(y.DType)
	names := func(suffix string) (string, string) {
		v, n := y.Name+suffix, name+suffix
		if nm != nil {
			v, n = nm.value(v), nm.node(n)
		}
		return v, n
	}
	vname, nname := names("/scaled")
	in := &ir.Value{Name: vname, DType: dtype, Shape: x.Shape.Clone()}
	cname, _ := names("/inv_scale")
	inv := &ir.Value{Name: cname, DType: dtype, Shape: ir.Shape{},
		Const: &ir.Tensor{DType: dtype, Shape: ir.Shape{}, Float: []float64{1 / c.scale}}}
	scale := &ir.Node{Name: nname, Op: "Mul", Inputs: []*ir.Value{x, inv}, Outputs: []*ir.Value{in}, Attrs: ir.Attrs{}}
	in.Producer = scale
	nodes := []*ir.Node{scale}
	for i, st := range c.comp.Stages {
		a, b := -1.0, 1.0
		fn, coeffs, maxErr := "sign", st.Coeffs, st.Err
		if i == len(c.comp.Stages)-1 {
			// The last stage computes the gate g0 + g1·sign directly.
			fn = fmt.Sprintf("%g+%g*sign", c.gate0, c.gate1)
			coeffs = make([]float64, len(st.Coeffs))
			for k, v := range st.Coeffs {
				coeffs[k] = c.gate1 * v
			}
			coeffs[0] += c.gate0
			maxErr *= math.Abs(c.gate1)
		}
		vname, nname := names(fmt.Sprintf("/sign%d", i+1))
		out := &ir.Value{Name: vname, DType: dtype, Shape: x.Shape.Clone()}
		n := poly(nname, fn, a, b, coeffs, maxErr, in, out)
		n.Attrs["eps"] = ir.Attr{Kind: ir.AttrFloat, Float: st.Eps}
		out.Producer = n
		nodes = append(nodes, n)
		in = out
	}
	mul := &ir.Node{Name: name, Op: "Mul", Inputs: []*ir.Value{x, in}, Outputs: []*ir.Value{y}, Attrs: ir.Attrs{}}
	if final {
		y.Producer = mul
	}
	return append(nodes, mul)
}

// approxSample is one calibration chunk: its feed and the exact outputs.
type approxSample struct {
	index  int // of its first sample in calib
	feed   *ir.Tensor
	ref    []*ir.Tensor // exact outputs, in g.Outputs order
	argmax [][]int      // per output, per row
	margin float64      // smallest top-1/top-2 gap, for ordering
}

// approxState is the search's record for one activation.
type approxState struct {
	cands []*approxCand
	idx   int // chosen candidate
	cand  *approxCand
	entry ApproxEntry
}

// approxSearch holds the state of ApproximateActivations.
type approxSearch struct {
	g         *ir.Graph
	opts      ApproxOptions
	acts      []*approxAct
	state     []approxState
	samples   []*approxSample
	order     []int // samples, hardest first
	sampleIdx []int
	exact     Ranges
	tol       float64
	positions int // output rows compared for agreement
	allowDis  int // disagreements allowed
	lastUse   map[*ir.Value]int
	// envs[i] holds sample i's values live at node index pos, computed with
	// the approximations chosen so far.
	envs  []map[*ir.Value]*ir.Tensor
	pos   int
	subst map[*ir.Node][]*ir.Node
	final approxEval
}

func newApproxSearch(g *ir.Graph, calib *ir.Tensor, opts ApproxOptions) (*approxSearch, error) {
	n, err := calibCheckSamples(g, calib)
	if err != nil {
		return nil, err
	}
	s := &approxSearch{g: g, opts: opts, subst: map[*ir.Node][]*ir.Node{}}
	for i, node := range g.Nodes {
		if !NeedsPolynomial(node.Op) || node.Op == "Poly" {
			continue
		}
		if len(node.Inputs) != 1 || node.Inputs[0] == nil || len(node.Outputs) != 1 {
			return nil, fmt.Errorf("%v: want one input and one output", node)
		}
		if d := node.Inputs[0].DType; d != ir.Undefined && !d.IsFloat() {
			return nil, &ir.UnsupportedError{Node: node.Name, Op: node.Op, Opset: g.Opset,
				Reason: fmt.Sprintf("input of element type %s; only float activations become polynomials", d)}
		}
		fn := node.Op
		if sum := node.Attrs.Summary(); sum != "" {
			fn += " " + sum
		}
		act := &approxAct{node: node, pos: i, fn: fn}
		act.f = func(xs []float64) ([]float64, error) {
			outs, err := plain.EvalNode(node, g.Opset, []*ir.Tensor{{DType: ir.Float64, Shape: ir.Shape{len(xs)}, Float: xs}})
			if err != nil {
				return nil, err
			}
			return outs[0].Floats(), nil
		}
		s.acts = append(s.acts, act)
	}
	s.state = make([]approxState, len(s.acts))
	if len(s.acts) == 0 {
		return s, nil
	}
	// Calibration chunks, spread evenly.
	c := calibChunkSize(g)
	chunks := n / c
	m := min(chunks, max(1, opts.MaxSamples/c))
	subT := &ir.Tensor{DType: calib.DType, Shape: append(ir.Shape{m * c}, calib.Shape[1:]...)}
	for i := 0; i < m; i++ {
		k := i * chunks / m
		t := calibRows(calib, k*c, (k+1)*c)
		s.samples = append(s.samples, &approxSample{index: k * c, feed: t})
		for j := 0; j < c; j++ {
			s.sampleIdx = append(s.sampleIdx, k*c+j)
		}
		subT.Float = append(subT.Float, t.Float...)
		subT.Int = append(subT.Int, t.Int...)
	}
	if s.exact, err = Calibrate(g, subT); err != nil {
		return nil, err
	}
	// Exact outputs.
	var mu sync.Mutex
	scale := 0.0
	err = calibParallel(len(s.samples), func(i int) error {
		sm := s.samples[i]
		res, err := plain.Run(g, map[string]*ir.Tensor{g.Inputs[0].Name: sm.feed}, nil)
		if err != nil {
			return fmt.Errorf("sample %d: %w", sm.index, err)
		}
		sm.margin = math.Inf(1)
		local := 0.0
		for _, o := range g.Outputs {
			t := res[o.Name]
			sm.ref = append(sm.ref, t)
			am, gap := approxArgmaxRows(t)
			sm.argmax = append(sm.argmax, am)
			sm.margin = min(sm.margin, gap)
			for _, v := range t.Floats() {
				local = max(local, math.Abs(v))
			}
		}
		mu.Lock()
		scale = max(scale, local)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, am := range s.samples[0].argmax {
		s.positions += len(am) * len(s.samples)
	}
	s.allowDis = int(math.Floor((1-opts.MinAgreement)*float64(s.positions) + 1e-9))
	switch {
	case opts.OutputTolerance > 0:
		s.tol = opts.OutputTolerance
	case opts.OutputTolerance < 0:
		s.tol = math.Inf(1)
	default:
		s.tol = math.Ldexp(scale, -opts.PrecisionBits)
	}
	s.order = make([]int, len(s.samples))
	for i := range s.order {
		s.order[i] = i
	}
	sort.SliceStable(s.order, func(i, j int) bool { return s.samples[s.order[i]].margin < s.samples[s.order[j]].margin })
	// Live values: a value is kept while a node at or after pos reads it.
	s.lastUse = map[*ir.Value]int{}
	for i, node := range g.Nodes {
		for _, v := range node.Inputs {
			if v != nil {
				s.lastUse[v] = i
			}
		}
	}
	for _, o := range g.Outputs {
		s.lastUse[o] = len(g.Nodes)
	}
	s.envs = make([]map[*ir.Value]*ir.Tensor, len(s.samples))
	for i, sm := range s.samples {
		s.envs[i] = map[*ir.Value]*ir.Tensor{g.Inputs[0]: sm.feed}
	}
	return s, nil
}

// approxArgmaxRows returns the argmax of every row (along the last axis) of
// t and the smallest gap between a row's largest and second largest
// element.
func approxArgmaxRows(t *ir.Tensor) ([]int, float64) {
	f := t.Floats()
	k := 1
	if len(t.Shape) > 0 {
		k = t.Shape[len(t.Shape)-1]
	}
	if k == 0 {
		return nil, math.Inf(1)
	}
	rows := len(f) / k
	am := make([]int, rows)
	gap := math.Inf(1)
	for r := 0; r < rows; r++ {
		row := f[r*k : (r+1)*k]
		best := 0
		for c, v := range row {
			if v > row[best] {
				best = c
			}
		}
		second := math.Inf(-1)
		for c, v := range row {
			if c != best && v > second {
				second = v
			}
		}
		am[r] = best
		gap = min(gap, row[best]-second)
	}
	return am, gap
}

// approxEval summarizes a model evaluation over the calibration samples.
type approxEval struct {
	samples       int // samples evaluated (fewer when stopped early)
	total         int // of these
	positions     int // rows compared
	disagreements int
	maxErr        float64
	violation     bool // a Poly input left its interval
	stopped       bool
}

func (r approxEval) agreement() float64 {
	if r.positions == 0 {
		return 1
	}
	return 1 - float64(r.disagreements)/float64(r.positions)
}

func (r approxEval) meets(tol float64, allowDis int) bool {
	return !r.violation && r.disagreements <= allowDis && r.maxErr <= tol
}

// better orders complete results: no range violation, fewer
// disagreements, smaller error.
func (r approxEval) better(o approxEval) bool {
	if r.violation != o.violation {
		return !r.violation
	}
	if r.disagreements != o.disagreements {
		return r.disagreements < o.disagreements
	}
	return r.maxErr < o.maxErr
}

// evaluate runs nodes [from, end) of the graph, with substitutions subst,
// from the environments envs (one per sample) and compares the outputs with
// the exact ones. With stop set, it stops as soon as the result cannot meet
// the targets.
func (s *approxSearch) evaluate(from int, envs []map[*ir.Value]*ir.Tensor, subst map[*ir.Node][]*ir.Node, stop bool) (approxEval, error) {
	var mu sync.Mutex
	var res approxEval
	res.total = len(s.samples)
	var halt atomic.Bool
	nodes := s.g.Nodes[from:]
	err := calibParallel(len(s.order), func(k int) error {
		if halt.Load() {
			return nil
		}
		i := s.order[k]
		sm := s.samples[i]
		env := make(map[*ir.Value]*ir.Tensor, len(envs[i])+len(nodes))
		for v, t := range envs[i] {
			env[v] = t
		}
		viol, err := approxRunNodes(s.g, nodes, subst, env)
		if err != nil {
			return fmt.Errorf("sample %d: %w", sm.index, err)
		}
		dis, pos, worst := 0, 0, 0.0
		for j, o := range s.g.Outputs {
			var t *ir.Tensor
			if o.IsConst() {
				t = o.Const
			} else if t = env[o]; t == nil {
				return fmt.Errorf("graph output %q not computed", o.Name)
			}
			ref := sm.ref[j].Floats()
			for e, v := range t.Floats() {
				d := math.Abs(v - ref[e])
				if d > worst || math.IsNaN(d) {
					worst = d
					if math.IsNaN(d) {
						worst = math.Inf(1)
					}
				}
			}
			am, _ := approxArgmaxRows(t)
			for r, c := range am {
				if c != sm.argmax[j][r] {
					dis++
				}
			}
			pos += len(am)
		}
		mu.Lock()
		res.samples++
		res.positions += pos
		res.disagreements += dis
		res.maxErr = max(res.maxErr, worst)
		res.violation = res.violation || viol
		if stop && (res.violation || res.disagreements > s.allowDis || res.maxErr > s.tol) {
			halt.Store(true)
			res.stopped = true
		}
		mu.Unlock()
		return nil
	})
	if res.samples < res.total {
		res.stopped = true
	}
	return res, err
}

// approxRunNodes executes nodes in order, replacing those in subst by their
// substitutes, into env. It reports whether a substituted Poly node's input
// left its interval.
func approxRunNodes(g *ir.Graph, nodes []*ir.Node, subst map[*ir.Node][]*ir.Node, env map[*ir.Value]*ir.Tensor) (bool, error) {
	violation := false
	args := make([]*ir.Tensor, 0, 8)
	exec := func(n *ir.Node, checkRange bool) error {
		args = args[:0]
		for i, v := range n.Inputs {
			switch {
			case v == nil:
				args = append(args, nil)
			case v.IsConst():
				args = append(args, v.Const)
			default:
				t, ok := env[v]
				if !ok {
					return fmt.Errorf("%v: input %d %q not computed", n, i, v.Name)
				}
				args = append(args, t)
			}
		}
		if checkRange && n.Op == "Poly" && !violation {
			a, b := n.Attrs.Float("a", -1), n.Attrs.Float("b", 1)
			for _, x := range args[0].Float {
				if !(x >= a && x <= b) {
					violation = true
					break
				}
			}
		}
		outs, err := plain.EvalNode(n, g.Opset, args)
		if err != nil {
			return err
		}
		for i, o := range n.Outputs {
			if o != nil && i < len(outs) {
				env[o] = outs[i]
			}
		}
		return nil
	}
	for _, n := range nodes {
		if r, ok := subst[n]; ok {
			for _, m := range r {
				if err := exec(m, true); err != nil {
					return violation, err
				}
			}
			continue
		}
		if err := exec(n, false); err != nil {
			return violation, err
		}
	}
	return violation, nil
}

// advance moves every sample's environment to node index to, running the
// nodes in between with the chosen substitutions, and drops the values no
// node from to on reads.
func (s *approxSearch) advance(to int) error {
	if to <= s.pos {
		return nil
	}
	nodes := s.g.Nodes[s.pos:to]
	err := calibParallel(len(s.samples), func(i int) error {
		env := s.envs[i]
		if _, err := approxRunNodes(s.g, nodes, s.subst, env); err != nil {
			return fmt.Errorf("sample %d: %w", s.samples[i].index, err)
		}
		for v := range env {
			if s.lastUse[v] < to {
				delete(env, v)
			}
		}
		return nil
	})
	s.pos = to
	return err
}

// interval is the calibrated input range of act, from the exact model and
// the current environments (approximations before act applied), widened
// by the margin.
func (s *approxSearch) interval(act *approxAct) (float64, float64, error) {
	lo, hi := math.Inf(1), math.Inf(-1)
	if r, ok := s.exact[act.node.Name]; ok {
		lo, hi = r.Min, r.Max
	}
	x := act.node.Inputs[0]
	for _, env := range s.envs {
		t := env[x]
		if t == nil && x.IsConst() {
			t = x.Const
		}
		if t == nil {
			continue
		}
		for _, v := range t.Floats() {
			if v < lo {
				lo = v
			}
			if v > hi {
				hi = v
			}
		}
	}
	if !(lo <= hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return 0, 0, fmt.Errorf("%v: calibration found no finite input range ([%g, %g])", act.node, lo, hi)
	}
	c, h := 0.5*(lo+hi), 0.5*(hi-lo)
	floor := 1e-3 * max(1, math.Abs(c))
	if h < floor {
		h = floor
	}
	h *= 1 + s.opts.Margin
	return c - h, c + h, nil
}

// approxErrorGrid is the number of points on which max |p - f| is measured.
const approxErrorGrid = 4096

// chebCandidate interpolates act on [a, b] with the given degree.
func (s *approxSearch) chebCandidate(act *approxAct, a, b float64, degree int) (*approxCand, error) {
	var ferr error
	coeffs := approxChebInterp(func(xs []float64) []float64 {
		ys, err := act.f(xs)
		if err != nil {
			ferr = err
			return make([]float64, len(xs))
		}
		return ys
	}, a, b, degree)
	if ferr != nil {
		return nil, ferr
	}
	c := &approxCand{a: a, b: b, degree: degree, coeffs: coeffs, depth: approxDegreeDepth(degree)}
	xs, ys, err := approxGridValues(act, a, b)
	if err != nil {
		return nil, err
	}
	for i, x := range xs {
		p := plain.Chebyshev(coeffs, (2*x-a-b)/(b-a))
		c.maxErr = max(c.maxErr, math.Abs(p-ys[i]))
	}
	return c, nil
}

// approxGridValues returns approxErrorGrid points evenly spaced on [a, b] and f there.
func approxGridValues(act *approxAct, a, b float64) ([]float64, []float64, error) {
	xs := make([]float64, approxErrorGrid)
	for i := range xs {
		xs[i] = a + (b-a)*float64(i)/float64(approxErrorGrid-1)
	}
	ys, err := act.f(xs)
	return xs, ys, err
}

// compositeCandidate builds x·(g0 + g1·s(x/scale)) for act on [a, b].
func (s *approxSearch) compositeCandidate(act *approxAct, a, b float64, comp *SignComposite) (*approxCand, error) {
	c := &approxCand{a: a, b: b, comp: comp, scale: max(math.Abs(a), math.Abs(b)), depth: comp.Depth() + 1}
	switch act.node.Op {
	case "Abs":
		c.gate0, c.gate1 = 0, 1
	case "Relu":
		c.gate0, c.gate1 = 0.5, 0.5
	case "LeakyRelu":
		alpha := act.node.Attrs.Float("alpha", 0.01)
		c.gate0, c.gate1 = (1+alpha)/2, (1-alpha)/2
	default:
		return nil, fmt.Errorf("%v: no composite form", act.node)
	}
	xs, ys, err := approxGridValues(act, a, b)
	if err != nil {
		return nil, err
	}
	for i, x := range xs {
		p := x * (c.gate0 + c.gate1*comp.Eval(x*(1/c.scale)))
		c.maxErr = max(c.maxErr, math.Abs(p-ys[i]))
	}
	return c, nil
}

// Composite sign exponents tried: the dead zone 2^-k of the first stage.
const approxMinExp, approxMaxExp = 4, 20

// candidateList returns a generator of act's candidates on [a, b],
// cheapest depth first: Chebyshev degrees 2^k - 1 up to MaxDegree, then,
// for Relu, LeakyRelu and Abs, composites of growing precision (dead zone
// 2^-k for k = 4..20), keeping only those deeper and more precise (in
// max |p - f| on [a, b]) than every candidate before. Composites are built
// lazily; the generator returns nil when there are no more.
func (s *approxSearch) candidateList(act *approxAct, a, b float64) func() (*approxCand, error) {
	var degrees []int
	for d := 3; d <= s.opts.MaxDegree; d = 2*d + 1 {
		degrees = append(degrees, d)
	}
	composite := !s.opts.NoComposite && (act.node.Op == "Relu" || act.node.Op == "LeakyRelu" || act.node.Op == "Abs")
	i, k := 0, approxMinExp
	lastDepth, bestErr := 0, math.Inf(1)
	return func() (*approxCand, error) {
		if i < len(degrees) {
			i++
			c, err := s.chebCandidate(act, a, b, degrees[i-1])
			if err == nil {
				lastDepth, bestErr = c.depth, min(bestErr, c.maxErr)
			}
			return c, err
		}
		for composite && k <= approxMaxExp {
			comp, err := SignCompositeFor(k)
			k++
			if err != nil {
				return nil, err
			}
			if comp.Depth()+1 <= lastDepth {
				continue
			}
			c, err := s.compositeCandidate(act, a, b, comp)
			if err != nil {
				return nil, err
			}
			if c.maxErr >= bestErr {
				continue
			}
			lastDepth, bestErr = c.depth, c.maxErr
			return c, nil
		}
		return nil, nil
	}
}

// choose picks the candidate for activation k (see ApproximateActivations).
func (s *approxSearch) choose(k int) error {
	act := s.acts[k]
	st := &s.state[k]
	if err := s.advance(act.pos); err != nil {
		return err
	}
	a, b, err := s.interval(act)
	if err != nil {
		return err
	}
	share := s.tol * float64(k+1) / float64(len(s.acts))
	next := s.candidateList(act, a, b)
	fullIdx := -1
	var results []approxEval
	chosen := -1
	for {
		c, err := next()
		if err != nil {
			return err
		}
		if c == nil {
			break
		}
		st.cands = append(st.cands, c)
		s.subst[act.node] = c.build(act, nil, false)
		res, err := s.evaluate(act.pos, s.envs, s.subst, true)
		if err != nil {
			return err
		}
		results = append(results, res)
		idx := len(st.cands) - 1
		if res.meets(share, s.allowDis) {
			chosen = idx
			break
		}
		if fullIdx < 0 && res.meets(s.tol, s.allowDis) {
			fullIdx = idx
		}
	}
	met := chosen >= 0 || fullIdx >= 0
	if chosen < 0 {
		chosen = fullIdx
	}
	if chosen < 0 {
		// Nothing fits: the most precise candidate.
		chosen = 0
		for i, c := range st.cands {
			if c.maxErr < st.cands[chosen].maxErr {
				chosen = i
			}
		}
	}
	st.idx = chosen
	st.cand = st.cands[chosen]
	s.subst[act.node] = st.cand.build(act, nil, false)
	res := results[chosen]
	if res.stopped {
		if res, err = s.evaluate(act.pos, s.envs, s.subst, false); err != nil {
			return err
		}
	}
	st.entry = s.entryFor(k, res, met, len(st.cands))
	return nil
}

func (s *approxSearch) entryFor(k int, res approxEval, met bool, tried int) ApproxEntry {
	act, c := s.acts[k], s.state[k].cand
	fn := act.fn
	return ApproxEntry{Node: act.node.Name, Op: act.node.Op, Func: fn, A: c.a, B: c.b,
		Degrees: c.degrees(), Composite: c.comp != nil, Depth: c.depth, MaxErr: c.maxErr,
		Agreement: res.agreement(), OutputErr: res.maxErr, Tried: tried, Met: met}
}

// finalCheck evaluates the whole approximated model and, when it misses the
// targets, raises degrees (see ApproximateActivations).
func (s *approxSearch) finalCheck() error {
	starts := s.starts()
	res, err := s.evaluate(0, starts, s.subst, false)
	if err != nil {
		return err
	}
	for round := 0; round < 4*len(s.acts) && !res.meets(s.tol, s.allowDis); round++ {
		best, bestCand := -1, (*approxCand)(nil)
		var bestRes approxEval
		for k, act := range s.acts {
			c, err := s.raised(k)
			if err != nil {
				return err
			}
			if c == nil {
				continue
			}
			old := s.subst[act.node]
			s.subst[act.node] = c.build(act, nil, false)
			r, err := s.evaluate(0, starts, s.subst, false)
			s.subst[act.node] = old
			if err != nil {
				return err
			}
			if best < 0 || r.better(bestRes) {
				best, bestCand, bestRes = k, c, r
			}
		}
		if best < 0 || !bestRes.better(res) {
			break
		}
		st := &s.state[best]
		st.idx++
		st.cand = bestCand
		st.entry.Raised++
		s.subst[s.acts[best].node] = bestCand.build(s.acts[best], nil, false)
		res = bestRes
		e := s.entryFor(best, res, st.entry.Met, st.entry.Tried)
		e.Raised = st.entry.Raised
		st.entry = e
	}
	s.final = res
	return nil
}

// raised returns the candidate after activation k's current one, or nil.
// Its interval stays the one chosen for k.
func (s *approxSearch) raised(k int) (*approxCand, error) {
	st := &s.state[k]
	if st.idx+1 < len(st.cands) {
		return st.cands[st.idx+1], nil
	}
	// Extend the list: rebuild the generator and skip the known ones.
	next := s.candidateList(s.acts[k], st.cand.a, st.cand.b)
	for i := 0; ; i++ {
		c, err := next()
		if err != nil || c == nil {
			return nil, err
		}
		if i > st.idx {
			st.cands = append(st.cands, c)
			return c, nil
		}
	}
}

// starts returns every sample's environment before the first node.
func (s *approxSearch) starts() []map[*ir.Value]*ir.Tensor {
	starts := make([]map[*ir.Value]*ir.Tensor, len(s.samples))
	for i, sm := range s.samples {
		starts[i] = map[*ir.Value]*ir.Tensor{s.g.Inputs[0]: sm.feed}
	}
	return starts
}

// trim moves activations back to cheaper candidates while the whole model
// meets the targets (see ApproximateActivations).
func (s *approxSearch) trim() error {
	if !s.final.meets(s.tol, s.allowDis) {
		return nil
	}
	starts := s.starts()
	for changed := true; changed; {
		changed = false
		order := make([]int, len(s.acts))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(i, j int) bool { return s.state[order[i]].cand.depth > s.state[order[j]].cand.depth })
		for _, k := range order {
			st, act := &s.state[k], s.acts[k]
			if st.idx == 0 {
				continue
			}
			c := st.cands[st.idx-1]
			old := s.subst[act.node]
			s.subst[act.node] = c.build(act, nil, false)
			r, err := s.evaluate(0, starts, s.subst, true)
			if err != nil {
				return err
			}
			if r.stopped || !r.meets(s.tol, s.allowDis) {
				s.subst[act.node] = old
				continue
			}
			st.idx--
			st.cand = c
			e := s.entryFor(k, r, st.entry.Met, st.entry.Tried)
			e.Raised, e.Lowered = st.entry.Raised, st.entry.Lowered+1
			st.entry = e
			s.final = r
			changed = true
		}
	}
	return nil
}
