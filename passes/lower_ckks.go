package passes

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// LowerOptions control LowerCKKS and ChooseParams. The zero value asks for
// the defaults.
type LowerOptions struct {
	// MaxLogN bounds the ring degree 2^LogN, LogN in [13, 16]; 0 means
	// DefaultMaxLogN (16).
	MaxLogN int
	// LogScale fixes the scale 2^LogScale; 0 lets ChooseParams pick it.
	LogScale int
	// MinLogScale is the smallest scale ChooseParams may pick; 0 means
	// DefaultMinLogScale (30).
	MinLogScale int
	// Batch is the number of samples a ciphertext must hold at least; 0
	// means 1. The program packs Slots/BlockSize samples in any case.
	Batch int
	// Calib holds calibration samples for the graph's single input, stacked
	// along the leading axis (each sample shaped like the input without its
	// batch axis of 1, or, with WholeTensor, like the whole input, stacked
	// on a new leading axis). A plaintext run over them gives the
	// magnitudes the error bounds of products and encodings scale with.
	// Without it the magnitudes are bounded from the Poly intervals, the
	// matrix norms and InputBound.
	Calib *ir.Tensor
	// CalibInputs, when set, replaces Calib for a graph with several
	// inputs: per input name, samples stacked along the leading axis as in
	// Calib, every input with the same number of samples (the split pass
	// lowers stages whose inputs are intermediate values of a model).
	CalibInputs map[string]*ir.Tensor
	// WholeTensor says the graph has no batch axis: every value's whole
	// (static) shape, whatever its leading dimension, is its per-sample
	// layout shape, so one program sample is one whole input tensor (the
	// runtime then takes [n, input shape...]). Without it every value must
	// have a leading batch axis of 1, which the layouts drop. Affine
	// regions are then probed one column per interpreter run, since the
	// leading axis cannot carry a batch of probes.
	WholeTensor bool
	// InputBound is the largest magnitude of an input element assumed when
	// Calib is nil; 0 means 1.
	InputBound float64
	// Safety multiplies the error each instruction introduces in the
	// predicted bounds; 0 means CKKSSafety.
	Safety float64
	// Boot, when set, lets a circuit too deep for any modulus chain run
	// with bootstrapping: LowerCKKS then lowers onto a residual chain on
	// the largest ring and places bootstraps (see lower_bootstrap.go). Nil
	// makes such a circuit an error.
	Boot *ckksir.BootParams
	// MaxKeyBytes, when positive and Boot is set, bounds the evaluation
	// keys of a program lowered without bootstrapping: a circuit whose
	// modulus chain fits but whose rotation and relinearization keys
	// (deep chains make every key large) would take more bootstraps
	// instead, on the short residual chain, like a circuit too deep for any
	// chain. A plan whose keys do not fit the worker cannot run at all.
	// Bootstrapping brings keys of its own (about 6 GiB at N=2^16), so a
	// budget below that trades one oversized plan for another.
	MaxKeyBytes int64
	// SharedProductLayouts lets the two operands of each product of
	// encrypted values (and the polynomials between them) share whatever
	// layout the first of them to be computed takes, instead of sitting
	// contiguously, and lets a linear map's output follow its input's
	// slots (lowerFollowInputs): the scores of a skewed attention product
	// then stay where the product left them. The copies of a skewed
	// product also read their dense projection as a cut value
	// (lowerCutBeforeCopy). The compiler sets it for
	// graphs with products of two encrypted matrices; CNNs keep contiguous
	// operands (their ReLU gates multiply by x) until measured with it.
	SharedProductLayouts bool
	// NaivePlacement places bootstraps by the naive policy (bootstrap a
	// value when an instruction has too few levels left for it) instead of
	// minimizing the predicted time; for comparisons.
	NaivePlacement bool
	// Log, when set, receives a line comparing the bootstrap placement with
	// the other policy (naive or minimal cost).
	Log io.Writer
	// Probes, when set, caches probed affine regions across calls on
	// subgraphs of one graph (see ProbeCache).
	Probes *ProbeCache
	// Packing selects the slot layout: ckksir.PackSlot (default, whole
	// samples in blocks of one ciphertext, linear maps by rotations) or
	// ckksir.PackFeature (one sample per slot, one ciphertext per tensor
	// element, linear maps by scalar multiply-accumulates, no rotations).
	Packing ckksir.Packing
}

// withDefaults fills the zero fields of o with their defaults.
func (o LowerOptions) withDefaults() LowerOptions {
	if o.MaxLogN == 0 {
		o.MaxLogN = DefaultMaxLogN
	}
	if o.MinLogScale <= 0 {
		o.MinLogScale = DefaultMinLogScale
	}
	if o.Batch <= 0 {
		o.Batch = 1
	}
	if o.InputBound <= 0 {
		o.InputBound = 1
	}
	if o.Safety <= 0 {
		o.Safety = CKKSSafety
	}
	return o
}

// MaxProbeInput is the largest number of elements of one input of an affine
// region that LowerCKKS extracts by probing (one probe per element, or per
// color of elements no output reads two of).
const MaxProbeInput = 65536

// LowerCKKS compiles a canonical tensor graph whose activations are already
// polynomials (Poly nodes) into a CKKS program.
//
// The graph must have static shapes with a leading batch axis of 1 on every
// value, or, with opts.WholeTensor, static shapes of any rank (the whole
// shape then being the per-sample layout); a value with no elements is an
// *ir.UnsupportedError. Its nodes fall into three kinds:
//
//   - affine nodes, whose outputs are affine in their non-constant inputs:
//     Dense, Gemm and MatMul with a constant operand, Conv, BatchNormalization,
//     AveragePool, GlobalAveragePool, Add, Sub, Sum, Mul and Div by a
//     constant, Neg, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat,
//     Split, Slice, Pad, Gather with constant indices, Expand, Tile,
//     ReduceMean, ReduceSum and Identity, with constant parameters;
//   - Poly nodes, which become OpPoly;
//   - Mul of two non-constant values of the same shape, which becomes OpMul.
//
// Anything else is an *ir.UnsupportedError naming the node.
//
// Every non-constant value that a Poly or Mul reads, or that is a graph
// output, and that an affine node computes, is an affine function of the
// non-affine values upstream (graph inputs, Poly and Mul outputs) reached
// through affine nodes only: y = Σ_i A_i·x_i + b. LowerCKKS extracts A_i and b
// by probing: it runs the affine nodes (grouped in connected regions) in the
// reference interpreter on zero inputs (the bias) and on one-hot inputs (the
// columns), and checks the result on a random input. So a chain such as
// Conv, AveragePool, Flatten, Dense is one OpLinear, one level, whatever its
// length. Probing costs one evaluation of the region per color of input
// elements (batched), the elements of one color being read by disjoint
// output elements (see lowerColorColumns), at most one per element; an input of more than MaxProbeInput elements is an error. A
// lower bound on the depth is checked first, so that a model too deep for
// any ring fails before probing.
//
// When such a value feeds a single Poly and nothing else, its matrices and
// bias absorb the Poly's change of variable x -> (2x-a-b)/(b-a), and the
// OpPoly works on [-1, 1], which saves a level. An affine map that is the
// identity on one or more inputs becomes OpAddConst or OpAdd (the latter
// only when no input is a product, whose scale differs from the default),
// which cost no level.
//
// Graph inputs sit contiguously at offset 0 of their block (per sample,
// without the batch axis); each linear map's output sits where
// chooseLayout finds the fewest diagonals (see lower_layout.go: pooled
// tensors stay scattered where their windows started), and a dense layer
// may read a pooled or summed value materialized first (lowerCutBefore).
// BlockSize is the smallest power of two holding every layout, never more
// slots than the ring the circuit's depth needs anyway. The parameters come
// from ChooseParams for the circuit's depth;
// every value gets its level and a predicted error bound
// (AssignErrorBounds). The result passes ckksir.Verify.
func LowerCKKS(g *ir.Graph, opts LowerOptions) (*ckksir.Program, error) {
	opts = opts.withDefaults()
	lw := &lowerer{g: g, opts: opts}
	if err := lw.analyze(); err != nil {
		return nil, err
	}
	// The depth bound assumes every cut fused (see emitMap): cuts cost a
	// level only where they pay for it.
	cut := lw.cut
	lw.cut = nil
	err := lw.checkDepth()
	lw.cut = cut
	if err != nil {
		return nil, err
	}
	if err := lw.probeAll(); err != nil {
		return nil, err
	}
	lw.fold()
	if err := lw.emit(); err != nil {
		return nil, err
	}
	errLevels := lw.assignLevels()
	bootstrap := lw.bootstrapInstead(errLevels)
	if errLevels != nil && !bootstrap {
		return nil, errLevels
	}
	if errLevels == nil {
		if bootstrap, err = lw.keysTooLarge(); err != nil {
			return nil, err
		}
	}
	mags, err := lw.magnitudes()
	if err != nil {
		return nil, err
	}
	if bootstrap {
		if mags, err = lw.lowerBootstrapped(mags); err != nil {
			return nil, err
		}
	}
	lo, hi := lw.ranges()
	if err := assignErrorBounds(lw.prog, mags, lo, hi, lw.refSamples(), opts.Safety); err != nil {
		return nil, err
	}
	if err := ckksir.Verify(lw.prog); err != nil {
		return nil, fmt.Errorf("lowering %q produced an invalid program: %w", g.Name, err)
	}
	return lw.prog, nil
}

