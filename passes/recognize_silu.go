package passes

import (
	"github.com/ciphercut/ciphercut/ir"
)

// RecognizeSiLU replaces Mul(x, Sigmoid(x)), in either operand order, by
// SiLU(x), which takes over the Mul's output. The Sigmoid's output must have
// no other reader and not be a graph output.
func RecognizeSiLU(g *ir.Graph) error {
	return rewrite(g, recognizeSiLU)
}

func recognizeSiLU(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, mul *ir.Node) (bool, error) {
	if mul.Op != "Mul" || len(mul.Inputs) != 2 || len(mul.Outputs) != 1 {
		return false, nil
	}
	for i, s := range mul.Inputs {
		sig := producedBy(s, "Sigmoid")
		if sig == nil || len(sig.Inputs) != 1 || sig.Inputs[0] != mul.Inputs[1-i] || soleUser(g, uses, s) != mul {
			continue
		}
		x, y := sig.Inputs[0], mul.Outputs[0]
		silu := &ir.Node{Name: nm.node(mul.Name + "_silu"), Op: "SiLU", Inputs: []*ir.Value{x}, Outputs: []*ir.Value{y}}
		y.Producer = silu
		replaceNodes(g, silu, sig, mul)
		return true, nil
	}
	return false, nil
}
