package onnx

import (
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/ir"
)

// Helpers building ONNX protos.

// vinfo is a tensor ValueInfoProto; each dim is an int (dim_value), a string
// (dim_param) or nil (unknown).
func vinfo(name string, elem onnxpb.TensorProto_DataType, dims ...any) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch d := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}
		case string:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(elem)), Shape: shape}}}}
}

func node(op, name string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
	if name != "" {
		n.Name = proto.String(name)
	}
	return n
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func floatTensor(name string, dims []int64, data ...float32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), Dims: dims,
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: data}
}

func model(opset int64, g *onnxpb.GraphProto) *onnxpb.ModelProto {
	if g.Name == nil {
		g.Name = proto.String("test")
	}
	return &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}}}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decode marshals m and decodes it as "m.onnx", failing on error.
func decode(t *testing.T, m *onnxpb.ModelProto) *ir.Graph {
	t.Helper()
	g, err := Decode(marshal(t, m), "m.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// reluModel is x -> Relu -> y with x of shape [N, 4].
func reluModel() *onnxpb.ModelProto {
	return model(13, &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{node("Relu", "relu", []string{"x"}, []string{"y"})},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, "N", 4)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, "N", 4)},
	})
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(suiteDir, "onnx", "test_basic_conv_with_padding", "model.onnx")
	realData, err := os.ReadFile(real)
	if err != nil {
		realData = marshal(t, reluModel())
	}
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)

	withGraph := func(f func(g *onnxpb.GraphProto)) []byte {
		m := reluModel()
		f(m.Graph)
		return marshal(t, m)
	}
	extTensor := floatTensor("weights", []int64{4})
	extTensor.FloatData = nil
	extTensor.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	extTensor.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("weights.bin")}}
	fnModel := reluModel()
	fnModel.Graph.Node[0] = node("MyRelu", "fn", []string{"x"}, []string{"y"})
	fnModel.Graph.Node[0].Domain = proto.String("local")
	fnModel.Functions = []*onnxpb.FunctionProto{{Name: proto.String("MyRelu"), Domain: proto.String("local"),
		Input: []string{"a"}, Output: []string{"b"}, Node: []*onnxpb.NodeProto{node("Relu", "", []string{"a"}, []string{"b"})}}}
	noOpset := reluModel()
	noOpset.OpsetImport = nil

	cases := []struct {
		name        string
		data        []byte // nil: the file does not exist
		unsupported bool
		want        string // a substring of the error
	}{
		{"truncated", realData[:len(realData)/2], false, "not an ONNX model"},
		{"random", random, false, ""},
		{"empty", []byte{}, false, "empty file"},
		{"nonexistent", nil, false, "no such file"},
		{"text", []byte("this is not a model\n"), false, ""},
		{"unsupported-op", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].OpType = proto.String("NonMaxSuppression")
		}), true, `"relu": unsupported operator NonMaxSuppression (opset 13): supported operators: `},
		{"other-domain", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].Domain = proto.String("com.microsoft")
		}), true, "com.microsoft.Relu"},
		{"function", marshal(t, fnModel), true, "model-local functions"},
		{"string-initializer", withGraph(func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String("s"), Dims: []int64{1},
				DataType: proto.Int32(int32(onnxpb.TensorProto_STRING)), StringData: [][]byte{[]byte("a")}})
		}), true, `initializer "s": unsupported element type STRING`},
		{"bfloat16-input", withGraph(func(g *onnxpb.GraphProto) {
			g.Input[0] = vinfo("x", onnxpb.TensorProto_BFLOAT16, 4)
		}), true, `graph input "x": unsupported element type BFLOAT16`},
		{"external-data", withGraph(func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, extTensor)
		}), true, `initializer "weights": data stored outside the model file (external data, location "weights.bin")`},
		{"graph-attribute", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].Attribute = []*onnxpb.AttributeProto{{Name: proto.String("body"),
				Type: onnxpb.AttributeProto_GRAPH.Enum(), G: &onnxpb.GraphProto{}}}
		}), true, `attribute "body" holds a subgraph (GRAPH)`},
		{"sequence-input", withGraph(func(g *onnxpb.GraphProto) {
			g.Input[0].Type = &onnxpb.TypeProto{Value: &onnxpb.TypeProto_SequenceType{
				SequenceType: &onnxpb.TypeProto_Sequence{ElemType: vinfo("", onnxpb.TensorProto_FLOAT).Type}}}
		}), true, `graph input "x": sequence types are not supported`},
		{"unknown-input", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].Input[0] = "nowhere"
		}), false, `node "relu" (Relu): input 0 "nowhere" is not defined`},
		{"unknown-output", withGraph(func(g *onnxpb.GraphProto) {
			g.Output[0].Name = proto.String("z")
		}), false, `graph output "z" is not defined`},
		{"duplicate-value", withGraph(func(g *onnxpb.GraphProto) {
			g.Node = append(g.Node, node("Relu", "relu2", []string{"x"}, []string{"y"}))
		}), false, `value "y" is defined twice`},
		{"cycle", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].Input[0] = "z"
			g.Node = append(g.Node, node("Neg", "neg", []string{"y"}, []string{"z"}))
		}), false, "cycle"},
		{"self-loop", withGraph(func(g *onnxpb.GraphProto) {
			g.Node[0].Input[0] = "y"
		}), false, "used before it is defined"},
		{"no-opset", marshal(t, noOpset), false, "imports no opset"},
		{"no-graph", marshal(t, &onnxpb.ModelProto{IrVersion: proto.Int64(8)}), false, "model has no graph"},
		{"bad-initializer-size", withGraph(func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, floatTensor("w", []int64{2, 3}, 1, 2))
		}), false, `initializer "w": holds 2 elements, want 6`},
		{"huge-dims", withGraph(func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, floatTensor("w", []int64{1 << 40, 1 << 40}, 1))
		}), false, "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".onnx")
			if c.data != nil {
				if err := os.WriteFile(path, c.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			g, err := Load(path)
			if err == nil {
				t.Fatalf("loaded: %v", g)
			}
			checkErr(t, err, path)
			if got := isUnsupported(err); got != c.unsupported {
				t.Errorf("UnsupportedError: %v, want %v: %v", got, c.unsupported, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

func TestSameValueTwice(t *testing.T) {
	m := model(13, &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{node("Mul", "sq", []string{"x", "x"}, []string{"y"})},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, 3)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, 3)},
	})
	g := decode(t, m)
	n := g.Nodes[0]
	if len(n.Inputs) != 2 || n.Inputs[0] != g.Inputs[0] || n.Inputs[1] != g.Inputs[0] {
		t.Fatalf("Mul(x, x) inputs: %v", n.Inputs)
	}
	if c := g.Consumers()[g.Inputs[0]]; len(c) != 2 {
		t.Errorf("x has %d consumer edges, want 2", len(c))
	}
	if g.Outputs[0].Producer != n {
		t.Errorf("output not produced by the Mul")
	}
}