// groupProducts ties the operands and outputs of every product, and the
// input and output of every polynomial connected to them, into groups that
// share one layout (LowerOptions.SharedProductLayouts).
func (lw *lowerer) groupProducts() {
	parent := map[*ir.Value]*ir.Value{}
	var find func(v *ir.Value) *ir.Value
	find = func(v *ir.Value) *ir.Value {
		p, ok := parent[v]
		if !ok || p == v {
			parent[v] = v
			return v
		}
		r := find(p)
		parent[v] = r
		return r
	}
	union := func(a, b *ir.Value) { parent[find(a)] = find(b) }
	inProduct := map[*ir.Value]bool{}
	for _, n := range lw.g.Nodes {
		switch lw.kind[n] {
		case lowerMul:
			union(n.Inputs[0], n.Outputs[0])
			union(n.Inputs[1], n.Outputs[0])
			inProduct[n.Outputs[0]] = true
		case lowerPoly:
			union(n.Inputs[0], n.Outputs[0])
		}
	}
	products := map[*ir.Value]bool{}
	for v := range inProduct {
		products[find(v)] = true
	}
	lw.shared = map[*ir.Value]*ir.Value{}
	lw.groupLayout = map[*ir.Value]ckksir.Layout{}
	for v := range parent {
		if r := find(v); products[r] {
			lw.shared[v] = r
		}
	}
}

// sharedLayout returns the layout v's product group already has, if any.
func (lw *lowerer) sharedLayout(v *ir.Value) (ckksir.Layout, bool) {
	r, ok := lw.shared[v]
	if !ok {
		return ckksir.Layout{}, false
	}
	lay, ok := lw.groupLayout[r]
	return lay, ok
}

// settle records lay as the layout of v's product group when the group has
// none yet.
func (lw *lowerer) settle(v *ir.Value, lay ckksir.Layout) {
	if r, ok := lw.shared[v]; ok {
		if _, set := lw.groupLayout[r]; !set {
			lw.groupLayout[r] = lay
		}
	}
}

// keysTooLarge reports whether the program, lowered on a chain without
// bootstrapping, needs more evaluation-key memory than opts.MaxKeyBytes
// while bootstrapping could run it instead (see LowerOptions.MaxKeyBytes).
func (lw *lowerer) keysTooLarge() (bool, error) {
	o := lw.opts
	if o.MaxKeyBytes <= 0 || o.Boot == nil || lw.blockSize*o.Batch > 1<<(o.MaxLogN-1) {
		return false, nil
	}
	kp, err := ckks.PlanKeys(lw.prog)
	if err != nil {
		return false, fmt.Errorf("lowering %q: %w", lw.g.Name, err)
	}
	if kp.TotalBytes <= o.MaxKeyBytes {
		return false, nil
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "keys of the %s chain without bootstrapping: %.1f GiB, more than the %.1f GiB allowed; bootstrapping instead\n",
			lw.prog.Params, float64(kp.TotalBytes)/(1<<30), float64(o.MaxKeyBytes)/(1<<30))
	}
	return true, nil
}

// lowerKind classifies a node for lowering.
type lowerKind uint8

const (
	lowerAffine lowerKind = iota + 1
	lowerPoly
	lowerMul
)

// lowerEntry is one non-zero coefficient A[r][c] of a probed matrix.
type lowerEntry struct {
	r, c int
	v    float64
}

// lowerMap is the affine map computing one needed value: out = Σ_i A_i·ins[i]
// + bias, each A_i given by its non-zero entries.
type lowerMap struct {
	out  *ir.Value
	ins  []*ir.Value
	mats [][]lowerEntry
	bias []float64
	// nodes are the affine nodes of its cone, in graph order (for Layer).
	nodes []*ir.Node
	// fold is the Poly whose change of variable the map absorbed, or nil.
	fold *ir.Node
}

// lowerValue records, for a program value, the tensor value it holds and the
// affine change alpha·x + beta applied to it (1, 0 unless folded).
type lowerValue struct {
	tensor      *ir.Value
	alpha, beta float64
	depth       int
}

// lowerer carries the state of one LowerCKKS call.
type lowerer struct {
	g    *ir.Graph
	opts LowerOptions

	kind   map[*ir.Node]lowerKind
	uses   map[*ir.Value][]*ir.Node
	needed []*ir.Value // affine values the program must compute, in order
	maps   map[*ir.Value]*lowerMap

	blockSize int
	// slotLimit bounds the span of a layout: the slots per sample of the
	// ring the circuit's depth needs anyway.
	slotLimit int
	// contiguous marks needed values that must sit contiguously: the
	// operands (through polynomials) of products, whose two inputs must
	// share a layout. With opts.SharedProductLayouts, shared[v] instead
	// names v's product group (values that products and polynomials tie to
	// one layout) and groupLayout holds each group's layout once its first
	// value has one.
	contiguous  map[*ir.Value]bool
	shared      map[*ir.Value]*ir.Value
	groupLayout map[*ir.Value]ckksir.Layout
	// cut marks needed values that split an affine region: the nodes after
	// them read them as region inputs (see lowerCutBefore).
	cut map[*ir.Value]bool
	// cutOnly marks the cut values that nothing but the cut needs.
	cutOnly map[*ir.Value]bool
	// pending holds, per instruction index, the tensor-coordinate matrices
	// and bias of a linear or constant-add instruction until the block size
	// is known.
	pending map[int]*lowerPending
	emitted map[*ir.Value]bool
	prog    *ckksir.Program
	vid     map[*ir.Value]int
	vals    []lowerValue
	// offScale marks program values whose CKKS scale may differ from the
	// default: products (whose scale is s0·s1/q) and sums and constant
	// additions of them.
	offScale map[int]bool
	// calLo and calHi are the calibrated ranges of the graph's values
	// (nil without calibration samples).
	calLo, calHi map[*ir.Value][]float64
}

