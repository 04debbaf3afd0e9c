package ir

// Clone returns a deep copy of g's structure: new Graph, Node and Value
// objects, so passes can rewrite the copy freely. Constant tensor data is
// shared, since passes replace constants rather than modify them.
func (g *Graph) Clone() *Graph {
	values := map[*Value]*Value{}
	var cv func(v *Value) *Value
	cv = func(v *Value) *Value {
		if v == nil {
			return nil
		}
		if c, ok := values[v]; ok {
			return c
		}
		c := &Value{Name: v.Name, DType: v.DType, Shape: v.Shape.Clone(), Const: v.Const}
		if v.DimNames != nil {
			c.DimNames = append([]string(nil), v.DimNames...)
		}
		values[v] = c
		return c
	}
	out := &Graph{Name: g.Name, Opset: g.Opset}
	for _, v := range g.Inputs {
		out.Inputs = append(out.Inputs, cv(v))
	}
	for _, n := range g.Nodes {
		c := &Node{Name: n.Name, Op: n.Op, Attrs: make(Attrs, len(n.Attrs))}
		for k, a := range n.Attrs {
			c.Attrs[k] = a
		}
		for _, v := range n.Inputs {
			c.Inputs = append(c.Inputs, cv(v))
		}
		for _, v := range n.Outputs {
			o := cv(v)
			if o != nil {
				o.Producer = c
			}
			c.Outputs = append(c.Outputs, o)
		}
		out.Nodes = append(out.Nodes, c)
	}
	for _, v := range g.Outputs {
		out.Outputs = append(out.Outputs, cv(v))
	}
	return out
}
