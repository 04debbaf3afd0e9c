// Hand-computed cases for the elementwise, activation, reduction, layout and
// miscellaneous kernels: the semantics that are easy to get wrong (negative
// slice steps, reflect padding, Reshape 0/-1, Softmax before and after opset
// 13, negative Gather indices, broadcasting, integer wrap-around).

package plain

import (
	"errors"
	"math"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// kaRun evaluates one node of op with the given attributes and inputs.
func kaRun(t *testing.T, op string, opset int64, attrs ir.Attrs, nOut int, in ...*ir.Tensor) []*ir.Tensor {
	t.Helper()
	outs, err := kaEval(op, opset, attrs, nOut, in...)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return outs
}

func kaEval(op string, opset int64, attrs ir.Attrs, nOut int, in ...*ir.Tensor) ([]*ir.Tensor, error) {
	n := &ir.Node{Name: "n", Op: op, Attrs: attrs}
	for i := 0; i < nOut; i++ {
		n.Outputs = append(n.Outputs, &ir.Value{Name: "o"})
	}
	return EvalNode(n, opset, in)
}

func kaF(shape ir.Shape, data ...float64) *ir.Tensor { return ir.NewFloat(shape, data) }
func kaI(shape ir.Shape, data ...int64) *ir.Tensor   { return ir.NewInt(shape, data) }

// kaCheck compares a tensor with the expected shape and values.
func kaCheck(t *testing.T, name string, got *ir.Tensor, shape ir.Shape, want ...float64) {
	t.Helper()
	if !got.Shape.Equal(shape) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape, shape)
	}
	vals := got.Floats()
	if len(vals) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(vals), len(want))
	}
	for i := range want {
		if math.Abs(vals[i]-want[i]) > 1e-9+1e-9*math.Abs(want[i]) {
			t.Fatalf("%s: got %v, want %v", name, vals, want)
		}
	}
}

func TestKernelsASliceNegativeSteps(t *testing.T) {
	x := kaF(ir.Shape{2, 4}, 0, 1, 2, 3, 4, 5, 6, 7)
	// x[:, ::-1] via starts=-1 ends=INT64_MIN steps=-1 on axis 1.
	got := kaRun(t, "Slice", 13, nil, 1, x, kaI(ir.Shape{1}, -1), kaI(ir.Shape{1}, math.MinInt64),
		kaI(ir.Shape{1}, 1), kaI(ir.Shape{1}, -1))[0]
	kaCheck(t, "reverse", got, ir.Shape{2, 4}, 3, 2, 1, 0, 7, 6, 5, 4)
	// x[1:-3:-1... ] out of range start clamps: axis 1 from 100 down to 0 exclusive, step -2.
	got = kaRun(t, "Slice", 13, nil, 1, x, kaI(ir.Shape{1}, 100), kaI(ir.Shape{1}, 0),
		kaI(ir.Shape{1}, -1), kaI(ir.Shape{1}, -2))[0]
	kaCheck(t, "step -2", got, ir.Shape{2, 2}, 3, 1, 7, 5)
	// Empty result when start is before end with a negative step.
	got = kaRun(t, "Slice", 13, nil, 1, x, kaI(ir.Shape{1}, 0), kaI(ir.Shape{1}, 3),
		kaI(ir.Shape{1}, 1), kaI(ir.Shape{1}, -1))[0]
	kaCheck(t, "empty", got, ir.Shape{2, 0})
	// Opset 9: attributes, ends past the end clamp.
	got = kaRun(t, "Slice", 9, ir.Attrs{
		"starts": {Kind: ir.AttrInts, Ints: []int64{1, 1}},
		"ends":   {Kind: ir.AttrInts, Ints: []int64{1000, -1}},
	}, 1, x)[0]
	kaCheck(t, "opset 9", got, ir.Shape{1, 2}, 5, 6)
	// Inputs unchanged.
	kaCheck(t, "input", x, ir.Shape{2, 4}, 0, 1, 2, 3, 4, 5, 6, 7)
}

