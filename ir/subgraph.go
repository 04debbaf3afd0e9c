package ir

import (
	"fmt"
	"strings"
)

// Subgraph returns a new graph computing the values named outputs from the
// values named inputs: the nodes of g the outputs depend on, stopping at the
// inputs, which become graph inputs (without producers). Constants are kept.
// The new graph shares constant data with g but no Node or Value objects, so
// g is not modified. A non-constant value the outputs need that is neither
// produced by a kept node nor among the inputs is an error naming it: the
// given inputs do not separate the outputs from the rest of g.
func (g *Graph) Subgraph(name string, inputs, outputs []string) (*Graph, error) {
	c := g.Clone()
	c.Name = name
	byName := map[string]*Value{}
	for _, v := range c.Values() {
		byName[v.Name] = v
	}
	lookup := func(kind, n string) (*Value, error) {
		v, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("subgraph %q of %q: %s %q is not a value of the graph", name, g.Name, kind, n)
		}
		return v, nil
	}
	c.Inputs, c.Outputs = nil, nil
	isInput := map[*Value]bool{}
	for _, n := range inputs {
		v, err := lookup("input", n)
		if err != nil {
			return nil, err
		}
		if v.IsConst() {
			return nil, fmt.Errorf("subgraph %q of %q: input %q is a constant", name, g.Name, n)
		}
		if !isInput[v] {
			isInput[v] = true
			v.Producer = nil
			c.Inputs = append(c.Inputs, v)
		}
	}
	keep := map[*Node]bool{}
	var missing []string
	var visit func(v *Value)
	seen := map[*Value]bool{}
	visit = func(v *Value) {
		if v == nil || seen[v] {
			return
		}
		seen[v] = true
		switch {
		case isInput[v] || v.IsConst():
			return
		case v.Producer == nil:
			missing = append(missing, v.Name)
			return
		}
		if keep[v.Producer] {
			return
		}
		keep[v.Producer] = true
		for _, in := range v.Producer.Inputs {
			visit(in)
		}
	}
	for _, n := range outputs {
		v, err := lookup("output", n)
		if err != nil {
			return nil, err
		}
		c.Outputs = append(c.Outputs, v)
		visit(v)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("subgraph %q of %q: the inputs %v do not separate the outputs: %s needed but not given",
			name, g.Name, inputs, strings.Join(missing, ", "))
	}
	nodes := c.Nodes[:0]
	for _, n := range c.Nodes {
		if keep[n] {
			nodes = append(nodes, n)
		}
	}
	c.Nodes = nodes
	return c, nil
}
