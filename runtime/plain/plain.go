// Package plain is ciphercut's plaintext reference interpreter: float64
// execution of the tensor IR with ONNX semantics. It is the oracle that
// encrypted results are checked against, the engine of range calibration and
// of constant folding, and what runs the data owner's plaintext layers.
package plain

import (
	"errors"
	"fmt"
	"sort"

	"github.com/ciphercut/ciphercut/ir"
)

// Kernel computes a node's outputs from its input tensors; in[i] is nil for
// an omitted optional input. opset is the graph's default-domain opset, for
// ops whose semantics changed across versions. Kernels never modify their
// inputs and return an *ir.UnsupportedError for attribute variants they do
// not implement.
type Kernel func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error)

var kernels = map[string]Kernel{}

// register installs the kernel for op; called from init functions.
func register(op string, k Kernel) {
	if _, dup := kernels[op]; dup {
		panic("plain: kernel registered twice: " + op)
	}
	kernels[op] = k
}

// HasKernel reports whether the interpreter executes op.
func HasKernel(op string) bool { _, ok := kernels[op]; return ok }

// KernelOps lists the ops with a kernel, sorted.
func KernelOps() []string {
	ops := make([]string, 0, len(kernels))
	for op := range kernels {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// EvalNode runs one node on the given inputs. Errors name the node.
func EvalNode(n *ir.Node, opset int64, in []*ir.Tensor) (outs []*ir.Tensor, err error) {
	k, ok := kernels[n.Op]
	if !ok {
		return nil, &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: opset, Reason: "no interpreter kernel"}
	}
	defer func() {
		// A kernel bug must not crash the caller: report it as an error.
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("%v: internal error: %v", n, r)
		}
	}()
	outs, err = k(n, opset, in)
	if err != nil {
		var ue *ir.UnsupportedError
		if errors.As(err, &ue) {
			if ue.Node == "" {
				ue.Node, ue.Op, ue.Opset = n.Name, n.Op, opset
			}
			return nil, ue
		}
		return nil, fmt.Errorf("%v: %w", n, err)
	}
	return outs, nil
}

// Options tune a Run.
type Options struct {
	// Observe, when set, is called after each node with its outputs (for
	// range calibration and debugging); it must not modify them.
	Observe func(n *ir.Node, outs []*ir.Tensor)
}

// Run executes g on the given inputs (by graph input name) and returns the
// graph outputs by name. Inputs may carry any leading batch size where the
// model's first dimension is symbolic.
func Run(g *ir.Graph, feeds map[string]*ir.Tensor, opts *Options) (map[string]*ir.Tensor, error) {
	env := make(map[*ir.Value]*ir.Tensor, len(g.Nodes)+len(g.Inputs))
	for _, in := range g.Inputs {
		t, ok := feeds[in.Name]
		if !ok {
			return nil, fmt.Errorf("missing input %q (model expects %s%v)", in.Name, in.DType, in.Shape)
		}
		if err := CheckInput(in, t); err != nil {
			return nil, err
		}
		env[in] = t
	}
	// Count remaining uses so intermediates can be dropped early.
	uses := map[*ir.Value]int{}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil {
				uses[v]++
			}
		}
	}
	for _, o := range g.Outputs {
		uses[o]++
	}
	args := make([]*ir.Tensor, 0, 8)
	for _, n := range g.Nodes {
		args = args[:0]
		for i, v := range n.Inputs {
			if v == nil {
				args = append(args, nil)
				continue
			}
			if v.IsConst() {
				args = append(args, v.Const)
				continue
			}
			t, ok := env[v]
			if !ok {
				return nil, fmt.Errorf("%v: input %d %q not computed", n, i, v.Name)
			}
			args = append(args, t)
		}
		outs, err := EvalNode(n, g.Opset, args)
		if err != nil {
			return nil, err
		}
		if len(outs) < countOutputs(n) {
			return nil, fmt.Errorf("%v: kernel produced %d outputs, want %d", n, len(outs), countOutputs(n))
		}
		for i, o := range n.Outputs {
			if o != nil {
				env[o] = outs[i]
			}
		}
		if opts != nil && opts.Observe != nil {
			opts.Observe(n, outs)
		}
		for _, v := range n.Inputs {
			if v != nil && !v.IsConst() {
				if uses[v]--; uses[v] == 0 {
					delete(env, v)
				}
			}
		}
	}
	result := make(map[string]*ir.Tensor, len(g.Outputs))
	for _, o := range g.Outputs {
		if o.IsConst() {
			result[o.Name] = o.Const
			continue
		}
		t, ok := env[o]
		if !ok {
			return nil, fmt.Errorf("graph output %q not computed", o.Name)
		}
		result[o.Name] = t
	}
	return result, nil
}

func countOutputs(n *ir.Node) int {
	c := 0
	for i, o := range n.Outputs {
		if o != nil {
			c = i + 1
		}
	}
	return c
}

// CheckInput verifies that t fits the graph input v: same rank, equal static
// dimensions, compatible element type.
func CheckInput(v *ir.Value, t *ir.Tensor) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("input %q: %v", v.Name, err)
	}
	if v.DType.IsFloat() != t.DType.IsFloat() {
		return fmt.Errorf("input %q: got %s data, model expects %s", v.Name, t.DType, v.DType)
	}
	if v.Shape == nil {
		return nil
	}
	if len(v.Shape) != len(t.Shape) {
		return fmt.Errorf("input %q: got shape %v, model expects %v", v.Name, t.Shape, v.Shape)
	}
	for i, d := range v.Shape {
		if d >= 0 && d != t.Shape[i] {
			return fmt.Errorf("input %q: got shape %v, model expects %v", v.Name, t.Shape, v.Shape)
		}
	}
	return nil
}
