package ir

import (
	"bytes"
	"encoding/gob"
	"fmt"
)

// flatGraph is the serialized form of a Graph: values by index, nodes
// referring to them, so that the producer/consumer pointers need no cycles.
type flatGraph struct {
	Name    string
	Opset   int64
	Values  []flatValue
	Nodes   []flatNode
	Inputs  []int
	Outputs []int
}

type flatValue struct {
	Name     string
	DType    DType
	Shape    Shape
	DimNames []string
	Const    *Tensor
}

type flatNode struct {
	Name    string
	Op      string
	Inputs  []int // -1 for an omitted optional input
	Outputs []int
	Attrs   Attrs
}

// MarshalBinary encodes the graph (structure, shapes, constants) with gob.
func (g *Graph) MarshalBinary() ([]byte, error) {
	index := map[*Value]int{}
	var fg flatGraph
	fg.Name, fg.Opset = g.Name, g.Opset
	ref := func(v *Value) int {
		if v == nil {
			return -1
		}
		if i, ok := index[v]; ok {
			return i
		}
		index[v] = len(fg.Values)
		fg.Values = append(fg.Values, flatValue{Name: v.Name, DType: v.DType, Shape: v.Shape, DimNames: v.DimNames, Const: v.Const})
		return index[v]
	}
	for _, v := range g.Inputs {
		fg.Inputs = append(fg.Inputs, ref(v))
	}
	for _, n := range g.Nodes {
		fn := flatNode{Name: n.Name, Op: n.Op, Attrs: n.Attrs}
		for _, v := range n.Inputs {
			fn.Inputs = append(fn.Inputs, ref(v))
		}
		for _, v := range n.Outputs {
			fn.Outputs = append(fn.Outputs, ref(v))
		}
		fg.Nodes = append(fg.Nodes, fn)
	}
	for _, v := range g.Outputs {
		fg.Outputs = append(fg.Outputs, ref(v))
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&fg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// UnmarshalGraph decodes a graph written by MarshalBinary and verifies it.
func UnmarshalGraph(data []byte) (*Graph, error) {
	var fg flatGraph
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&fg); err != nil {
		return nil, fmt.Errorf("decoding graph: %w", err)
	}
	values := make([]*Value, len(fg.Values))
	for i, fv := range fg.Values {
		values[i] = &Value{Name: fv.Name, DType: fv.DType, Shape: fv.Shape, DimNames: fv.DimNames, Const: fv.Const}
	}
	get := func(i int) (*Value, error) {
		if i == -1 {
			return nil, nil
		}
		if i < 0 || i >= len(values) {
			return nil, fmt.Errorf("decoding graph: value index %d out of range", i)
		}
		return values[i], nil
	}
	g := &Graph{Name: fg.Name, Opset: fg.Opset}
	for _, i := range fg.Inputs {
		v, err := get(i)
		if err != nil || v == nil {
			return nil, fmt.Errorf("decoding graph: bad input index %d", i)
		}
		g.Inputs = append(g.Inputs, v)
	}
	for _, fn := range fg.Nodes {
		n := &Node{Name: fn.Name, Op: fn.Op, Attrs: fn.Attrs}
		for _, i := range fn.Inputs {
			v, err := get(i)
			if err != nil {
				return nil, err
			}
			n.Inputs = append(n.Inputs, v)
		}
		for _, i := range fn.Outputs {
			v, err := get(i)
			if err != nil {
				return nil, err
			}
			if v != nil {
				if v.Producer != nil {
					return nil, fmt.Errorf("decoding graph: value %q has two producers", v.Name)
				}
				v.Producer = n
			}
			n.Outputs = append(n.Outputs, v)
		}
		g.Nodes = append(g.Nodes, n)
	}
	for _, i := range fg.Outputs {
		v, err := get(i)
		if err != nil || v == nil {
			return nil, fmt.Errorf("decoding graph: bad output index %d", i)
		}
		g.Outputs = append(g.Outputs, v)
	}
	if err := Verify(g); err != nil {
		return nil, fmt.Errorf("decoding graph: %w", err)
	}
	return g, nil
}
