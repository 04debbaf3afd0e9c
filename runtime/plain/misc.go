// Miscellaneous kernels: Cast, Shape, ConstantOfShape, Range, Constant,
// Identity and inference-mode Dropout.

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Cast", kernelCast)
	register("Shape", kernelShape)
	register("ConstantOfShape", kernelConstantOfShape)
	register("Range", kernelRange)
	register("Constant", kernelConstant)
	register("Identity", kernelIdentity)
	register("Dropout", kernelDropout)
}

// onnxDTypes maps ONNX TensorProto.DataType numbers to IR dtypes.
var onnxDTypes = map[int64]ir.DType{
	1:  ir.Float32,
	2:  ir.Uint8,
	3:  ir.Int8,
	5:  ir.Int16,
	6:  ir.Int32,
	7:  ir.Int64,
	9:  ir.Bool,
	10: ir.Float16,
	11: ir.Float64,
}

// onnxDTypeNames names the ONNX element types the IR lacks, for messages.
var onnxDTypeNames = map[int64]string{
	0: "UNDEFINED", 4: "UINT16", 8: "STRING", 12: "UINT32", 13: "UINT64",
	14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN",
	18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4",
	22: "INT4",
}

// roundFloat32 rounds x to the nearest float32.
func roundFloat32(x float64) float64 { return float64(float32(x)) }

// roundFloat16 rounds x to the nearest IEEE half-precision value (ties to
// even), overflowing to ±Inf as a float->half conversion does.
func roundFloat16(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return x
	}
	a := math.Abs(x)
	var r float64
	switch {
	case a >= 65520: // halfway between 65504 (max half) and 2^16 rounds up
		r = math.Inf(1)
	case a < 0x1p-14: // subnormal: fixed quantum 2^-24
		r = math.RoundToEven(a*0x1p24) * 0x1p-24
	default:
		_, e := math.Frexp(a) // a = f·2^e, f in [0.5, 1)
		q := math.Ldexp(1, e-11)
		r = math.RoundToEven(a/q) * q
	}
	return math.Copysign(r, x)
}

// roundTo rounds a float64 to the precision of the float dtype d.
func roundTo(d ir.DType, x float64) float64 {
	switch d {
	case ir.Float32:
		return roundFloat32(x)
	case ir.Float16:
		return roundFloat16(x)
	}
	return x
}

// castTensor converts t to dtype to: float->int truncates toward zero and
// wraps to the target width, anything->bool tests for non-zero, and floats
// are rounded to the target precision.
func castTensor(t *ir.Tensor, to ir.DType) *ir.Tensor {
	out := &ir.Tensor{DType: to, Shape: t.Shape.Clone()}
	switch {
	case to.IsFloat():
		out.Float = make([]float64, t.Len())
		if t.DType.IsFloat() {
			for i, v := range t.Float {
				out.Float[i] = roundTo(to, v)
			}
		} else {
			for i, v := range t.Int {
				out.Float[i] = roundTo(to, float64(v))
			}
		}
	case to == ir.Bool:
		out.Int = make([]int64, t.Len())
		if t.DType.IsFloat() {
			for i, v := range t.Float {
				if v != 0 {
					out.Int[i] = 1
				}
			}
		} else {
			for i, v := range t.Int {
				if v != 0 {
					out.Int[i] = 1
				}
			}
		}
	default:
		out.Int = make([]int64, t.Len())
		if t.DType.IsFloat() {
			for i, v := range t.Float {
				out.Int[i] = floatToInt(to, v)
			}
		} else {
			for i, v := range t.Int {
				out.Int[i] = wrapInt(to, v)
			}
		}
	}
	return out
}

// kernelCast is ONNX Cast to the element type of the "to" attribute.
func kernelCast(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	a, ok := n.Attrs["to"]
	if !ok {
		return nil, fmt.Errorf("missing \"to\" attribute")
	}
	if a.Kind == ir.AttrString {
		return nil, unsupported("Cast to %q (string-typed \"to\" of opset 1)", a.String)
	}
	to, ok := onnxDTypes[a.Int]
	if !ok {
		name := onnxDTypeNames[a.Int]
		if name == "" {
			name = fmt.Sprintf("data type %d", a.Int)
		}
		return nil, unsupported("Cast to %s", name)
	}
	return []*ir.Tensor{castTensor(in[0], to)}, nil
}

// kernelShape is ONNX Shape, with the start/end attributes of opset 15
// (negative values count from the end; both are clamped to [0, rank]).
func kernelShape(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	rank := int64(len(in[0].Shape))
	start := n.Attrs.Int("start", 0)
	end := n.Attrs.Int("end", rank)
	if start < 0 {
		start += rank
	}
	if end < 0 {
		end += rank
	}
	start, end = clampInt64(start, 0, rank), clampInt64(end, 0, rank)
	dims := []int64{}
	for i := start; i < end; i++ {
		dims = append(dims, int64(in[0].Shape[i]))
	}
	return []*ir.Tensor{ir.NewInt(ir.Shape{len(dims)}, dims)}, nil
}

// kernelConstantOfShape is ONNX ConstantOfShape: a tensor of the given
// shape filled with the one-element value attribute (default float 0).
func kernelConstantOfShape(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	spec := in[0].Ints()
	shape := make(ir.Shape, len(spec))
	for i, d := range spec {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("invalid dimension %d in shape %v", d, spec)
		}
		shape[i] = int(d)
	}
	value := ir.NewFloat(ir.Shape{1}, []float64{0})
	if a, ok := n.Attrs["value"]; ok {
		if a.Kind != ir.AttrTensor || a.Tensor == nil || a.Tensor.Len() != 1 {
			return nil, fmt.Errorf("value attribute must be a one-element tensor")
		}
		value = a.Tensor
	}
	size := shape.Size()
	out := &ir.Tensor{DType: value.DType, Shape: shape}
	if value.DType.IsFloat() {
		out.Float = make([]float64, size)
		for i := range out.Float {
			out.Float[i] = value.Float[0]
		}
	} else {
		out.Int = make([]int64, size)
		for i := range out.Int {
			out.Int[i] = value.Int[0]
		}
	}
	return []*ir.Tensor{out}, nil
}