func TestShapesAndTypes(t *testing.T) {
	m := model(17, &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{
			node("Relu", "r", []string{"x"}, []string{"h"}),
			node("Cast", "c", []string{"h"}, []string{"y"}, attrInt("to", int64(onnxpb.TensorProto_DOUBLE))),
		},
		Input:     []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, "batch", 3, nil, "seq")},
		Output:    []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_DOUBLE, "batch", 3, 5, "seq")},
		ValueInfo: []*onnxpb.ValueInfoProto{vinfo("h", onnxpb.TensorProto_FLOAT, "batch", 3, 5, 7)},
	})
	scalar := vinfo("s", onnxpb.TensorProto_INT64)
	unranked := vinfo("u", onnxpb.TensorProto_UINT8)
	unranked.Type.GetTensorType().Shape = nil
	m.Graph.Input = append(m.Graph.Input, scalar, unranked)
	g := decode(t, m)
	if g.Opset != 17 || g.Name != "test" {
		t.Errorf("opset %d name %q", g.Opset, g.Name)
	}
	x := g.Inputs[0]
	if x.DType != ir.Float32 || !x.Shape.Equal(ir.Shape{-1, 3, -1, -1}) ||
		!reflect.DeepEqual(x.DimNames, []string{"batch", "", "", "seq"}) {
		t.Errorf("x: %s %v %q", x.DType, x.Shape, x.DimNames)
	}
	if s := g.Inputs[1]; s.DType != ir.Int64 || s.Shape == nil || len(s.Shape) != 0 || s.DimNames != nil {
		t.Errorf("scalar s: %s %#v %q", s.DType, s.Shape, s.DimNames)
	}
	if u := g.Inputs[2]; u.DType != ir.Uint8 || u.Shape != nil {
		t.Errorf("unranked u: %s %#v", u.DType, u.Shape)
	}
	h := g.Nodes[0].Outputs[0]
	if h.DType != ir.Float32 || !h.Shape.Equal(ir.Shape{-1, 3, 5, 7}) || h.DimNames[0] != "batch" {
		t.Errorf("h: %s %v %q", h.DType, h.Shape, h.DimNames)
	}
	y := g.Outputs[0]
	if y.DType != ir.Float64 || !y.Shape.Equal(ir.Shape{-1, 3, 5, -1}) || y.DimNames[3] != "seq" {
		t.Errorf("y: %s %v %q", y.DType, y.Shape, y.DimNames)
	}
	if a := g.Nodes[1].Attrs; a.Int("to", 0) != int64(onnxpb.TensorProto_DOUBLE) {
		t.Errorf("Cast attrs %v", a)
	}
}

