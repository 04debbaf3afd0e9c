package ir

import (
	"fmt"
	"io"
	"strings"
)

// ParamCount is the number of constant elements a node reads (its weights).
func (n *Node) ParamCount() int {
	c := 0
	for _, in := range n.Inputs {
		if in.IsConst() {
			c += in.Const.Len()
		}
	}
	return c
}

func valueRef(v *Value) string {
	if v == nil {
		return "_"
	}
	s := "%" + v.Name
	if v.IsConst() {
		s = "$" + v.Name
	}
	if v.Shape != nil {
		s += ":" + v.DType.String() + v.Shape.String()
	}
	return s
}

// Dump writes a readable listing of g: its inputs, one line per node (outputs,
// op, inputs with shapes, parameter count, attributes) and its outputs.
// Constants appear as $name, computed values as %name.
func Dump(w io.Writer, g *Graph) error {
	var b strings.Builder
	fmt.Fprintf(&b, "graph %q opset %d\n", g.Name, g.Opset)
	for _, in := range g.Inputs {
		fmt.Fprintf(&b, "  input  %s\n", valueRef(in))
	}
	total := 0
	for _, n := range g.Nodes {
		outs := make([]string, len(n.Outputs))
		for i, o := range n.Outputs {
			outs[i] = valueRef(o)
		}
		ins := make([]string, len(n.Inputs))
		for i, in := range n.Inputs {
			ins[i] = valueRef(in)
		}
		params := n.ParamCount()
		total += params
		fmt.Fprintf(&b, "  %s = %s(%s)", strings.Join(outs, ", "), n.Op, strings.Join(ins, ", "))
		if params > 0 {
			fmt.Fprintf(&b, " params=%d", params)
		}
		if s := n.Attrs.Summary(); s != "" {
			fmt.Fprintf(&b, " {%s}", s)
		}
		b.WriteString("\n")
	}
	for _, o := range g.Outputs {
		fmt.Fprintf(&b, "  output %s\n", valueRef(o))
	}
	fmt.Fprintf(&b, "  %d nodes, %d parameters\n", len(g.Nodes), total)
	_, err := io.WriteString(w, b.String())
	return err
}