// kernelRange is ONNX Range: start, start+delta, ... while before limit;
// max(ceil((limit-start)/delta), 0) elements of start's type.
func kernelRange(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 3); err != nil {
		return nil, err
	}
	const maxLen = 1 << 31
	start, limit, delta := in[0], in[1], in[2]
	for _, t := range in[:3] {
		if t.Len() != 1 {
			return nil, fmt.Errorf("inputs must be scalars, got shape %v", t.Shape)
		}
	}
	if start.DType.IsFloat() {
		s, l, d := start.Floats()[0], limit.Floats()[0], delta.Floats()[0]
		if d == 0 {
			return nil, fmt.Errorf("delta is zero")
		}
		cnt := math.Max(math.Ceil((l-s)/d), 0)
		if math.IsNaN(cnt) || cnt > maxLen {
			return nil, fmt.Errorf("range of %v elements", cnt)
		}
		out := &ir.Tensor{DType: start.DType, Shape: ir.Shape{int(cnt)}, Float: make([]float64, int(cnt))}
		for i := range out.Float {
			out.Float[i] = s + float64(i)*d
		}
		return []*ir.Tensor{out}, nil
	}
	s, l, d := start.Ints()[0], limit.Ints()[0], delta.Ints()[0]
	if d == 0 {
		return nil, fmt.Errorf("delta is zero")
	}
	diff := l - s
	var cnt int64
	switch {
	case d > 0 && diff > 0:
		cnt = (diff + d - 1) / d
	case d < 0 && diff < 0:
		cnt = (diff + d + 1) / d
	}
	if cnt > maxLen {
		return nil, fmt.Errorf("range of %d elements", cnt)
	}
	out := &ir.Tensor{DType: start.DType, Shape: ir.Shape{int(cnt)}, Int: make([]int64, cnt)}
	for i := range out.Int {
		out.Int[i] = wrapInt(start.DType, s+int64(i)*d)
	}
	return []*ir.Tensor{out}, nil
}

// kernelConstant is ONNX Constant: the tensor in value, or one built from
// value_float(s) (float32) or value_int(s) (int64).
func kernelConstant(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	for _, name := range []string{"sparse_value", "value_string", "value_strings"} {
		if n.Attrs.Has(name) {
			return nil, unsupported("Constant with %s", name)
		}
	}
	if a, ok := n.Attrs["value"]; ok {
		if a.Kind != ir.AttrTensor || a.Tensor == nil {
			return nil, fmt.Errorf("value attribute is not a tensor")
		}
		return []*ir.Tensor{a.Tensor.Clone()}, nil
	}
	if a, ok := n.Attrs["value_float"]; ok {
		return []*ir.Tensor{ir.NewFloat(ir.Shape{}, []float64{roundFloat32(a.Float)})}, nil
	}
	if a, ok := n.Attrs["value_floats"]; ok {
		data := make([]float64, len(a.Floats))
		for i, v := range a.Floats {
			data[i] = roundFloat32(v)
		}
		return []*ir.Tensor{ir.NewFloat(ir.Shape{len(data)}, data)}, nil
	}
	if a, ok := n.Attrs["value_int"]; ok {
		return []*ir.Tensor{ir.NewInt(ir.Shape{}, []int64{a.Int})}, nil
	}
	if a, ok := n.Attrs["value_ints"]; ok {
		data := append([]int64{}, a.Ints...)
		return []*ir.Tensor{ir.NewInt(ir.Shape{len(data)}, data)}, nil
	}
	return nil, fmt.Errorf("no value attribute")
}

// kernelIdentity is ONNX Identity (a copy).
func kernelIdentity(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	return []*ir.Tensor{in[0].Clone()}, nil
}

// kernelDropout is ONNX Dropout at inference: the output is a copy of the
// input and the optional mask is all true (of the input's type before opset
// 10, bool after). Training mode (opset 12 input) with a non-zero ratio is
// random and unsupported.
func kernelDropout(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	ratio := n.Attrs.Float("ratio", 0.5)
	if hasInput(in, 1) {
		f, _, err := scalarOf(in[1], "ratio")
		if err != nil {
			return nil, err
		}
		ratio = f
	}
	if hasInput(in, 2) {
		_, train, err := scalarOf(in[2], "training_mode")
		if err != nil {
			return nil, err
		}
		if train != 0 && ratio != 0 {
			return nil, unsupported("training-mode Dropout")
		}
	}
	if opset < 7 && n.Attrs.Int("is_test", 0) == 0 {
		return nil, unsupported("training-mode Dropout (is_test=0)")
	}
	outs := []*ir.Tensor{x.Clone()}
	if len(n.Outputs) > 1 {
		d := ir.Bool
		if opset < 10 {
			d = x.DType
		}
		mask := &ir.Tensor{DType: d, Shape: x.Shape.Clone()}
		if d.IsFloat() {
			mask.Float = make([]float64, x.Len())
			for i := range mask.Float {
				mask.Float[i] = 1
			}
		} else {
			mask.Int = make([]int64, x.Len())
			for i := range mask.Int {
				mask.Int[i] = 1
			}
		}
		outs = append(outs, mask)
	}
	return outs, nil
}