func TestConstants(t *testing.T) {
	w := floatTensor("w", []int64{2, 2}, 1, 2, 3, 4)
	m := model(13, &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{
			node("Constant", "c0", nil, []string{"c"}, &onnxpb.AttributeProto{Name: proto.String("value"),
				Type: onnxpb.AttributeProto_TENSOR.Enum(), T: floatTensor("", []int64{2}, 5, 6)}),
			node("Constant", "", nil, []string{"cf"}, &onnxpb.AttributeProto{Name: proto.String("value_float"),
				Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(0.5)}),
			node("Constant", "", nil, []string{"ci"}, &onnxpb.AttributeProto{Name: proto.String("value_ints"),
				Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{2, 2}}),
			node("MatMul", "mm", []string{"x", "w"}, []string{"a"}),
			node("Add", "", []string{"a", "c"}, []string{"b"}),
			node("Mul", "", []string{"b", "cf"}, []string{"d"}),
			node("Reshape", "", []string{"d", "ci"}, []string{"y"}),
		},
		Initializer: []*onnxpb.TensorProto{w},
		// Older exporters list initializers among the inputs.
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, 2, 2), vinfo("w", onnxpb.TensorProto_FLOAT, 2, 2)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, 2, 2), vinfo("ci", onnxpb.TensorProto_INT64, 2)},
	})
	g := decode(t, m)
	if len(g.Inputs) != 1 || g.Inputs[0].Name != "x" {
		t.Fatalf("inputs %v, want only x", g.Inputs)
	}
	if len(g.Nodes) != 4 {
		t.Fatalf("%d nodes, want 4 (Constants folded)", len(g.Nodes))
	}
	for _, n := range g.Nodes {
		if n.Op == "Constant" {
			t.Errorf("Constant node kept: %v", n)
		}
	}
	consts := map[string]*ir.Value{}
	for _, v := range g.Constants() {
		consts[v.Name] = v
	}
	check := func(name string, dt ir.DType, shape ir.Shape, f []float64, i []int64) {
		v := consts[name]
		if v == nil || v.Producer != nil {
			t.Errorf("%s: not a constant: %+v", name, v)
			return
		}
		c := v.Const
		if c.DType != dt || v.DType != dt || !c.Shape.Equal(shape) || !v.Shape.Equal(shape) ||
			!reflect.DeepEqual(c.Float, f) || !reflect.DeepEqual(c.Int, i) {
			t.Errorf("%s: %s%v %v %v", name, c.DType, c.Shape, c.Float, c.Int)
		}
	}
	check("w", ir.Float32, ir.Shape{2, 2}, []float64{1, 2, 3, 4}, nil)
	check("c", ir.Float32, ir.Shape{2}, []float64{5, 6}, nil)
	check("cf", ir.Float32, ir.Shape{}, []float64{0.5}, nil)
	check("ci", ir.Int64, ir.Shape{2}, nil, []int64{2, 2})
	if !g.Outputs[1].IsConst() {
		t.Errorf("constant graph output lost its data")
	}
	// Unnamed nodes get generated names from their op and index.
	if g.Nodes[1].Name != "Add_4" || g.Nodes[3].Name != "Reshape_6" {
		t.Errorf("generated names %q %q", g.Nodes[1].Name, g.Nodes[3].Name)
	}
}