func TestKernelsAPad(t *testing.T) {
	x := kaI(ir.Shape{2, 3}, 1, 2, 3, 4, 5, 6)
	x.DType = ir.Int32
	mode := func(m string) ir.Attrs { return ir.Attrs{"mode": {Kind: ir.AttrString, String: m}} }
	got := kaRun(t, "Pad", 11, mode("reflect"), 1, x, kaI(ir.Shape{4}, 0, 2, 0, 1))[0]
	kaCheck(t, "reflect", got, ir.Shape{2, 6}, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5)
	if got.DType != ir.Int32 {
		t.Fatalf("reflect dtype %v", got.DType)
	}
	got = kaRun(t, "Pad", 11, mode("edge"), 1, x, kaI(ir.Shape{4}, 1, 1, 0, 0))[0]
	kaCheck(t, "edge", got, ir.Shape{3, 4}, 1, 1, 2, 3, 1, 1, 2, 3, 4, 4, 5, 6)
	// Constant with value, negative pad crops.
	f := kaF(ir.Shape{2, 3}, 1, 2, 3, 4, 5, 6)
	got = kaRun(t, "Pad", 11, nil, 1, f, kaI(ir.Shape{4}, 1, -1, 0, 0), kaF(ir.Shape{}, 9))[0]
	kaCheck(t, "constant", got, ir.Shape{3, 2}, 9, 9, 2, 3, 5, 6)
	// Opset 2 attributes.
	got = kaRun(t, "Pad", 2, ir.Attrs{
		"pads":  {Kind: ir.AttrInts, Ints: []int64{0, 1, 0, 0}},
		"value": {Kind: ir.AttrFloat, Float: -1},
	}, 1, f)[0]
	kaCheck(t, "opset 2", got, ir.Shape{2, 4}, -1, 1, 2, 3, -1, 4, 5, 6)
}

func TestKernelsAReshape(t *testing.T) {
	x := kaF(ir.Shape{2, 3, 4}, make([]float64, 24)...)
	got := kaRun(t, "Reshape", 13, nil, 1, x, kaI(ir.Shape{3}, 0, -1, 2))[0]
	if !got.Shape.Equal(ir.Shape{2, 6, 2}) {
		t.Fatalf("reshape 0/-1: %v", got.Shape)
	}
	if _, err := kaEval("Reshape", 14, ir.Attrs{"allowzero": {Kind: ir.AttrInt, Int: 1}}, 1, x,
		kaI(ir.Shape{2}, 0, -1)); err == nil {
		t.Fatal("allowzero with 0 and -1 on a non-empty tensor should fail")
	}
	e := kaF(ir.Shape{0, 3}, nil...)
	e.Float = []float64{}
	got = kaRun(t, "Reshape", 14, ir.Attrs{"allowzero": {Kind: ir.AttrInt, Int: 1}}, 1, e, kaI(ir.Shape{2}, 3, 0))[0]
	if !got.Shape.Equal(ir.Shape{3, 0}) {
		t.Fatalf("allowzero: %v", got.Shape)
	}
	if _, err := kaEval("Reshape", 13, nil, 1, x, kaI(ir.Shape{2}, 5, -1)); err == nil {
		t.Fatal("bad reshape should fail")
	}
}

func TestKernelsASoftmaxOpsets(t *testing.T) {
	x := kaF(ir.Shape{2, 2}, 0, math.Log(3), 0, 0)
	axis0 := ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 0}}
	// Opset 11, axis 0: the whole tensor is one row.
	got := kaRun(t, "Softmax", 11, axis0, 1, x)[0]
	kaCheck(t, "opset 11", got, ir.Shape{2, 2}, 1.0/6, 3.0/6, 1.0/6, 1.0/6)
	// Opset 13, axis 0: per column.
	got = kaRun(t, "Softmax", 13, axis0, 1, x)[0]
	kaCheck(t, "opset 13", got, ir.Shape{2, 2}, 0.5, 0.75, 0.5, 0.25)
	// Defaults: opset 11 axis 1 (rows of a 2-D view), opset 13 axis -1.
	y := kaF(ir.Shape{1, 2, 2}, 0, 0, 0, math.Log(5))
	got = kaRun(t, "Softmax", 11, nil, 1, y)[0]
	kaCheck(t, "opset 11 default", got, ir.Shape{1, 2, 2}, 1.0/8, 1.0/8, 1.0/8, 5.0/8)
	got = kaRun(t, "Softmax", 13, nil, 1, y)[0]
	kaCheck(t, "opset 13 default", got, ir.Shape{1, 2, 2}, 0.5, 0.5, 1.0/6, 5.0/6)
}