// analyze checks shapes, classifies the nodes, finds the needed values and
// the block size.
func (lw *lowerer) analyze() error {
	g := lw.g
	if len(g.Inputs) == 0 {
		return fmt.Errorf("lowering %q: the graph has no inputs", g.Name)
	}
	for _, v := range g.Values() {
		if v.IsConst() {
			continue
		}
		if !v.DType.IsFloat() {
			return fmt.Errorf("lowering %q: value %q is %s; encrypted values must be floating point", g.Name, v.Name, v.DType)
		}
		if lw.opts.WholeTensor {
			if !v.Shape.Known() {
				return fmt.Errorf("lowering %q: value %q has shape %v; lowering needs static shapes (bind the input shapes and canonicalize first)",
					g.Name, v.Name, v.Shape)
			}
		} else if !v.Shape.Known() || len(v.Shape) == 0 || v.Shape[0] != 1 {
			return fmt.Errorf("lowering %q: value %q has shape %v; lowering needs static shapes with a leading batch axis of 1 (bind the input shapes and canonicalize first)",
				g.Name, v.Name, v.Shape)
		}
		if v.Shape.Size() == 0 {
			return &ir.UnsupportedError{Reason: fmt.Sprintf("lowering %q: value %q has shape %v, no elements; empty tensors are not computed under encryption", g.Name, v.Name, v.Shape)}
		}
	}
	lw.kind = make(map[*ir.Node]lowerKind, len(g.Nodes))
	for _, n := range g.Nodes {
		k, err := lowerClassify(n, g.Opset)
		if err != nil {
			return err
		}
		lw.kind[n] = k
	}
	lw.uses = g.Consumers()
	seen := map[*ir.Value]bool{}
	need := func(v *ir.Value) {
		if v.Producer != nil && lw.kind[v.Producer] == lowerAffine && !seen[v] {
			seen[v] = true
			lw.needed = append(lw.needed, v)
		}
	}
	for _, n := range g.Nodes {
		if lw.kind[n] == lowerAffine {
			continue
		}
		for _, in := range n.Inputs {
			if in != nil && !in.IsConst() {
				need(in)
			}
		}
	}
	for _, o := range g.Outputs {
		if o.IsConst() {
			return fmt.Errorf("lowering %q: graph output %q is a constant", g.Name, o.Name)
		}
		need(o)
	}
	lw.cut, lw.cutOnly = map[*ir.Value]bool{}, map[*ir.Value]bool{}
	if lw.opts.Packing != ckksir.PackFeature {
		cut := func(v *ir.Value) {
			if !seen[v] {
				lw.cutOnly[v] = true
			}
			need(v)
			lw.cut[v] = true
		}
		for _, n := range g.Nodes {
			if v := lowerCutBefore(n, lw.kind); v != nil {
				cut(v)
			}
		}
		if lw.opts.SharedProductLayouts {
			for _, n := range g.Nodes {
				if v := lowerCutBeforeCopy(n, lw.kind); v != nil {
					cut(v)
				}
			}
		}
	}
	lw.contiguous = map[*ir.Value]bool{}
	if lw.opts.SharedProductLayouts && lw.opts.Packing != ckksir.PackFeature {
		lw.groupProducts()
	}
	var mark func(v *ir.Value)
	mark = func(v *ir.Value) {
		if v == nil || lw.contiguous[v] {
			return
		}
		lw.contiguous[v] = true
		if v.Producer != nil && lw.kind[v.Producer] == lowerPoly {
			mark(v.Producer.Inputs[0])
		}
	}
	for _, n := range g.Nodes {
		if lw.kind[n] == lowerMul && lw.shared == nil {
			mark(n.Inputs[0])
			mark(n.Inputs[1])
		}
	}
	largest := 1
	for _, v := range g.Inputs {
		largest = max(largest, v.Shape.Size())
	}
	for _, v := range lw.needed {
		largest = max(largest, v.Shape.Size())
	}
	for _, n := range g.Nodes {
		if lw.kind[n] != lowerAffine {
			largest = max(largest, n.Outputs[0].Shape.Size())
		}
	}
	lw.blockSize = 1
	for lw.opts.Packing != ckksir.PackFeature && lw.blockSize < largest {
		lw.blockSize *= 2
	}
	return nil
}

// lowerActivations are ops that need a polynomial approximation first.
var lowerActivations = map[string]bool{"Relu": true, "LeakyRelu": true, "PRelu": true, "Sigmoid": true, "HardSigmoid": true,
	"Tanh": true, "Softplus": true, "Elu": true, "Selu": true, "Gelu": true, "SiLU": true, "Abs": true, "MaxPool": true,
	"Clip": true, "Max": true, "Min": true, "Exp": true, "Erf": true, "Sqrt": true, "Reciprocal": true, "Softmax": true,
	"LayerNormalization": true}

// lowerTailConst lists the affine ops whose inputs other than the first must
// be constants (parameters, shapes, axes, indices).
var lowerTailConst = map[string]bool{"Dense": true, "Conv": true, "BatchNormalization": true, "AveragePool": true,
	"GlobalAveragePool": true, "Neg": true, "Reshape": true, "Flatten": true, "Transpose": true, "Squeeze": true,
	"Unsqueeze": true, "Slice": true, "Pad": true, "Gather": true, "ReduceMean": true, "ReduceSum": true,
	"Split": true, "Expand": true, "Tile": true, "Identity": true}

// lowerClassify says how n lowers, or returns an *ir.UnsupportedError.
func lowerClassify(n *ir.Node, opset int64) (lowerKind, error) {
	unsupported := func(reason string) error {
		return &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: opset, Reason: reason}
	}
	encrypted := 0
	for _, in := range n.Inputs {
		if in != nil && !in.IsConst() {
			encrypted++
		}
	}
	if len(n.Outputs) == 0 {
		return 0, unsupported("node without outputs")
	}
	switch {
	case n.Op == "Poly":
		if len(n.Inputs) != 1 || n.Inputs[0] == nil || n.Inputs[0].IsConst() {
			return 0, unsupported("Poly needs one non-constant input")
		}
		a, b := n.Attrs.Float("a", -1), n.Attrs.Float("b", 1)
		if len(n.Attrs.Floats("coeffs", nil)) == 0 || !(b > a) {
			return 0, unsupported(fmt.Sprintf("Poly needs coefficients and an interval a < b, got [%g, %g]", a, b))
		}
		return lowerPoly, nil
	case n.Op == "Mul":
		if encrypted == 2 {
			if !n.Inputs[0].Shape.Equal(n.Inputs[1].Shape) {
				return 0, unsupported(fmt.Sprintf("product of two encrypted values of different shapes %v and %v (broadcasting) is not supported under encryption",
					n.Inputs[0].Shape, n.Inputs[1].Shape))
			}
			return lowerMul, nil
		}
		return lowerAffine, nil
	case n.Op == "Div":
		if in := n.Input(1); in == nil || !in.IsConst() {
			return 0, unsupported("division by an encrypted value is not supported under encryption")
		}
		return lowerAffine, nil
	case n.Op == "Add" || n.Op == "Sub" || n.Op == "Sum" || n.Op == "Concat":
		return lowerAffine, nil
	case n.Op == "Gemm" || n.Op == "MatMul":
		if encrypted > 1 || len(n.Inputs) > 2 && n.Inputs[2] != nil && !n.Inputs[2].IsConst() {
			return 0, unsupported("product of two encrypted matrices is not supported under encryption")
		}
		return lowerAffine, nil
	case lowerTailConst[n.Op]:
		for i, in := range n.Inputs {
			if i > 0 && in != nil && !in.IsConst() {
				return 0, unsupported(fmt.Sprintf("input %d (%q) must be a constant under encryption", i, in.Name))
			}
		}
		return lowerAffine, nil
	case lowerActivations[n.Op]:
		return 0, unsupported("not supported under encryption; replace it by a polynomial approximation (Poly) first")
	}
	return 0, unsupported("not supported under encryption")
}

// lowerFreeOps are the ops of affine regions that may lower to sums without
// a level (OpAdd, OpAddConst).
var lowerFreeOps = map[string]bool{"Add": true, "Sum": true, "Identity": true, "Reshape": true, "Flatten": true,
	"Squeeze": true, "Unsqueeze": true}

// bootstrapInstead reports whether err, from choosing parameters, means a
// circuit too deep for any chain that bootstrapping (opts.Boot) can run:
// a capacity error while the blocks fit the largest ring.
func (lw *lowerer) bootstrapInstead(err error) bool {
	var unsupported *ir.UnsupportedError
	return err != nil && lw.opts.Boot != nil && errors.As(err, &unsupported) &&
		lw.blockSize*lw.opts.Batch <= 1<<(lw.opts.MaxLogN-1)
}

// checkDepth computes, before the costly probing, a lower bound on the
// circuit's depth (regions made only of sums and reshapes taken as free,
// foldable changes of variable folded) and fails when no parameters hold
// it.
func (lw *lowerer) checkDepth() error {
	depth := map[*ir.Value]int{}
	needed := map[*ir.Value]bool{}
	for _, v := range lw.needed {
		needed[v] = true
	}
	var valueDepth func(v *ir.Value) int
	valueDepth = func(v *ir.Value) int {
		if d, ok := depth[v]; ok || !needed[v] {
			return d
		}
		nodes, inputs := lw.lowerCone([]*ir.Value{v})
		cost := 0
		for _, n := range nodes {
			if !lowerFreeOps[n.Op] {
				cost = 1
			}
		}
		if lw.foldTarget(v) != nil {
			cost = 1
		}
		d := 0
		for _, x := range inputs {
			d = max(d, valueDepth(x))
		}
		depth[v] = d + cost
		return d + cost
	}
	total := 0
	for _, n := range lw.g.Nodes {
		var d int
		switch lw.kind[n] {
		case lowerPoly:
			x := n.Inputs[0]
			p := ckksir.Poly{A: n.Attrs.Float("a", -1), B: n.Attrs.Float("b", 1), Coeffs: n.Attrs.Floats("coeffs", nil)}
			if needed[x] && lw.foldTarget(x) == n {
				p.A, p.B = -1, 1
			}
			d = valueDepth(x) + p.Depth()
		case lowerMul:
			d = max(valueDepth(n.Inputs[0]), valueDepth(n.Inputs[1])) + 1
		default:
			continue
		}
		depth[n.Outputs[0]] = d
		total = max(total, d)
	}
	for _, o := range lw.g.Outputs {
		total = max(total, valueDepth(o))
	}
	params, err := ChooseParams(total, lw.blockSize, lw.opts)
	if lw.bootstrapInstead(err) {
		// Too deep: bootstrapping on the largest ring.
		lw.slotLimit = (1 << (lw.opts.MaxLogN - 1)) / lw.opts.Batch
		return nil
	}
	if err != nil {
		return fmt.Errorf("lowering %q: %w", lw.g.Name, err)
	}
	lw.slotLimit = params.Slots() / lw.opts.Batch
	return nil
}

