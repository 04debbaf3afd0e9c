package ir

import (
	"fmt"
	"sort"
)

// Value is an edge of the graph: a tensor produced by one node (or a graph
// input, or a constant) and consumed by any number of nodes.
type Value struct {
	Name  string
	DType DType
	// Shape is the static shape; nil when even the rank is unknown.
	Shape Shape
	// DimNames holds symbolic dimension names (ONNX dim_param) per axis, ""
	// for static axes; nil when there are none.
	DimNames []string
	// Const holds the data of constants and initializers; nil otherwise.
	Const *Tensor
	// Producer is the node computing this value; nil for inputs and constants.
	Producer *Node
}

// IsConst reports whether v carries constant data.
func (v *Value) IsConst() bool { return v != nil && v.Const != nil }

// Node is one operator application.
type Node struct {
	Name string
	// Op is the operator type, e.g. "Conv". ONNX-standard ops keep their ONNX
	// names; ops that canonicalization introduces (see Ops) have their own.
	Op string
	// Inputs in operator order; an omitted optional input is nil.
	Inputs  []*Value
	Outputs []*Value
	Attrs   Attrs
}

// Input returns the i-th input, or nil when absent or omitted.
func (n *Node) Input(i int) *Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

// String names the node for error messages: `node "name" (Op)`.
func (n *Node) String() string { return fmt.Sprintf("node %q (%s)", n.Name, n.Op) }

// Graph is a model's computation: its inputs, outputs and nodes. Nodes are
// kept in a topological order (see Sort).
type Graph struct {
	Name string
	// Opset is the version of the default ONNX operator set the graph uses.
	Opset   int64
	Inputs  []*Value
	Outputs []*Value
	Nodes   []*Node
}

// Consumers maps each value to the nodes reading it, in node order.
func (g *Graph) Consumers() map[*Value][]*Node {
	m := make(map[*Value][]*Node)
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != nil {
				m[in] = append(m[in], n)
			}
		}
	}
	return m
}

// IsOutput reports whether v is a graph output.
func (g *Graph) IsOutput(v *Value) bool {
	for _, o := range g.Outputs {
		if o == v {
			return true
		}
	}
	return false
}

// Constants returns every constant value the nodes read, each once, sorted by
// name.
func (g *Graph) Constants() []*Value {
	seen := map[*Value]bool{}
	var out []*Value
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in.IsConst() && !seen[in] {
				seen[in] = true
				out = append(out, in)
			}
		}
	}
	for _, o := range g.Outputs {
		if o.IsConst() && !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ReplaceUses makes every node input and graph output that reads old read
// new instead.
func (g *Graph) ReplaceUses(old, new *Value) {
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if in == old {
				n.Inputs[i] = new
			}
		}
	}
	for i, o := range g.Outputs {
		if o == old {
			g.Outputs[i] = new
		}
	}
}

// Values returns every value of the graph (inputs, constants, node outputs),
// each once, in a deterministic order.
func (g *Graph) Values() []*Value {
	seen := map[*Value]bool{}
	var out []*Value
	add := func(v *Value) {
		if v != nil && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, v := range g.Inputs {
		add(v)
	}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			add(v)
		}
		for _, v := range n.Outputs {
			add(v)
		}
	}
	for _, v := range g.Outputs {
		add(v)
	}
	return out
}