func TestKernelsAGather(t *testing.T) {
	x := kaF(ir.Shape{3, 2}, 1, 2, 3, 4, 5, 6)
	got := kaRun(t, "Gather", 13, nil, 1, x, kaI(ir.Shape{2, 1}, -1, 0))[0]
	kaCheck(t, "axis 0", got, ir.Shape{2, 1, 2}, 5, 6, 1, 2)
	got = kaRun(t, "Gather", 13, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: -1}}, 1, x, kaI(ir.Shape{}, -2))[0]
	kaCheck(t, "axis -1 scalar", got, ir.Shape{3}, 1, 3, 5)
	if _, err := kaEval("Gather", 13, nil, 1, x, kaI(ir.Shape{1}, 3)); err == nil {
		t.Fatal("out-of-range index should fail")
	}
}

func TestKernelsABroadcast(t *testing.T) {
	a := kaF(ir.Shape{2, 1}, 1, 2)
	b := kaF(ir.Shape{3}, 10, 20, 30)
	got := kaRun(t, "Sub", 13, nil, 1, a, b)[0]
	kaCheck(t, "sub", got, ir.Shape{2, 3}, -9, -19, -29, -8, -18, -28)
	got = kaRun(t, "Max", 13, nil, 1, a, b, kaF(ir.Shape{}, 25))[0]
	kaCheck(t, "max", got, ir.Shape{2, 3}, 25, 25, 30, 25, 25, 30)
	if _, err := kaEval("Add", 13, nil, 1, kaF(ir.Shape{2}, 1, 2), b); err == nil {
		t.Fatal("incompatible shapes should fail")
	}
	got = kaRun(t, "Expand", 13, nil, 1, a, kaI(ir.Shape{3}, 2, 1, 2))[0]
	kaCheck(t, "expand", got, ir.Shape{2, 2, 2}, 1, 1, 2, 2, 1, 1, 2, 2)
	c := kaI(ir.Shape{3}, 1, 0, 1)
	c.DType = ir.Bool
	got = kaRun(t, "Where", 13, nil, 1, c, kaI(ir.Shape{2, 1}, 7, 8), kaI(ir.Shape{}, -1))[0]
	kaCheck(t, "where", got, ir.Shape{2, 3}, 7, -1, 7, 8, -1, 8)
	got = kaRun(t, "PRelu", 16, nil, 1, kaF(ir.Shape{2, 2}, -1, 1, -2, -3), kaF(ir.Shape{2}, 0.5, 2))[0]
	kaCheck(t, "prelu", got, ir.Shape{2, 2}, -0.5, 1, -1, -6)
}

func TestKernelsAIntegers(t *testing.T) {
	u := func(v ...int64) *ir.Tensor {
		t := kaI(ir.Shape{len(v)}, v...)
		t.DType = ir.Uint8
		return t
	}
	got := kaRun(t, "Add", 13, nil, 1, u(250, 3), u(10, 4))[0]
	kaCheck(t, "uint8 add", got, ir.Shape{2}, 4, 7)
	got = kaRun(t, "Sub", 13, nil, 1, u(1), u(2))[0]
	kaCheck(t, "uint8 sub", got, ir.Shape{1}, 255)
	got = kaRun(t, "Div", 13, nil, 1, kaI(ir.Shape{2}, -7, 7), kaI(ir.Shape{2}, 2, -2))[0]
	kaCheck(t, "int div", got, ir.Shape{2}, -3, -3)
	if _, err := kaEval("Div", 13, nil, 1, kaI(ir.Shape{1}, 1), kaI(ir.Shape{1}, 0)); err == nil {
		t.Fatal("integer division by zero should fail")
	}
	got = kaRun(t, "Pow", 13, nil, 1, kaI(ir.Shape{2}, 2, 3), kaF(ir.Shape{2}, 0.5, 2))[0]
	kaCheck(t, "int pow float", got, ir.Shape{2}, 1, 9)
	if got.DType != ir.Int64 {
		t.Fatalf("int pow dtype %v", got.DType)
	}
	got = kaRun(t, "Equal", 13, nil, 1, kaI(ir.Shape{2}, 1, 2), kaI(ir.Shape{1}, 2))[0]
	kaCheck(t, "equal", got, ir.Shape{2}, 0, 1)
	if got.DType != ir.Bool {
		t.Fatalf("equal dtype %v", got.DType)
	}
	got = kaRun(t, "Cast", 13, ir.Attrs{"to": {Kind: ir.AttrInt, Int: 6}}, 1, kaF(ir.Shape{3}, -2.7, 2.7, 3e9))[0]
	if got.DType != ir.Int32 || got.Int[0] != -2 || got.Int[1] != 2 {
		t.Fatalf("cast to int32: %v %v", got.DType, got.Int)
	}
	got = kaRun(t, "Cast", 13, ir.Attrs{"to": {Kind: ir.AttrInt, Int: 10}}, 1, kaF(ir.Shape{3}, 1.0009765625+1e-7, 70000, 1e-8))[0]
	kaCheck(t, "cast f16", got, ir.Shape{3}, 1.0009765625, math.Inf(1), 0)
	_, err := kaEval("Cast", 13, ir.Attrs{"to": {Kind: ir.AttrInt, Int: 8}}, 1, kaF(ir.Shape{1}, 1))
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("cast to string: %v, want UnsupportedError", err)
	}
	got = kaRun(t, "Range", 11, nil, 1, kaI(ir.Shape{}, 10), kaI(ir.Shape{}, 3), kaI(ir.Shape{}, -3))[0]
	kaCheck(t, "range", got, ir.Shape{3}, 10, 7, 4)
}