// probeAll extracts the affine map of every needed value, probing each
// connected region of affine nodes once.
func (lw *lowerer) probeAll() error {
	g := lw.g
	index := make(map[*ir.Node]int, len(g.Nodes))
	parent := make([]int, len(g.Nodes))
	for i, n := range g.Nodes {
		index[n] = i
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for i, n := range g.Nodes {
		if lw.kind[n] != lowerAffine {
			continue
		}
		for _, in := range n.Inputs {
			if in != nil && in.Producer != nil && lw.kind[in.Producer] == lowerAffine && !lw.cut[in] {
				if a, b := find(i), find(index[in.Producer]); a != b {
					parent[a] = b
				}
			}
		}
	}
	// Group the needed values by region, regions in order of first need.
	var roots []int
	byRoot := map[int][]*ir.Value{}
	for _, v := range lw.needed {
		r := find(index[v.Producer])
		if byRoot[r] == nil {
			roots = append(roots, r)
		}
		byRoot[r] = append(byRoot[r], v)
	}
	lw.maps = make(map[*ir.Value]*lowerMap, len(lw.needed))
	for _, r := range roots {
		maps, err := lw.probeRegion(byRoot[r])
		if err != nil {
			return err
		}
		for _, m := range maps {
			lw.maps[m.out] = m
		}
	}
	return nil
}

// lowerCone returns the affine nodes that compute v from non-affine values,
// in graph order, and those values (the cone's inputs), in first-use order.
func (lw *lowerer) lowerCone(vs []*ir.Value) (nodes []*ir.Node, inputs []*ir.Value) {
	in := map[*ir.Node]bool{}
	var stack []*ir.Node
	for _, v := range vs {
		if !in[v.Producer] {
			in[v.Producer] = true
			stack = append(stack, v.Producer)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, x := range n.Inputs {
			if x == nil || x.Producer == nil || lw.kind[x.Producer] != lowerAffine || in[x.Producer] || lw.cut[x] {
				continue
			}
			in[x.Producer] = true
			stack = append(stack, x.Producer)
		}
	}
	seen := map[*ir.Value]bool{}
	for _, n := range lw.g.Nodes {
		if !in[n] {
			continue
		}
		nodes = append(nodes, n)
		for _, x := range n.Inputs {
			if x == nil || x.IsConst() || seen[x] {
				continue
			}
			if x.Producer == nil || lw.kind[x.Producer] != lowerAffine || lw.cut[x] {
				seen[x] = true
				inputs = append(inputs, x)
			}
		}
	}
	return nodes, inputs
}

// probeRegion extracts the maps of the needed values outs of one region.
func (lw *lowerer) probeRegion(outs []*ir.Value) ([]*lowerMap, error) {
	nodes, inputs := lw.lowerCone(outs)
	regionName := lowerLayerName(nodes)
	for _, x := range inputs {
		if n := x.Shape.Size(); n > MaxProbeInput {
			return nil, fmt.Errorf("lowering %q: affine region %s reads %q of %d elements; probing handles inputs of at most %d elements (structural extraction of large layers is not implemented yet)",
				lw.g.Name, regionName, x.Name, n, MaxProbeInput)
		}
	}
	if len(inputs) == 0 {
		return nil, fmt.Errorf("lowering %q: affine region %s computes %q from constants only; fold constants first", lw.g.Name, regionName, outs[0].Name)
	}
	sub := &ir.Graph{Name: lw.g.Name + "/probe", Opset: lw.g.Opset, Inputs: inputs, Nodes: nodes, Outputs: outs}
	res, err := lw.opts.Probes.probe(sub, lw.opts.WholeTensor)
	if err != nil {
		return nil, fmt.Errorf("lowering %q: affine region %s: %w", lw.g.Name, regionName, err)
	}
	var maps []*lowerMap
	for k, o := range outs {
		m := &lowerMap{out: o, bias: res.bias[k]}
		for i, x := range inputs {
			if len(res.mats[k][i]) > 0 {
				m.ins = append(m.ins, x)
				m.mats = append(m.mats, res.mats[k][i])
			}
		}
		if len(m.ins) == 0 {
			return nil, fmt.Errorf("lowering %q: %q does not depend on any encrypted value; fold constants first", lw.g.Name, o.Name)
		}
		cone, _ := lw.lowerCone([]*ir.Value{o})
		m.nodes = cone
		maps = append(maps, m)
	}
	return maps, nil
}

// lowerLayerName names a list of nodes compactly for Instr.Layer and errors.
func lowerLayerName(nodes []*ir.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	if len(names) > 4 {
		return fmt.Sprintf("%s, %s, ... %s (%d nodes)", names[0], names[1], names[len(names)-1], len(names))
	}
	return strings.Join(names, ", ")
}

// lowerProbeResult holds the probed maps of a region: for output k, its bias
// and, for input i, the non-zero entries of its matrix.
type lowerProbeResult struct {
	bias [][]float64
	mats [][][]lowerEntry
}

// lowerProbeBudget bounds the floats a batched probe run holds (batch size
// times the elements of the region's values).
const lowerProbeBudget = 1 << 22

// lowerProbe extracts the affine maps of sub, a graph of affine nodes. It
// probes many columns per interpreter run: the columns of one color of
// lowerColorColumns at once, and many colors per run along the batch axis
// (one probe each); it checks the result on a random input. When the batch
// axis cannot carry probes (a node that fixes it, such as a Reshape to
// [1, ...]), it probes one color per run. With whole set, sub's values have
// no batch axis (see LowerOptions.WholeTensor): it probes one color per run,
// on inputs of their declared shapes.
func lowerProbe(sub *ir.Graph, whole bool) (*lowerProbeResult, error) {
	base := sub.Clone()
	if whole {
		return lowerProbeChecked(base, base, 0, lowerColorColumns(base, 0))
	}
	color := lowerColorColumns(base, 1)
	groups := 0
	for _, x := range base.Inputs {
		groups += x.Shape.Size()
	}
	if color != nil {
		groups = len(color.groups)
	}
	perSample := 0
	for _, v := range base.Values() {
		if !v.IsConst() {
			perSample += v.Shape.Size()
		}
	}
	batch := min(1024, groups, max(1, lowerProbeBudget/max(1, perSample)))
	if batch > 1 {
		bg := sub.Clone()
		for _, x := range bg.Inputs {
			x.Shape[0] = -1
		}
		res, err := lowerProbeColumns(base, bg, batch, color)
		if err == nil {
			err = lowerCheckProbe(base, res, 1)
		}
		if err == nil {
			return res, nil
		}
	}
	return lowerProbeChecked(base, base, 1, color)
}

// lowerProbeChecked probes base by probe (see lowerProbeColumns) and checks
// the result; when the colored probe fails, it probes one column per probe.
func lowerProbeChecked(base, probe *ir.Graph, batch int, color *lowerColoring) (*lowerProbeResult, error) {
	res, err := lowerProbeColumns(base, probe, batch, color)
	if err == nil {
		err = lowerCheckProbe(base, res, batch)
	}
	if err != nil && color != nil {
		return lowerProbeChecked(base, probe, batch, nil)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// lowerRun runs g on the feeds and returns its outputs in order.
func lowerRun(g *ir.Graph, feeds []*ir.Tensor) ([]*ir.Tensor, error) {
	m := make(map[string]*ir.Tensor, len(feeds))
	for i, x := range g.Inputs {
		m[x.Name] = feeds[i]
	}
	res, err := plain.Run(g, m, nil)
	if err != nil {
		return nil, err
	}
	outs := make([]*ir.Tensor, len(g.Outputs))
	for k, o := range g.Outputs {
		outs[k] = res[o.Name]
		if outs[k] == nil || !outs[k].DType.IsFloat() {
			return nil, fmt.Errorf("output %q not computed as floats", o.Name)
		}
	}
	return outs, nil
}

// lowerZeroFeeds returns zero inputs for g with batch rows each, or, for
// batch 0 (no batch axis), of the inputs' declared shapes.
func lowerZeroFeeds(g *ir.Graph, batch int) []*ir.Tensor {
	feeds := make([]*ir.Tensor, len(g.Inputs))
	for i, x := range g.Inputs {
		s := x.Shape.Clone()
		if batch > 0 {
			s[0] = batch
		}
		feeds[i] = &ir.Tensor{DType: x.DType, Shape: s, Float: make([]float64, s.Size())}
	}
	return feeds
}

// lowerProbeColumns runs probe (the region, batch axis free when batch > 1)
// on inputs with ones at the columns of one color (color's groups, or one
// column each when color is nil), batch-1 colors per run plus a zero row that
// each color is measured against, and base once on zeros for the bias. Batch
// 0 means the values have no batch axis: one color per run, inputs of their
// declared shapes. Differences below 1e-13 relative to the bias are taken as
// rounding noise. It fails when an output element changes under a color
// none of whose columns it reads.
func lowerProbeColumns(base, probe *ir.Graph, batch int, color *lowerColoring) (*lowerProbeResult, error) {
	zero, err := lowerRun(base, lowerZeroFeeds(base, min(batch, 1)))
	if err != nil {
		return nil, err
	}
	res := &lowerProbeResult{bias: make([][]float64, len(base.Outputs)), mats: make([][][]lowerEntry, len(base.Outputs))}
	for k, o := range base.Outputs {
		if zero[k].Len() != o.Shape.Size() {
			return nil, fmt.Errorf("output %q has %d elements, want %d", o.Name, zero[k].Len(), o.Shape.Size())
		}
		res.bias[k] = append([]float64(nil), zero[k].Float...)
		res.mats[k] = make([][]lowerEntry, len(base.Inputs))
	}
	type column struct{ in, c int }
	var columns []column
	for i, x := range base.Inputs {
		for c := range x.Shape.Size() {
			columns = append(columns, column{i, c})
		}
	}
	var groups [][]int
	if color != nil {
		groups = color.groups
	} else {
		groups = make([][]int, len(columns))
		for j := range groups {
			groups[j] = []int{j}
		}
	}
	step := max(1, batch-1)
	for start := 0; start < len(groups); start += step {
		end := min(len(groups), start+step)
		rows := end - start
		if batch > 1 {
			rows++ // row 0: zeros
		}
		feeds := lowerZeroFeeds(probe, rows)
		if batch == 0 {
			feeds = lowerZeroFeeds(probe, 0)
		}
		for j := start; j < end; j++ {
			row := j - start
			if batch > 1 {
				row++
			}
			for _, g := range groups[j] {
				col := columns[g]
				n := base.Inputs[col.in].Shape.Size()
				feeds[col.in].Float[row*n+col.c] = 1
			}
		}
		outs, err := lowerRun(probe, feeds)
		if err != nil {
			return nil, err
		}
		for k, o := range base.Outputs {
			n := o.Shape.Size()
			if outs[k].Len() != rows*n || (batch > 0 && outs[k].Shape[0] != rows) {
				return nil, fmt.Errorf("output %q has shape %v for %d probes", o.Name, outs[k].Shape, rows)
			}
			ref := res.bias[k]
			if batch > 1 {
				ref = outs[k].Float[:n]
			}
			for j := start; j < end; j++ {
				row := j - start
				if batch > 1 {
					row++
				}
				y := outs[k].Float[row*n : (row+1)*n]
				for r, v := range y {
					d := v - ref[r]
					if d != 0 && math.Abs(d) > 1e-13*math.Abs(ref[r]) {
						g := groups[j][0]
						if len(groups[j]) > 1 {
							var ok bool
							if g, ok = color.column(k, r, j); !ok {
								return nil, fmt.Errorf("element %d of %q changes under probe %d, which sets no column it reads", r, o.Name, j)
							}
						}
						col := columns[g]
						res.mats[k][col.in] = append(res.mats[k][col.in], lowerEntry{r, col.c, d})
					}
				}
			}
		}
	}
	if color != nil {
		// The order of probing one column at a time: by column, then row.
		for _, ms := range res.mats {
			for _, m := range ms {
				slices.SortFunc(m, func(a, b lowerEntry) int {
					return cmp.Or(cmp.Compare(a.c, b.c), cmp.Compare(a.r, b.r))
				})
			}
		}
	}
	return res, nil
}

// lowerCheckProbe compares the probed maps with an interpreter run of base
// on a random input (batch 1, or 0 for values without a batch axis).
func lowerCheckProbe(base *ir.Graph, res *lowerProbeResult, batch int) error {
	r := rand.New(rand.NewPCG(1, 2))
	feeds := lowerZeroFeeds(base, batch)
	for _, f := range feeds {
		for i := range f.Float {
			f.Float[i] = 2*r.Float64() - 1
		}
	}
	outs, err := lowerRun(base, feeds)
	if err != nil {
		return err
	}
	for k, o := range base.Outputs {
		want := outs[k].Float
		got := append([]float64(nil), res.bias[k]...)
		scale := make([]float64, len(got))
		for i, b := range got {
			scale[i] = 1 + math.Abs(b)
		}
		for i, entries := range res.mats[k] {
			x := feeds[i].Float
			for _, e := range entries {
				got[e.r] += e.v * x[e.c]
				scale[e.r] += math.Abs(e.v * x[e.c])
			}
		}
		for j := range want {
			if d := math.Abs(got[j] - want[j]); !(d <= 1e-9*scale[j]) {
				return fmt.Errorf("%q is not affine in the region's inputs as probed (element %d: %g by the probed map, %g by the interpreter)",
					o.Name, j, got[j], want[j])
			}
		}
	}
	return nil
}

// foldTarget returns the Poly whose change of variable the needed value v
// absorbs: the only node outside the affine regions that reads v, when it is
// a Poly on an interval other than [-1, 1] and v is no graph output; else
// nil.
func (lw *lowerer) foldTarget(v *ir.Value) *ir.Node {
	if lw.g.IsOutput(v) || lw.cut[v] {
		return nil
	}
	var readers []*ir.Node
	for _, n := range users(lw.uses, v) {
		if lw.kind[n] != lowerAffine {
			readers = append(readers, n)
		}
	}
	if len(readers) != 1 || lw.kind[readers[0]] != lowerPoly {
		return nil
	}
	p := readers[0]
	if p.Attrs.Float("a", -1) == -1 && p.Attrs.Float("b", 1) == 1 {
		return nil
	}
	return p
}

// fold makes each needed value that feeds exactly one Poly, and nothing else
// that runs encrypted, absorb that Poly's change of variable.
func (lw *lowerer) fold() {
	for _, v := range lw.needed {
		p := lw.foldTarget(v)
		if p == nil {
			continue
		}
		a, b := p.Attrs.Float("a", -1), p.Attrs.Float("b", 1)
		alpha, beta := 2/(b-a), -(a+b)/(b-a)
		m := lw.maps[v]
		for _, entries := range m.mats {
			for i := range entries {
				entries[i].v *= alpha
			}
		}
		for i := range m.bias {
			m.bias[i] = alpha*m.bias[i] + beta
		}
		m.fold = p
	}
}

// layoutShape is the per-sample layout shape of a tensor of shape s: s
// without its batch axis, or all of s with WholeTensor.
func (lw *lowerer) layoutShape(s ir.Shape) ir.Shape {
	if lw.opts.WholeTensor {
		return s
	}
	return s[1:]
}

// newValue appends a program value holding tensor in layout lay and returns
// its id.
func (lw *lowerer) newValue(tensor *ir.Value, lay ckksir.Layout) int {
	lw.prog.Values = append(lw.prog.Values, ckksir.Value{Layout: lay})
	lw.vals = append(lw.vals, lowerValue{tensor: tensor, alpha: 1})
	return len(lw.prog.Values) - 1
}

// widenedRows returns the slots of input x (per-sample shape [..., d],
// rows along the last axis) spaced M apart when a dense layer reading x
// widens its rows to M > d, as a transformer's MLP does (64 to 256 in
// tiny-gpt), so that the layer's map, and the one narrowing them back (its
// output rows aligned with its input's, lowerRowAligned), have about d+M
// diagonals instead of one band per row; nil (contiguous) otherwise, or
// when the spaced rows would not fit in a block.
func (lw *lowerer) widenedRows(x *ir.Value, shape ir.Shape) []int {
	if lw.opts.Packing == ckksir.PackFeature || len(shape) < 2 {
		return nil
	}
	d := shape[len(shape)-1]
	rows := shape.Size() / max(d, 1)
	stride := d
	for _, n := range lw.g.Consumers()[x] {
		if n.Op == "Dense" && len(n.Inputs) > 1 && n.Inputs[0] == x && n.Inputs[1] != nil {
			if w := n.Inputs[1].Shape; len(w) == 2 && w[0] == d {
				stride = max(stride, w[1])
			}
		}
	}
	if stride == d || rows < 2 || (rows-1)*stride+d > lw.blockSize {
		return nil
	}
	slots := make([]int, 0, shape.Size())
	for r := range rows {
		for i := range d {
			slots = append(slots, r*stride+i)
		}
	}
	return slots
}

// emit builds the program's instructions in graph order.
func (lw *lowerer) emit() error {
	g := lw.g
	lw.prog = &ckksir.Program{BlockSize: lw.blockSize, Packing: lw.opts.Packing}
	lw.vid = map[*ir.Value]int{}
	lw.offScale = map[int]bool{}
	lw.pending = map[int]*lowerPending{}
	for _, x := range g.Inputs {
		lay := ckksir.Layout{Shape: lw.layoutShape(x.Shape)}
		lay.Slots = lw.widenedRows(x, lay.Shape)
		id := lw.newValue(x, lay)
		lw.settle(x, lw.prog.Values[id].Layout)
		lw.vid[x] = id
		lw.prog.Inputs = append(lw.prog.Inputs, ckksir.IO{Name: x.Name, Value: id})
	}
	lw.emitted = map[*ir.Value]bool{}
	operand := lw.operand
	for _, n := range g.Nodes {
		switch lw.kind[n] {
		case lowerPoly:
			x := n.Inputs[0]
			in, err := operand(x)
			if err != nil {
				return err
			}
			p := &ckksir.Poly{Func: n.Attrs.String("func", ""), A: n.Attrs.Float("a", -1), B: n.Attrs.Float("b", 1),
				Coeffs: append([]float64(nil), n.Attrs.Floats("coeffs", nil)...), MaxErr: n.Attrs.Float("max_err", 0)}
			if m := lw.maps[x]; m != nil && m.fold == n {
				p.A, p.B = -1, 1
			}
			out := lw.newValue(n.Outputs[0], lw.prog.Values[in].Layout)
			lw.settle(n.Outputs[0], lw.prog.Values[in].Layout)
			lw.vid[n.Outputs[0]] = out
			lw.prog.Instrs = append(lw.prog.Instrs, ckksir.Instr{Op: ckksir.OpPoly, Out: out, In: []int{in}, Poly: p, Layer: n.Name})
		case lowerMul:
			a, err := operand(n.Inputs[0])
			if err != nil {
				return err
			}
			b, err := operand(n.Inputs[1])
			if err != nil {
				return err
			}
			if la, lb := lw.prog.Values[a].Layout, lw.prog.Values[b].Layout; !la.Equal(lb) {
				return fmt.Errorf("lowering %q: node %q multiplies values in different slot layouts %v and %v", g.Name, n.Name, la, lb)
			}
			out := lw.newValue(n.Outputs[0], lw.prog.Values[a].Layout)
			lw.settle(n.Outputs[0], lw.prog.Values[a].Layout)
			lw.vid[n.Outputs[0]] = out
			lw.prog.Instrs = append(lw.prog.Instrs, ckksir.Instr{Op: ckksir.OpMul, Out: out, In: []int{a, b}, Layer: n.Name})
			lw.offScale[out] = true
		}
	}
	for _, o := range g.Outputs {
		id, err := operand(o)
		if err != nil {
			return err
		}
		lw.prog.Outputs = append(lw.prog.Outputs, ckksir.IO{Name: o.Name, Value: id})
	}
	lw.finalize()
	return nil
}

// operand returns the program value holding v, emitting its map (and those
// of the maps it reads) first when v is a needed value not emitted yet.
func (lw *lowerer) operand(v *ir.Value) (int, error) {
	if m := lw.maps[v]; m != nil && !lw.emitted[v] {
		lw.emitted[v] = true
		if err := lw.emitMap(m); err != nil {
			return 0, err
		}
	}
	id, ok := lw.vid[v]
	if !ok {
		return 0, fmt.Errorf("lowering %q: value %q is not computed under encryption", lw.g.Name, v.Name)
	}
	return id, nil
}

// emitMap emits the instructions computing one needed value: OpAddConst or
// a chain of OpAdd (then OpAddConst for a bias) when every matrix is the
// identity between inputs in one same layout (and, for OpAdd, no input is a
// product, whose scale is not the default), else one OpLinear whose output
// layout chooseLayout picks.
func (lw *lowerer) emitMap(m *lowerMap) error {
	if lw.opts.Packing != ckksir.PackFeature {
		var err error
		if m, err = lw.resolveCuts(m); err != nil {
			return err
		}
	}
	shape := lw.layoutShape(m.out.Shape)
	layer := lowerLayerName(m.nodes)
	ins := make([]int, len(m.ins))
	inLays := make([]ckksir.Layout, len(m.ins))
	for i, x := range m.ins {
		id, err := lw.operand(x)
		if err != nil {
			return err
		}
		ins[i] = id
		inLays[i] = lw.prog.Values[id].Layout
	}
	hasBias := false
	for _, b := range m.bias {
		hasBias = hasBias || b != 0
	}
	identity := true
	for i, x := range m.ins {
		identity = identity && lowerIsIdentity(m.mats[i], x.Shape.Size(), m.out.Shape.Size()) && inLays[i].SameSlots(inLays[0])
		// Adding ciphertexts of different scales errs by their relative
		// gap; a linear transformation rescales each input exactly.
		identity = identity && (len(m.ins) == 1 || !lw.offScale[ins[i]])
	}
	if identity && lw.contiguous[m.out] && !inLays[0].Contiguous() {
		identity = false
	}
	want, steered := lw.sharedLayout(m.out)
	if identity && steered && !inLays[0].SameSlots(want) {
		identity = false
	}
	var out int
	switch {
	case identity:
		lay := inLays[0]
		lay.Shape = shape.Clone()
		acc := ins[0]
		for i := 1; i < len(ins); i++ {
			t := lw.newValue(nil, lay)
			if i == len(ins)-1 && !hasBias {
				lw.vals[t].tensor = m.out
			}
			lw.prog.Instrs = append(lw.prog.Instrs, ckksir.Instr{Op: ckksir.OpAdd, Out: t, In: []int{acc, ins[i]}, Layer: layer})
			acc = t
		}
		out = acc
		if len(ins) == 1 || hasBias {
			out = lw.newValue(m.out, lay)
			lw.pending[len(lw.prog.Instrs)] = &lowerPending{bias: m.bias}
			lw.prog.Instrs = append(lw.prog.Instrs, ckksir.Instr{Op: ckksir.OpAddConst, Out: out, In: []int{acc}, Layer: layer})
			lw.offScale[out] = lw.offScale[acc]
		}
	default:
		lay := ckksir.Layout{Shape: shape.Clone()}
		switch {
		case steered:
			lay = want
			lay.Shape = shape.Clone()
		case lw.opts.Packing != ckksir.PackFeature && !lw.contiguous[m.out]:
			lay = lw.chooseLayout(m.mats, inLays, shape)
		}
		out = lw.newValue(m.out, lay)
		lw.pending[len(lw.prog.Instrs)] = &lowerPending{mats: m.mats, bias: m.bias}
		lw.prog.Instrs = append(lw.prog.Instrs, ckksir.Instr{Op: ckksir.OpLinear, Out: out, In: ins, Layer: layer})
	}
	lw.settle(m.out, lw.prog.Values[out].Layout)
	if m.fold != nil {
		a, b := m.fold.Attrs.Float("a", -1), m.fold.Attrs.Float("b", 1)
		lw.vals[out].alpha, lw.vals[out].beta = 2/(b-a), -(a+b)/(b-a)
	}
	lw.vid[m.out] = out
	return nil
}

// lowerPending is a linear or constant-add instruction's content in tensor
// coordinates, turned into block vectors once the block size is known.
type lowerPending struct {
	mats [][]lowerEntry
	bias []float64
}

// finalize fixes the block size (the largest layout span, rounded up to a
// power of two) and writes the matrices and bias vectors of the pending
// instructions in block coordinates.
func (lw *lowerer) finalize() {
	p := lw.prog
	if lw.opts.Packing != ckksir.PackFeature {
		span := 1
		for _, v := range p.Values {
			span = max(span, v.Layout.Span())
		}
		for lw.blockSize < span {
			lw.blockSize *= 2
		}
		p.BlockSize = lw.blockSize
	}
	for i, pd := range lw.pending {
		ins := &p.Instrs[i]
		out := p.Values[ins.Out].Layout
		ins.Bias = lw.blockVector(pd.bias, out)
		if pd.mats == nil {
			continue
		}
		if lw.opts.Packing == ckksir.PackFeature {
			ins.Dense = make([]*ckksir.DenseMatrix, len(pd.mats))
			for k, entries := range pd.mats {
				ins.Dense[k] = lowerDense(entries, out.Size(), p.Values[ins.In[k]].Layout.Size())
			}
			continue
		}
		ins.Matrices = make([]*ckksir.Matrix, len(pd.mats))
		for k, entries := range pd.mats {
			ins.Matrices[k] = lw.blockMatrix(entries, p.Values[ins.In[k]].Layout, out)
		}
	}
	lw.pending = nil
}

// lowerIsIdentity reports whether entries are the identity from n inputs to
// m outputs.
func lowerIsIdentity(entries []lowerEntry, n, m int) bool {
	if n != m || len(entries) != n {
		return false
	}
	for _, e := range entries {
		if e.r != e.c || e.v != 1 {
			return false
		}
	}
	return true
}

// blockVector places v (one value per tensor element) in the slots of
// layout lay within a block; nil when v is all zeros. In feature packing it
// is v itself.
func (lw *lowerer) blockVector(v []float64, lay ckksir.Layout) []float64 {
	zero := true
	for _, x := range v {
		zero = zero && x == 0
	}
	if zero {
		return nil
	}
	if lw.opts.Packing == ckksir.PackFeature {
		return append([]float64(nil), v...)
	}
	out := make([]float64, lw.blockSize)
	for k, x := range v {
		out[lay.Slot(k)] = x
	}
	return out
}

// lowerDense turns matrix entries into a dense rows x cols matrix (feature
// packing).
func lowerDense(entries []lowerEntry, rows, cols int) *ckksir.DenseMatrix {
	m := &ckksir.DenseMatrix{Rows: rows, Cols: cols, Data: make([]float64, rows*cols)}
	for _, e := range entries {
		m.Data[e.r*cols+e.c] += e.v
	}
	return m
}

// blockMatrix turns matrix entries between the layouts in and out into
// block diagonals: A[r][c] goes to diagonal in.Slot(c) - out.Slot(r) at
// position out.Slot(r).
func (lw *lowerer) blockMatrix(entries []lowerEntry, in, out ckksir.Layout) *ckksir.Matrix {
	dense := map[int][]float64{}
	for _, e := range entries {
		j := out.Slot(e.r)
		d := in.Slot(e.c) - j
		diag := dense[d]
		if diag == nil {
			diag = make([]float64, lw.blockSize)
			dense[d] = diag
		}
		diag[j] = e.v
	}
	return ckksir.NewMatrix(dense)
}

// lowerCutOps are the affine ops whose output a following dense layer reads
// from a materialized value rather than through one fused matrix: their
// output may sit scattered (pooled, summed or sliced from a strided layout),
// and a dense layer fused with them would need a diagonal per input slot,
// while the value itself costs a few diagonals and a level.
var lowerCutOps = map[string]bool{"Add": true, "Sub": true, "Sum": true, "AveragePool": true, "GlobalAveragePool": true,
	"ReduceMean": true, "ReduceSum": true, "Slice": true, "Concat": true, "Pad": true}

// lowerCutBeforeCopy returns the value that a Gather n (the copies of a
// skewed product's operand, transformer_skew.go) reads, through reshapes
// and transposes, when a dense layer computes it (Dense, Gemm, MatMul, or
// an Add of a bias to one): the projection and the copies are worth
// separate maps when the fused one has many more diagonals (resolveCuts
// decides). Else nil.
func lowerCutBeforeCopy(n *ir.Node, kind map[*ir.Node]lowerKind) *ir.Value {
	if kind[n] != lowerAffine || n.Op != "Gather" || len(n.Inputs) == 0 || n.Inputs[0] == nil || n.Inputs[0].IsConst() {
		return nil
	}
	v := n.Inputs[0]
	for v.Producer != nil && kind[v.Producer] == lowerAffine && (lowerReshapeOps[v.Producer.Op] || v.Producer.Op == "Transpose") {
		v = v.Producer.Inputs[0]
	}
	p := v.Producer
	if p == nil || kind[p] != lowerAffine {
		return nil
	}
	if p.Op == "Add" {
		for _, in := range p.Inputs {
			if in != nil && !in.IsConst() && in.Producer != nil && lowerDenseOps[in.Producer.Op] {
				return v
			}
		}
		return nil
	}
	if !lowerDenseOps[p.Op] {
		return nil
	}
	return v
}

// lowerDenseOps are the dense layers (with a constant weight operand when
// affine).
var lowerDenseOps = map[string]bool{"Dense": true, "Gemm": true, "MatMul": true}

// lowerReshapeOps only reinterpret the shape of their input.
var lowerReshapeOps = map[string]bool{"Flatten": true, "Reshape": true, "Squeeze": true, "Unsqueeze": true, "Identity": true}

// lowerCutBefore returns the value that a dense layer n (Dense, Gemm or
// MatMul with a constant operand) reads, through reshapes, when it is the
// output of a lowerCutOps node; else nil.
func lowerCutBefore(n *ir.Node, kind map[*ir.Node]lowerKind) *ir.Value {
	if kind[n] != lowerAffine || !lowerDenseOps[n.Op] {
		return nil
	}
	var v *ir.Value
	for _, in := range n.Inputs {
		if in != nil && !in.IsConst() {
			v = in
			break
		}
	}
	for v != nil && v.Producer != nil && kind[v.Producer] == lowerAffine && lowerReshapeOps[v.Producer.Op] {
		v = v.Producer.Inputs[0]
	}
	if v == nil || v.Producer == nil || kind[v.Producer] != lowerAffine || !lowerCutOps[v.Producer.Op] {
		return nil
	}
	return v
}

// lowerCost is the number of levels an instruction consumes.
func lowerCost(ins *ckksir.Instr) int {
	switch ins.Op {
	case ckksir.OpLinear, ckksir.OpMul, ckksir.OpMulConst:
		return 1
	case ckksir.OpPoly:
		return ins.Poly.Depth()
	}
	return 0
}

// assignLevels computes every value's depth, chooses the parameters and
// turns depths into levels.
func (lw *lowerer) assignLevels() error {
	p := lw.prog
	depth := 0
	for _, ins := range p.Instrs {
		d := 0
		for _, a := range ins.In {
			d = max(d, lw.vals[a].depth)
		}
		d += lowerCost(&ins)
		lw.vals[ins.Out].depth = d
		depth = max(depth, d)
	}
	params, err := ChooseParams(depth, lw.blockSize, lw.opts)
	if err != nil {
		return fmt.Errorf("lowering %q: %w", lw.g.Name, err)
	}
	p.Params = params
	p.Batch = params.Slots() / lw.blockSize
	for i := range p.Values {
		p.Values[i].Level = params.MaxLevel() - lw.vals[i].depth
	}
	return nil
}

// magnitudes returns, per program value and slot of its layout, the
// largest magnitude the slot takes: from a plaintext run over opts.Calib
// (widened by lowerCalibMargin) when set, else propagated from the input
// bound through the matrices, clipped to the Poly intervals.
func (lw *lowerer) magnitudes() ([][]float64, error) {
	p := lw.prog
	mags := make([][]float64, len(p.Values))
	if lw.opts.Calib != nil || lw.opts.CalibInputs != nil {
		calib := lw.opts.CalibInputs
		if calib == nil {
			calib = map[string]*ir.Tensor{lw.g.Inputs[0].Name: lw.opts.Calib}
			if len(lw.g.Inputs) != 1 {
				return nil, fmt.Errorf("lowering %q: calibration samples need a graph with one input, not %d", lw.g.Name, len(lw.g.Inputs))
			}
		}
		lo, hi, err := lowerCalibrate(lw.g, calib, lw.opts.WholeTensor)
		if err != nil {
			return nil, err
		}
		lw.calLo, lw.calHi = lo, hi
		for i, v := range lw.vals {
			if v.tensor == nil {
				continue
			}
			l, h := lo[v.tensor], hi[v.tensor]
			if len(l) != p.Values[i].Layout.Size() {
				return nil, fmt.Errorf("lowering %q: calibration did not reach %q", lw.g.Name, v.tensor.Name)
			}
			m := make([]float64, len(l))
			for j := range m {
				m[j] = lowerCalibMargin * max(math.Abs(v.alpha*l[j]+v.beta), math.Abs(v.alpha*h[j]+v.beta))
			}
			mags[i] = m
		}
	}
	for _, in := range p.Inputs {
		if mags[in.Value] == nil {
			mags[in.Value] = lowerFill(p.Values[in.Value].Layout.Size(), lw.opts.InputBound)
		}
	}
	interval := map[int]float64{}
	for _, ins := range p.Instrs {
		if ins.Op == ckksir.OpPoly {
			interval[ins.In[0]] = max(interval[ins.In[0]], math.Abs(ins.Poly.A), math.Abs(ins.Poly.B))
		}
	}
	for _, ins := range p.Instrs {
		if mags[ins.Out] != nil {
			continue
		}
		lay := p.Values[ins.Out].Layout
		m := make([]float64, lay.Size())
		bias := func(vec []float64) {
			for j := range m {
				if vec != nil {
					m[j] += math.Abs(vec[lay.Slot(j)])
				}
			}
		}
		switch ins.Op {
		case ckksir.OpLinear:
			for i := range ins.In {
				a := ckksLinearEntries(p, &ins, i)
				x := mags[ins.In[i]]
				for k, v := range a.v {
					m[a.r[k]] += math.Abs(v) * x[a.c[k]]
				}
			}
			bias(ins.Bias)
		case ckksir.OpPoly:
			_, top := ckksPolyLipschitz(ins.Poly)
			m = lowerFill(len(m), top)
		case ckksir.OpMul, ckksir.OpAdd:
			x, y := mags[ins.In[0]], mags[ins.In[1]]
			for j := range m {
				if ins.Op == ckksir.OpMul {
					m[j] = x[j] * y[j]
				} else {
					m[j] = x[j] + y[j]
				}
			}
		case ckksir.OpAddConst:
			copy(m, mags[ins.In[0]])
			bias(ins.Bias)
		}
		if r, ok := interval[ins.Out]; ok {
			for j := range m {
				m[j] = min(m[j], r)
			}
		}
		mags[ins.Out] = m
	}
	return mags, nil
}

// ranges returns the calibrated range of every slot of every program value
// that holds a calibrated tensor (with its folded change of variable), nil
// for the others and without calibration.
func (lw *lowerer) ranges() (lo, hi [][]float64) {
	if lw.calLo == nil {
		return nil, nil
	}
	lo, hi = make([][]float64, len(lw.prog.Values)), make([][]float64, len(lw.prog.Values))
	for i, v := range lw.vals {
		l, h := lw.calLo[v.tensor], lw.calHi[v.tensor]
		if v.tensor == nil || len(l) != lw.prog.Values[i].Layout.Size() {
			continue
		}
		lo[i], hi[i] = make([]float64, len(l)), make([]float64, len(l))
		for j := range l {
			a, b := v.alpha*l[j]+v.beta, v.alpha*h[j]+v.beta
			lo[i][j], hi[i][j] = min(a, b), max(a, b)
		}
	}
	return lo, hi
}

// refSamples returns up to ckksRefSamples calibration samples, spread over
// the calibration set, of every program input (with its folded change of
// variable), each a vector over the input's layout: the reference points of
// the error bounds (see assignErrorBounds). Nil without calibration.
func (lw *lowerer) refSamples() map[string][][]float64 {
	calib := lw.opts.CalibInputs
	if calib == nil {
		if lw.opts.Calib == nil || len(lw.g.Inputs) != 1 {
			return nil
		}
		calib = map[string]*ir.Tensor{lw.g.Inputs[0].Name: lw.opts.Calib}
	}
	refs := map[string][][]float64{}
	for _, in := range lw.prog.Inputs {
		c, v := calib[in.Name], lw.vals[in.Value]
		size := lw.prog.Values[in.Value].Layout.Size()
		if c == nil || len(c.Shape) == 0 || c.Shape[0] < 1 || len(c.Float) != c.Shape[0]*size {
			return nil
		}
		n := c.Shape[0]
		for k := range min(n, ckksRefSamples) {
			s := k * n / min(n, ckksRefSamples)
			x := make([]float64, size)
			for j := range x {
				x[j] = v.alpha*c.Float[s*size+j] + v.beta
			}
			refs[in.Name] = append(refs[in.Name], x)
		}
	}
	return refs
}

// lowerFill returns n copies of x.
func lowerFill(n int, x float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = x
	}
	return v
}

// lowerCalibMargin widens calibrated magnitudes for samples beyond the
// calibration set.
const lowerCalibMargin = 1.25

// lowerMaxAbs is the largest |v[i]|, 0 for nil.
func lowerMaxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

// lowerCalibrate runs g on every sample of calib (per graph input name)
// and returns the smallest and largest value of every element of every
// non-constant value. Samples are stacked along each tensor's leading axis:
// each shaped like the input without its batch axis of 1, or, with whole
// (no batch axis), like the whole input.
func lowerCalibrate(g *ir.Graph, calib map[string]*ir.Tensor, whole bool) (lo, hi map[*ir.Value][]float64, err error) {
	samples := -1
	for _, x := range g.Inputs {
		c, ok := calib[x.Name]
		if !ok {
			return nil, nil, fmt.Errorf("lowering %q: no calibration samples for input %q", g.Name, x.Name)
		}
		sampleShape := x.Shape
		if !whole {
			sampleShape = x.Shape[1:]
		}
		if len(c.Shape) != len(sampleShape)+1 || !c.Shape[1:].Equal(sampleShape) || c.Shape[0] < 1 || !c.DType.IsFloat() {
			return nil, nil, fmt.Errorf("lowering %q: calibration samples of shape %v %s do not match input %q %v", g.Name, c.Shape, c.DType, x.Name, x.Shape)
		}
		if samples >= 0 && c.Shape[0] != samples {
			return nil, nil, fmt.Errorf("lowering %q: %d calibration samples for input %q, %d for the first input", g.Name, c.Shape[0], x.Name, samples)
		}
		samples = c.Shape[0]
	}
	lo, hi = map[*ir.Value][]float64{}, map[*ir.Value][]float64{}
	note := func(v *ir.Value, t *ir.Tensor) {
		if v == nil || t == nil || !t.DType.IsFloat() {
			return
		}
		l, h := lo[v], hi[v]
		if l == nil {
			l, h = lowerFill(len(t.Float), math.Inf(1)), lowerFill(len(t.Float), math.Inf(-1))
			lo[v], hi[v] = l, h
		}
		for i, f := range t.Float {
			l[i], h[i] = min(l[i], f), max(h[i], f)
		}
	}
	opts := &plain.Options{Observe: func(n *ir.Node, outs []*ir.Tensor) {
		for i, o := range n.Outputs {
			if i < len(outs) {
				note(o, outs[i])
			}
		}
	}}
	for s := range max(samples, 0) {
		feeds := map[string]*ir.Tensor{}
		for _, x := range g.Inputs {
			per := x.Shape.Size()
			in := &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Float: calib[x.Name].Float[s*per : (s+1)*per]}
			note(x, in)
			feeds[x.Name] = in
		}
		if _, err := plain.Run(g, feeds, opts); err != nil {
			return nil, nil, fmt.Errorf("lowering %q: calibration sample %d: %w", g.Name, s, err)
		}
	}
	return lo, hi, nil
}
