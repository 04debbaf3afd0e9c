package passes

import (
	"errors"
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// MaxFoldElements bounds the constants that FoldConstants creates: a node
// whose result has more elements than this, and more than all its constant
// inputs together, is left in the graph (an Expand, Tile or ConstantOfShape
// of a small constant stays small that way).
var MaxFoldElements = 1 << 20

// FoldConstants evaluates, with the reference interpreter, every node whose
// inputs are all constants and turns its outputs into constants (Const set,
// Producer nil); the node is removed. A Shape node whose input has a static
// shape folds too, whatever computes that input, so the Shape, Gather,
// Unsqueeze, Concat, Reshape chains exporters emit for dynamic reshapes
// collapse to constant shapes. Folding repeats until nothing changes.
//
// Precondition: shapes are inferred (InferShapes), or Shape nodes do not
// fold. Nodes whose op has no interpreter kernel, or whose kernel rejects the
// attribute variant, are left alone; any other kernel error on constant
// inputs is returned, naming the node.
func FoldConstants(g *ir.Graph) error {
	for {
		folded := false
		kept := g.Nodes[:0]
		for _, n := range g.Nodes {
			outs, err := foldNode(g, n)
			if err != nil {
				return fmt.Errorf("fold constants: %w", err)
			}
			if outs == nil {
				kept = append(kept, n)
				continue
			}
			folded = true
			for i, o := range n.Outputs {
				if o == nil {
					continue
				}
				o.Const = outs[i]
				o.Producer = nil
				setShape(o, outs[i])
			}
		}
		for i := len(kept); i < len(g.Nodes); i++ {
			g.Nodes[i] = nil
		}
		g.Nodes = kept
		if !folded {
			return nil
		}
	}
}

// foldNode returns the constant outputs of n, or nil when n does not fold.
func foldNode(g *ir.Graph, n *ir.Node) ([]*ir.Tensor, error) {
	if n.Op == "Shape" && len(n.Inputs) == 1 && n.Inputs[0] != nil && n.Inputs[0].Shape.Known() {
		return []*ir.Tensor{shapeOf(n, g.Opset, n.Inputs[0].Shape)}, nil
	}
	args := make([]*ir.Tensor, len(n.Inputs))
	inSize := 0
	for i, in := range n.Inputs {
		if in == nil {
			continue
		}
		if !in.IsConst() {
			return nil, nil
		}
		args[i] = in.Const
		inSize += in.Const.Len()
	}
	if !plain.HasKernel(n.Op) {
		return nil, nil
	}
	// Skip a blow-up known in advance from the inferred shapes.
	for _, o := range n.Outputs {
		if o != nil && o.Shape.Known() && o.Shape.Size() > MaxFoldElements && o.Shape.Size() > inSize {
			return nil, nil
		}
	}
	outs, err := plain.EvalNode(n, g.Opset, args)
	if err != nil {
		var ue *ir.UnsupportedError
		if errors.As(err, &ue) {
			return nil, nil
		}
		return nil, err
	}
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		if i >= len(outs) || outs[i] == nil {
			return nil, fmt.Errorf("%v: kernel produced no output %d %q", n, i, o.Name)
		}
		if s := outs[i].Len(); s > MaxFoldElements && s > inSize {
			return nil, nil
		}
	}
	return outs, nil
}

// shapeOf is the Shape operator on a static shape, with the start and end
// attributes of opset 15.
func shapeOf(n *ir.Node, opset int64, s ir.Shape) *ir.Tensor {
	rank := int64(len(s))
	start, end := int64(0), rank
	if opset >= 15 {
		start, end = n.Attrs.Int("start", 0), n.Attrs.Int("end", rank)
	}
	clamp := func(i int64) int64 {
		if i < 0 {
			i += rank
		}
		return min(max(i, 0), rank)
	}
	start, end = clamp(start), clamp(end)
	dims := []int64{}
	for i := start; i < end; i++ {
		dims = append(dims, int64(s[i]))
	}
	return ir.NewInt(ir.Shape{len(dims)}, dims)
}