func TestKernelsAShapes(t *testing.T) {
	x := kaF(ir.Shape{1, 3, 1, 2}, 1, 2, 3, 4, 5, 6)
	got := kaRun(t, "Squeeze", 13, nil, 1, x)[0]
	kaCheck(t, "squeeze all", got, ir.Shape{3, 2}, 1, 2, 3, 4, 5, 6)
	got = kaRun(t, "Squeeze", 11, ir.Attrs{"axes": {Kind: ir.AttrInts, Ints: []int64{-2}}}, 1, x)[0]
	kaCheck(t, "squeeze attr", got, ir.Shape{1, 3, 2}, 1, 2, 3, 4, 5, 6)
	got = kaRun(t, "Unsqueeze", 13, nil, 1, kaF(ir.Shape{2}, 1, 2), kaI(ir.Shape{2}, -1, 0))[0]
	kaCheck(t, "unsqueeze", got, ir.Shape{1, 2, 1}, 1, 2)
	got = kaRun(t, "Transpose", 13, nil, 1, kaF(ir.Shape{2, 3}, 1, 2, 3, 4, 5, 6))[0]
	kaCheck(t, "transpose", got, ir.Shape{3, 2}, 1, 4, 2, 5, 3, 6)
	outs := kaRun(t, "Split", 13, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 1}}, 2, x, kaI(ir.Shape{2}, 1, 2))
	kaCheck(t, "split 0", outs[0], ir.Shape{1, 1, 1, 2}, 1, 2)
	kaCheck(t, "split 1", outs[1], ir.Shape{1, 2, 1, 2}, 3, 4, 5, 6)
	got = kaRun(t, "ReduceSum", 13, ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 0}}, 1, x, kaI(ir.Shape{2}, 1, -1))[0]
	kaCheck(t, "reducesum", got, ir.Shape{1, 1}, 21)
	got = kaRun(t, "ReduceMean", 13, ir.Attrs{"axes": {Kind: ir.AttrInts, Ints: []int64{1}}}, 1, x)[0]
	kaCheck(t, "reducemean", got, ir.Shape{1, 1, 1, 2}, 3, 4)
	got = kaRun(t, "ReduceSum", 13, ir.Attrs{"noop_with_empty_axes": {Kind: ir.AttrInt, Int: 1}}, 1, x)[0]
	kaCheck(t, "noop", got, ir.Shape{1, 3, 1, 2}, 1, 2, 3, 4, 5, 6)
	got = kaRun(t, "Tile", 13, nil, 1, kaF(ir.Shape{2}, 1, 2), kaI(ir.Shape{1}, 2))[0]
	kaCheck(t, "tile", got, ir.Shape{4}, 1, 2, 1, 2)
	got = kaRun(t, "Concat", 13, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: -1}}, 1,
		kaI(ir.Shape{2, 1}, 1, 2), kaI(ir.Shape{2, 2}, 3, 4, 5, 6))[0]
	kaCheck(t, "concat", got, ir.Shape{2, 3}, 1, 3, 4, 2, 5, 6)
	got = kaRun(t, "Shape", 15, ir.Attrs{"start": {Kind: ir.AttrInt, Int: -3}, "end": {Kind: ir.AttrInt, Int: -1}}, 1, x)[0]
	kaCheck(t, "shape", got, ir.Shape{2}, 3, 1)
	got = kaRun(t, "Flatten", 13, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 0}}, 1, x)[0]
	kaCheck(t, "flatten", got, ir.Shape{1, 6}, 1, 2, 3, 4, 5, 6)
}