func TestOptionalInputsOutputsOrderAndNames(t *testing.T) {
	m := model(13, &onnxpb.GraphProto{
		// Out of order; a repeated name; an omitted optional input and output.
		Node: []*onnxpb.NodeProto{
			node("Relu", "n", []string{"c"}, []string{"y"}),
			node("Dropout", "n", []string{"x"}, []string{"d", ""}),
			node("Clip", "Clip_2", []string{"d", "", "hi"}, []string{"c"}),
		},
		Initializer: []*onnxpb.TensorProto{floatTensor("hi", nil, 6)},
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, 4)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, 4)},
	})
	g := decode(t, m)
	var ops, names []string
	for _, n := range g.Nodes {
		ops = append(ops, n.Op)
		names = append(names, n.Name)
	}
	if !reflect.DeepEqual(ops, []string{"Dropout", "Clip", "Relu"}) {
		t.Errorf("order %v", ops)
	}
	if !reflect.DeepEqual(names, []string{"n_1", "Clip_2", "n"}) {
		t.Errorf("names %v", names)
	}
	drop, clip := g.Nodes[0], g.Nodes[1]
	if len(drop.Outputs) != 2 || drop.Outputs[0] == nil || drop.Outputs[1] != nil {
		t.Errorf("Dropout outputs %v", drop.Outputs)
	}
	if len(clip.Inputs) != 3 || clip.Inputs[1] != nil || clip.Input(2).Const == nil {
		t.Errorf("Clip inputs %v", clip.Inputs)
	}
}

func TestAttributes(t *testing.T) {
	tensorAttr := &onnxpb.TensorProto{Dims: []int64{1}, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: []float32{7}}
	m := model(13, &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{node("Relu", "r", []string{"x"}, []string{"y"},
			&onnxpb.AttributeProto{Name: proto.String("f"), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(0.25)},
			&onnxpb.AttributeProto{Name: proto.String("i"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(-3)},
			&onnxpb.AttributeProto{Name: proto.String("s"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("reflect")},
			&onnxpb.AttributeProto{Name: proto.String("fs"), Type: onnxpb.AttributeProto_FLOATS.Enum(), Floats: []float32{1.5, 2}},
			&onnxpb.AttributeProto{Name: proto.String("is"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{0, 2, 1}},
			&onnxpb.AttributeProto{Name: proto.String("ss"), Type: onnxpb.AttributeProto_STRINGS.Enum(), Strings: [][]byte{[]byte("a"), []byte("b")}},
			&onnxpb.AttributeProto{Name: proto.String("t"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: tensorAttr},
			// No type field, as in old models: inferred from the field set.
			&onnxpb.AttributeProto{Name: proto.String("old"), I: proto.Int64(9)},
		)},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, 4)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", onnxpb.TensorProto_FLOAT, 4)},
	})
	a := decode(t, m).Nodes[0].Attrs
	want := ir.Attrs{
		"f":   {Kind: ir.AttrFloat, Float: 0.25},
		"i":   {Kind: ir.AttrInt, Int: -3},
		"s":   {Kind: ir.AttrString, String: "reflect"},
		"fs":  {Kind: ir.AttrFloats, Floats: []float64{1.5, 2}},
		"is":  {Kind: ir.AttrInts, Ints: []int64{0, 2, 1}},
		"ss":  {Kind: ir.AttrStrings, Strings: []string{"a", "b"}},
		"t":   {Kind: ir.AttrTensor, Tensor: &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{1}, Float: []float64{7}}},
		"old": {Kind: ir.AttrInt, Int: 9},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("attrs\n got %#v\nwant %#v", a, want)
	}
}
