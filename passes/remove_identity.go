package passes

import (
	"github.com/ciphercut/ciphercut/ir"
)

// RemoveIdentity removes Identity nodes and inference-mode Dropout nodes
// (training_mode absent or constant false), making their readers read the
// node's input directly. A Dropout mask output that is read becomes a
// constant all-true tensor (it needs a static shape, else the node stays).
//
// When the removed output is a graph output, the graph keeps its output
// name: a constant input becomes a constant of that name; a computed input
// (not itself a graph output) is renamed to the output's name; a graph input,
// or a value already output under another name, keeps its node.
func RemoveIdentity(g *ir.Graph) error {
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		if !removeCopy(g, n) {
			kept = append(kept, n)
		}
	}
	for i := len(kept); i < len(g.Nodes); i++ {
		g.Nodes[i] = nil
	}
	g.Nodes = kept
	return nil
}

// removeCopy rewires the readers of n's output when n is an inference copy,
// and reports whether n can go.
func removeCopy(g *ir.Graph, n *ir.Node) bool {
	if len(n.Inputs) == 0 || n.Inputs[0] == nil || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return false
	}
	var mask *ir.Value
	switch n.Op {
	case "Identity":
	case "Dropout":
		if t := n.Input(2); t != nil {
			if !t.IsConst() || t.Const.Len() != 1 || t.Const.Floats()[0] != 0 {
				return false
			}
		}
		if len(n.Outputs) > 1 && n.Outputs[1] != nil {
			mask = n.Outputs[1]
			if used(g, mask) && !n.Inputs[0].Shape.Known() {
				return false
			}
		}
	default:
		return false
	}
	x, y := n.Inputs[0], n.Outputs[0]
	if g.IsOutput(y) {
		switch {
		case x.IsConst():
			y.Const, y.Producer = x.Const, nil
			y.Shape, y.DType = x.Const.Shape.Clone(), x.Const.DType
		case x.Producer != nil && !g.IsOutput(x):
			x.Name = y.Name
			if y.DimNames != nil {
				x.DimNames = y.DimNames
			}
			g.ReplaceUses(y, x)
		default:
			return false
		}
	} else {
		g.ReplaceUses(y, x)
	}
	if mask != nil {
		s := n.Inputs[0].Shape
		if s.Known() {
			ones := make([]int64, s.Size())
			for i := range ones {
				ones[i] = 1
			}
			mask.Const = &ir.Tensor{DType: ir.Bool, Shape: s.Clone(), Int: ones}
			mask.Producer = nil
			setShape(mask, mask.Const)
		}
	}
	return true
}

// used reports whether any node or graph output reads v.
func used(g *ir.Graph, v *ir.Value) bool {
	if g.IsOutput(v) {
		return true
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == v {
				return true
			}
		}
	}
	return false
}