func TestKernelsAClipDropout(t *testing.T) {
	x := kaF(ir.Shape{3}, -2, 0.5, 2)
	got := kaRun(t, "Clip", 6, ir.Attrs{"min": {Kind: ir.AttrFloat, Float: -1}}, 1, x)[0]
	kaCheck(t, "clip 6", got, ir.Shape{3}, -1, 0.5, 2)
	got = kaRun(t, "Clip", 13, nil, 1, x, nil, kaF(ir.Shape{}, 1))[0]
	kaCheck(t, "clip 13", got, ir.Shape{3}, -2, 0.5, 1)
	outs := kaRun(t, "Dropout", 13, nil, 2, x, kaF(ir.Shape{}, 0.3))
	kaCheck(t, "dropout", outs[0], ir.Shape{3}, -2, 0.5, 2)
	if outs[1].DType != ir.Bool {
		t.Fatalf("mask dtype %v", outs[1].DType)
	}
	kaCheck(t, "mask", outs[1], ir.Shape{3}, 1, 1, 1)
	tr := kaI(ir.Shape{}, 1)
	tr.DType = ir.Bool
	_, err := kaEval("Dropout", 13, nil, 1, x, kaF(ir.Shape{}, 0.3), tr)
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("training dropout: %v, want UnsupportedError", err)
	}
	got = kaRun(t, "Gelu", 20, ir.Attrs{"approximate": {Kind: ir.AttrString, String: "tanh"}}, 1, kaF(ir.Shape{1}, 1))[0]
	kaCheck(t, "gelu tanh", got, ir.Shape{1}, 0.5*(1+math.Tanh(math.Sqrt(2/math.Pi)*1.044715)))
	got = kaRun(t, "SiLU", 0, nil, 1, kaF(ir.Shape{1}, 2))[0]
	kaCheck(t, "silu", got, ir.Shape{1}, 2/(1+math.Exp(-2)))
}

func TestKernelsAConstants(t *testing.T) {
	got := kaRun(t, "Constant", 13, ir.Attrs{"value_floats": {Kind: ir.AttrFloats, Floats: []float64{0.1, 2}}}, 1)[0]
	kaCheck(t, "value_floats", got, ir.Shape{2}, float64(float32(0.1)), 2)
	got = kaRun(t, "Constant", 13, ir.Attrs{"value_int": {Kind: ir.AttrInt, Int: 7}}, 1)[0]
	kaCheck(t, "value_int", got, ir.Shape{}, 7)
	if got.DType != ir.Int64 {
		t.Fatalf("value_int dtype %v", got.DType)
	}
	v := kaI(ir.Shape{1}, 3)
	v.DType = ir.Int32
	got = kaRun(t, "ConstantOfShape", 13, ir.Attrs{"value": {Kind: ir.AttrTensor, Tensor: v}}, 1, kaI(ir.Shape{2}, 2, 1))[0]
	kaCheck(t, "constantofshape", got, ir.Shape{2, 1}, 3, 3)
	if got.DType != ir.Int32 {
		t.Fatalf("constantofshape dtype %v", got.DType)
	}
	got = kaRun(t, "ConstantOfShape", 13, nil, 1, kaI(ir.Shape{0}))[0]
	kaCheck(t, "scalar zero", got, ir.Shape{}, 0)
	got = kaRun(t, "Range", 11, nil, 1, kaF(ir.Shape{}, 1), kaF(ir.Shape{}, 2), kaF(ir.Shape{}, 0.3))[0]
	kaCheck(t, "range float", got, ir.Shape{4}, 1, 1.3, 1+2*0.3, 1+3*0.3)
}
