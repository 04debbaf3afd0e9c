package passes

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// calibPolyOps are the ops that CKKS evaluates as polynomials: the activations
// ApproximateActivations replaces, and Poly itself.
var calibPolyOps = map[string]bool{
	"Relu": true, "LeakyRelu": true, "Abs": true, "Gelu": true, "SiLU": true,
	"Sigmoid": true, "Tanh": true, "Softplus": true, "Elu": true, "Selu": true,
	"HardSigmoid": true, "Exp": true, "Poly": true,
}

// NeedsPolynomial reports whether op is evaluated under encryption as a
// polynomial on a calibrated interval: Relu, LeakyRelu, Abs, Gelu, SiLU,
// Sigmoid, Tanh, Softplus, Elu, Selu, HardSigmoid, Exp (the softmaxes
// DecomposeTransformer leaves), and Poly itself.
func NeedsPolynomial(op string) bool { return calibPolyOps[op] }

// Range is the interval [Min, Max] a value was observed in.
type Range struct{ Min, Max float64 }

// Ranges maps the name of a node that needs a polynomial to the range of
// its (first) input.
type Ranges map[string]Range

// Calibrate runs the reference interpreter on every sample (the rows of
// samples along its leading axis; g must have one input) and returns, for
// each node that needs a polynomial (see NeedsPolynomial), the smallest and
// largest value its input took. NaNs are ignored; a node whose input never
// held a number is absent. Samples run in parallel, as many at a time as
// the graph input's static leading dimension allows (one for canonical
// graphs).
func Calibrate(g *ir.Graph, samples *ir.Tensor) (Ranges, error) {
	watch := map[*ir.Value][]*ir.Node{} // value -> polynomial nodes reading it
	for _, n := range g.Nodes {
		if NeedsPolynomial(n.Op) && n.Input(0) != nil {
			watch[n.Input(0)] = append(watch[n.Input(0)], n)
		}
	}
	var mu sync.Mutex
	ranges := Ranges{}
	record := func(local Ranges) {
		mu.Lock()
		defer mu.Unlock()
		for name, r := range local {
			if old, ok := ranges[name]; ok {
				r = Range{min(old.Min, r.Min), max(old.Max, r.Max)}
			}
			ranges[name] = r
		}
	}
	observe := func(local Ranges, v *ir.Value, t *ir.Tensor) {
		nodes := watch[v]
		if len(nodes) == 0 || t == nil {
			return
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, x := range t.Floats() {
			if x < lo {
				lo = x
			}
			if x > hi {
				hi = x
			}
		}
		if lo > hi {
			return
		}
		for _, n := range nodes {
			r, ok := local[n.Name]
			if ok {
				r = Range{min(r.Min, lo), max(r.Max, hi)}
			} else {
				r = Range{lo, hi}
			}
			local[n.Name] = r
		}
	}
	err := calibForEachChunk(g, samples, func(first int, feeds map[string]*ir.Tensor) error {
		local := Ranges{}
		for _, in := range g.Inputs {
			observe(local, in, feeds[in.Name])
		}
		for _, n := range g.Nodes {
			for _, in := range n.Inputs {
				if in.IsConst() {
					observe(local, in, in.Const)
				}
			}
		}
		_, err := plain.Run(g, feeds, &plain.Options{Observe: func(n *ir.Node, outs []*ir.Tensor) {
			for i, o := range n.Outputs {
				if o != nil && i < len(outs) {
					observe(local, o, outs[i])
				}
			}
		}})
		if err != nil {
			return err
		}
		record(local)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ranges, nil
}

// RangeViolation reports a Poly node whose input left its interval [A, B]
// on one sample: Value is the input element farthest outside, Count the
// number of elements outside.
type RangeViolation struct {
	Node   string
	Sample int
	Value  float64
	A, B   float64
	Count  int
}

func (v RangeViolation) String() string {
	return fmt.Sprintf("node %q, sample %d: input %g outside [%g, %g] (%d elements)", v.Node, v.Sample, v.Value, v.A, v.B, v.Count)
}

// OutOfRange runs the (approximated) graph g on every sample and returns the
// Poly nodes whose input left their interval [a, b], one entry per node and
// sample, sorted by sample then node order. This is the plaintext debug run
// that detects the inputs on which an encrypted evaluation would be wrong: a
// polynomial is only accurate on its interval. With a static leading input
// dimension d > 1, samples run d at a time and Sample is the first of them.
func OutOfRange(g *ir.Graph, samples *ir.Tensor) ([]RangeViolation, error) {
	watch := map[*ir.Value][]*ir.Node{}
	order := map[string]int{}
	for i, n := range g.Nodes {
		if n.Op == "Poly" && n.Input(0) != nil {
			watch[n.Input(0)] = append(watch[n.Input(0)], n)
			order[n.Name] = i
		}
	}
	var mu sync.Mutex
	var out []RangeViolation
	check := func(first int, v *ir.Value, t *ir.Tensor) {
		for _, n := range watch[v] {
			a, b := n.Attrs.Float("a", -1), n.Attrs.Float("b", 1)
			viol := RangeViolation{Node: n.Name, Sample: first, A: a, B: b}
			worst := 0.0
			for _, x := range t.Floats() {
				d := 0.0
				switch {
				case x < a:
					d = a - x
				case x > b:
					d = x - b
				case math.IsNaN(x):
					d = math.Inf(1)
				default:
					continue
				}
				viol.Count++
				if d > worst || viol.Count == 1 {
					worst, viol.Value = d, x
				}
			}
			if viol.Count > 0 {
				mu.Lock()
				out = append(out, viol)
				mu.Unlock()
			}
		}
	}
	err := calibForEachChunk(g, samples, func(first int, feeds map[string]*ir.Tensor) error {
		for _, in := range g.Inputs {
			check(first, in, feeds[in.Name])
		}
		_, err := plain.Run(g, feeds, &plain.Options{Observe: func(n *ir.Node, outs []*ir.Tensor) {
			for i, o := range n.Outputs {
				if o != nil && i < len(outs) {
					check(first, o, outs[i])
				}
			}
		}})
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sample != out[j].Sample {
			return out[i].Sample < out[j].Sample
		}
		return order[out[i].Node] < order[out[j].Node]
	})
	return out, nil
}

// calibChunkSize is how many samples g runs at once: its input's static leading
// dimension, or 1 when that is symbolic.
func calibChunkSize(g *ir.Graph) int {
	if s := g.Inputs[0].Shape; len(s) > 0 && s[0] > 0 {
		return s[0]
	}
	return 1
}

// calibCheckSamples verifies that g has one input and that samples splits into
// whole chunks for it; it returns the sample count.
func calibCheckSamples(g *ir.Graph, samples *ir.Tensor) (int, error) {
	if len(g.Inputs) != 1 {
		return 0, fmt.Errorf("graph %q has %d inputs; calibration needs exactly one", g.Name, len(g.Inputs))
	}
	if samples == nil || len(samples.Shape) == 0 {
		return 0, fmt.Errorf("calibration samples need a leading sample axis")
	}
	if err := samples.Validate(); err != nil {
		return 0, fmt.Errorf("calibration samples: %v", err)
	}
	n := samples.Shape[0]
	if c := calibChunkSize(g); n%c != 0 {
		return 0, fmt.Errorf("%d samples do not split into batches of %d, the model's static batch size", n, c)
	}
	return n, nil
}

// calibForEachChunk calls fn on every chunk of samples (as the feeds of g, with
// the index of the chunk's first sample), in parallel on GOMAXPROCS
// goroutines. The first error stops the run and is returned.
func calibForEachChunk(g *ir.Graph, samples *ir.Tensor, fn func(first int, feeds map[string]*ir.Tensor) error) error {
	n, err := calibCheckSamples(g, samples)
	if err != nil {
		return err
	}
	c := calibChunkSize(g)
	return calibParallel(n/c, func(i int) error {
		feeds := map[string]*ir.Tensor{g.Inputs[0].Name: calibRows(samples, i*c, (i+1)*c)}
		if err := fn(i*c, feeds); err != nil {
			return fmt.Errorf("sample %d: %w", i*c, err)
		}
		return nil
	})
}

// calibParallel runs fn(0..n-1) on GOMAXPROCS goroutines; the first error
// stops the remaining calls and is returned.
func calibParallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// calibRows returns rows [i, j) of t along its leading axis, with the
// model input's dtype kept as t's.
func calibRows(t *ir.Tensor, i, j int) *ir.Tensor {
	per := 1
	for _, d := range t.Shape[1:] {
		per *= d
	}
	out := &ir.Tensor{DType: t.DType, Shape: append(ir.Shape{j - i}, t.Shape[1:]...)}
	if t.DType.IsFloat() {
		out.Float = t.Float[i*per : j*per : j*per]
	} else {
		out.Int = t.Int[i*per : j*per : j*per]
	}
	return out
}
