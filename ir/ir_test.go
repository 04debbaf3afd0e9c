package ir

import (
	"strings"
	"testing"
)

// chain builds x -> Relu -> a -> Neg -> b, plus a dead Abs node, with the
// nodes listed out of order.
func chain() (*Graph, map[string]*Node) {
	x := &Value{Name: "x", DType: Float32, Shape: Shape{1, 4}}
	a := &Value{Name: "a", DType: Float32}
	b := &Value{Name: "b", DType: Float32}
	dead := &Value{Name: "dead", DType: Float32}
	relu := &Node{Name: "relu", Op: "Relu", Inputs: []*Value{x}, Outputs: []*Value{a}}
	neg := &Node{Name: "neg", Op: "Neg", Inputs: []*Value{a}, Outputs: []*Value{b}}
	abs := &Node{Name: "abs", Op: "Abs", Inputs: []*Value{a}, Outputs: []*Value{dead}}
	a.Producer, b.Producer, dead.Producer = relu, neg, abs
	g := &Graph{Name: "chain", Opset: 13, Inputs: []*Value{x}, Outputs: []*Value{b}, Nodes: []*Node{neg, abs, relu}}
	return g, map[string]*Node{"relu": relu, "neg": neg, "abs": abs}
}

func names(ns []*Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

func TestSortAndPrune(t *testing.T) {
	g, _ := chain()
	if err := Verify(g); err == nil {
		t.Fatal("Verify accepted nodes out of order")
	}
	if err := g.Sort(); err != nil {
		t.Fatal(err)
	}
	if got := names(g.Nodes); got != "relu,neg,abs" {
		t.Errorf("sorted order %s, want relu,neg,abs", got)
	}
	if err := Verify(g); err != nil {
		t.Fatal(err)
	}
	g.Prune()
	if got := names(g.Nodes); got != "relu,neg" {
		t.Errorf("after prune %s, want relu,neg", got)
	}
}

func TestSortReportsCycle(t *testing.T) {
	g, n := chain()
	n["relu"].Inputs[0] = n["neg"].Outputs[0] // relu reads b, neg reads a
	err := g.Sort()
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("got %v, want a cycle error", err)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	g, _ := chain()
	if err := g.Sort(); err != nil {
		t.Fatal(err)
	}
	c := g.Clone()
	c.Nodes[0].Op = "Sigmoid"
	c.Nodes[0].Outputs[0].Name = "renamed"
	if g.Nodes[0].Op != "Relu" || g.Nodes[0].Outputs[0].Name != "a" {
		t.Error("changing the clone changed the original")
	}
	if err := Verify(c); err != nil {
		t.Fatal(err)
	}
	if c.Nodes[1].Inputs[0] != c.Nodes[0].Outputs[0] {
		t.Error("clone lost the edge between its nodes")
	}
}

func TestCheckOp(t *testing.T) {
	if err := CheckOp("n1", "", "Conv", 13); err != nil {
		t.Fatal(err)
	}
	err := CheckOp("n2", "", "LSTM", 13)
	if err == nil || !strings.Contains(err.Error(), `node "n2": unsupported operator LSTM (opset 13)`) ||
		!strings.Contains(err.Error(), "Gemm") {
		t.Errorf("got %v", err)
	}
	if err := CheckOp("n3", "com.microsoft", "Gelu", 13); err == nil {
		t.Error("accepted a custom domain")
	}
	if err := CheckOp("n4", "", "Dense", 13); err == nil {
		t.Error("accepted an internal op from a model file")
	}
}

func TestDump(t *testing.T) {
	g, _ := chain()
	_ = g.Sort()
	g.Prune()
	var b strings.Builder
	if err := Dump(&b, g); err != nil {
		t.Fatal(err)
	}
	want := `graph "chain" opset 13
  input  %x:f32[1x4]
  %a = Relu(%x:f32[1x4])
  %b = Neg(%a)
  output %b
  2 nodes, 0 parameters
`
	if b.String() != want {
		t.Errorf("dump:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	g, _ := chain()
	_ = g.Sort()
	g.Nodes[0].Attrs = Attrs{"alpha": {Kind: AttrFloat, Float: 0.5}}
	w := &Value{Name: "w", DType: Float32, Shape: Shape{4}, Const: NewFloat(Shape{4}, []float64{1, 2, 3, 4})}
	g.Nodes[1].Inputs = append(g.Nodes[1].Inputs, w, nil)
	data, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h, err := UnmarshalGraph(data)
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	_ = Dump(&a, g)
	_ = Dump(&b, h)
	if a.String() != b.String() {
		t.Errorf("round trip changed the graph:\n%s\nvs\n%s", a.String(), b.String())
	}
	if _, err := UnmarshalGraph(data[:len(data)/2]); err == nil {
		t.Error("decoded a truncated graph")
	}
}
