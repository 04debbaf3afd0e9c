package ir

import (
	"strings"
	"testing"
)

// subgraphTestGraph is x -> a=Relu(x) -> b=Neg(a), c=Add(b, a) (a skip).
func subgraphTestGraph() *Graph {
	g := &Graph{Name: "g", Opset: 13}
	x := &Value{Name: "x", DType: Float32, Shape: Shape{1, 2}}
	g.Inputs = []*Value{x}
	op := func(name, opName string, ins ...*Value) *Value {
		n := &Node{Name: name, Op: opName, Inputs: ins, Attrs: Attrs{}}
		v := &Value{Name: strings.ToLower(name), DType: Float32, Shape: Shape{1, 2}, Producer: n}
		n.Outputs = []*Value{v}
		g.Nodes = append(g.Nodes, n)
		return v
	}
	a := op("A", "Relu", x)
	b := op("B", "Neg", a)
	g.Outputs = []*Value{op("C", "Add", b, a)}
	return g
}

func TestSubgraph(t *testing.T) {
	g := subgraphTestGraph()
	s, err := g.Subgraph("tail", []string{"a"}, []string{"c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || s.Nodes[0].Name != "B" || s.Nodes[1].Name != "C" {
		t.Fatalf("nodes %v, want B and C", s.Nodes)
	}
	if len(s.Inputs) != 1 || s.Inputs[0].Name != "a" || s.Inputs[0].Producer != nil {
		t.Fatalf("inputs %v, want a without a producer", s.Inputs)
	}
	if err := Verify(s); err != nil {
		t.Fatal(err)
	}
	if g.Nodes[1].Inputs[0].Producer == nil {
		t.Error("the original graph was modified")
	}
	// b alone does not separate c from x: c also reads a.
	if _, err := g.Subgraph("bad", []string{"b"}, []string{"c"}); err == nil || !strings.Contains(err.Error(), "x needed but not given") {
		t.Errorf("error %v, want one naming the missing value", err)
	}
	if _, err := g.Subgraph("bad", []string{"nope"}, []string{"c"}); err == nil || !strings.Contains(err.Error(), `input "nope"`) {
		t.Errorf("error %v, want one naming the unknown input", err)
	}
}
