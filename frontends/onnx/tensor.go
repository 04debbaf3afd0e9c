package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/ir"
)

// unsupportedError is valid ONNX content that ciphercut does not handle, with
// a message of its own; it wraps an *ir.UnsupportedError so that errors.As
// finds one.
type unsupportedError struct {
	msg string
	ue  *ir.UnsupportedError
}

func (e *unsupportedError) Error() string { return e.msg }
func (e *unsupportedError) Unwrap() error { return e.ue }

// unsupportedf returns an error wrapping an *ir.UnsupportedError whose message
// is the formatted text.
func unsupportedf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &unsupportedError{msg: msg, ue: &ir.UnsupportedError{Reason: msg}}
}

// dataTypeName names an ONNX TensorProto.DataType, including the types added
// after the ONNX 1.12 schema that onnxpb was generated from.
func dataTypeName(dt int32) string {
	if s, ok := onnxpb.TensorProto_DataType_name[dt]; ok {
		return s
	}
	switch dt {
	case 17:
		return "FLOAT8E4M3FN"
	case 18:
		return "FLOAT8E4M3FNUZ"
	case 19:
		return "FLOAT8E5M2"
	case 20:
		return "FLOAT8E5M2FNUZ"
	case 21:
		return "UINT4"
	case 22:
		return "INT4"
	case 23:
		return "FLOAT4E2M1"
	}
	return fmt.Sprintf("data type %d", dt)
}

// dtypePairs pairs each IR element type with its ONNX one; irDType and
// onnxDType read it in either direction.
var dtypePairs = []struct {
	ir   ir.DType
	onnx onnxpb.TensorProto_DataType
}{
	{ir.Float32, onnxpb.TensorProto_FLOAT},
	{ir.Float64, onnxpb.TensorProto_DOUBLE},
	{ir.Float16, onnxpb.TensorProto_FLOAT16},
	{ir.Int64, onnxpb.TensorProto_INT64},
	{ir.Int32, onnxpb.TensorProto_INT32},
	{ir.Int16, onnxpb.TensorProto_INT16},
	{ir.Int8, onnxpb.TensorProto_INT8},
	{ir.Uint8, onnxpb.TensorProto_UINT8},
	{ir.Bool, onnxpb.TensorProto_BOOL},
}

// irDType maps an ONNX element type to the IR's. UNDEFINED maps to
// ir.Undefined without error; the caller decides whether that is allowed.
func irDType(dt int32) (ir.DType, error) {
	if onnxpb.TensorProto_DataType(dt) == onnxpb.TensorProto_UNDEFINED {
		return ir.Undefined, nil
	}
	for _, p := range dtypePairs {
		if p.onnx == onnxpb.TensorProto_DataType(dt) {
			return p.ir, nil
		}
	}
	if dt > 0 && dt <= 23 {
		return ir.Undefined, unsupportedf("unsupported element type %s", dataTypeName(dt))
	}
	return ir.Undefined, fmt.Errorf("invalid element type %d", dt)
}

// onnxDType maps an IR element type to ONNX's.
func onnxDType(d ir.DType) onnxpb.TensorProto_DataType {
	for _, p := range dtypePairs {
		if p.ir == d {
			return p.onnx
		}
	}
	return onnxpb.TensorProto_UNDEFINED
}

// rawSize is the width in bytes of one element in raw_data.
func rawSize(d ir.DType) int {
	switch d {
	case ir.Float64, ir.Int64:
		return 8
	case ir.Float32, ir.Int32:
		return 4
	case ir.Float16, ir.Int16:
		return 2
	}
	return 1
}

// TensorFromProto converts a TensorProto held inside the protobuf message
// (raw_data in little-endian order, or the typed data fields) to an
// ir.Tensor. Floating data is widened to float64 and integer and boolean data
// to int64. Element types the IR lacks, external, segmented and string data
// are refused with an error wrapping an *ir.UnsupportedError; errors name the
// tensor.
func TensorFromProto(tp *onnxpb.TensorProto) (*ir.Tensor, error) {
	t, err := tensorFromProto(tp)
	if err != nil {
		if tp != nil && tp.GetName() != "" {
			return nil, wrapf(err, "tensor %q", tp.GetName())
		}
		return nil, wrapf(err, "tensor")
	}
	return t, nil
}

// wrapf prefixes err's message with the formatted context, keeping it in the
// error chain.
func wrapf(err error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

func tensorFromProto(tp *onnxpb.TensorProto) (*ir.Tensor, error) {
	if tp == nil {
		return nil, errors.New("missing tensor")
	}
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(tp.ExternalData) > 0 {
		loc := ""
		for _, kv := range tp.ExternalData {
			if kv.GetKey() == "location" {
				loc = kv.GetValue()
			}
		}
		return nil, unsupportedf("data stored outside the model file (external data, location %q) is not supported; "+
			"save the model with its tensors inside (onnx.save_model(model, path, save_as_external_data=False))", loc)
	}
	if tp.Segment != nil {
		return nil, unsupportedf("segmented tensor data is not supported")
	}
	if tp.DataType == nil {
		return nil, errors.New("no data type")
	}
	dt, err := irDType(tp.GetDataType())
	if err != nil {
		return nil, err
	}
	if dt == ir.Undefined {
		return nil, errors.New("data type UNDEFINED")
	}
	shape := make(ir.Shape, len(tp.Dims))
	n := 1
	for i, d := range tp.Dims {
		if d < 0 {
			return nil, fmt.Errorf("negative dimension %d in shape %v", d, tp.Dims)
		}
		if n > 0 && int(d) > math.MaxInt/n {
			return nil, fmt.Errorf("shape %v is too large", tp.Dims)
		}
		shape[i] = int(d)
		n *= int(d)
	}
	t := &ir.Tensor{DType: dt, Shape: shape}
	if len(tp.RawData) > 0 {
		size := rawSize(dt)
		if len(tp.RawData)%size != 0 || len(tp.RawData)/size != n {
			return nil, fmt.Errorf("raw_data holds %d bytes, want %d elements of %d bytes for %s%v", len(tp.RawData), n, size, dt, shape)
		}
		decodeRaw(t, tp.RawData, n)
		return t, nil
	}
	var have int
	switch dt {
	case ir.Float32:
		have = len(tp.FloatData)
	case ir.Float64:
		have = len(tp.DoubleData)
	case ir.Int64:
		have = len(tp.Int64Data)
	default:
		have = len(tp.Int32Data)
	}
	if have != n {
		return nil, fmt.Errorf("holds %d elements, want %d for %s%v", have, n, dt, shape)
	}
	decodeTyped(t, tp, n)
	return t, nil
}

// decodeRaw fills t from little-endian raw bytes holding n elements.
func decodeRaw(t *ir.Tensor, raw []byte, n int) {
	le := binary.LittleEndian
	if t.DType.IsFloat() {
		t.Float = make([]float64, n)
	} else {
		t.Int = make([]int64, n)
	}
	for i := 0; i < n; i++ {
		switch t.DType {
		case ir.Float32:
			t.Float[i] = float64(math.Float32frombits(le.Uint32(raw[4*i:])))
		case ir.Float64:
			t.Float[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		case ir.Float16:
			t.Float[i] = float16Value(le.Uint16(raw[2*i:]))
		case ir.Int64:
			t.Int[i] = int64(le.Uint64(raw[8*i:]))
		case ir.Int32:
			t.Int[i] = int64(int32(le.Uint32(raw[4*i:])))
		case ir.Int16:
			t.Int[i] = int64(int16(le.Uint16(raw[2*i:])))
		case ir.Int8:
			t.Int[i] = int64(int8(raw[i]))
		case ir.Uint8:
			t.Int[i] = int64(raw[i])
		case ir.Bool:
			if raw[i] != 0 {
				t.Int[i] = 1
			}
		}
	}
}

// decodeTyped fills t from the TensorProto's typed data field.
func decodeTyped(t *ir.Tensor, tp *onnxpb.TensorProto, n int) {
	if t.DType.IsFloat() {
		t.Float = make([]float64, n)
	} else {
		t.Int = make([]int64, n)
	}
	for i := 0; i < n; i++ {
		switch t.DType {
		case ir.Float32:
			t.Float[i] = float64(tp.FloatData[i])
		case ir.Float64:
			t.Float[i] = tp.DoubleData[i]
		case ir.Float16:
			t.Float[i] = float16Value(uint16(tp.Int32Data[i]))
		case ir.Int64:
			t.Int[i] = tp.Int64Data[i]
		case ir.Int32:
			t.Int[i] = int64(tp.Int32Data[i])
		case ir.Int16:
			t.Int[i] = int64(int16(tp.Int32Data[i]))
		case ir.Int8:
			t.Int[i] = int64(int8(tp.Int32Data[i]))
		case ir.Uint8:
			t.Int[i] = int64(uint8(tp.Int32Data[i]))
		case ir.Bool:
			if tp.Int32Data[i] != 0 {
				t.Int[i] = 1
			}
		}
	}
}

// TensorToProto converts t to a TensorProto named name, with its data in the
// typed fields: float32 data for Float32 (narrowed from float64), double data
// for Float64, IEEE half bit patterns in int32 data for Float16, int64 data
// for Int64 and int32 data for the narrower integer types and Bool (values
// are wrapped to the element type's width, booleans stored as 0 or 1). A nil
// t gives a tensor of type UNDEFINED.
func TensorToProto(t *ir.Tensor, name string) *onnxpb.TensorProto {
	tp := &onnxpb.TensorProto{Name: proto.String(name)}
	if t == nil {
		tp.DataType = proto.Int32(int32(onnxpb.TensorProto_UNDEFINED))
		return tp
	}
	tp.DataType = proto.Int32(int32(onnxDType(t.DType)))
	tp.Dims = make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		tp.Dims[i] = int64(d)
	}
	switch t.DType {
	case ir.Float32:
		fs := t.Floats()
		tp.FloatData = make([]float32, len(fs))
		for i, v := range fs {
			tp.FloatData[i] = float32(v)
		}
	case ir.Float64:
		tp.DoubleData = append([]float64{}, t.Floats()...)
	case ir.Float16:
		fs := t.Floats()
		tp.Int32Data = make([]int32, len(fs))
		for i, v := range fs {
			tp.Int32Data[i] = int32(float16Bits(v))
		}
	case ir.Int64:
		tp.Int64Data = append([]int64{}, t.Ints()...)
	case ir.Int32, ir.Int16, ir.Int8, ir.Uint8, ir.Bool:
		is := t.Ints()
		tp.Int32Data = make([]int32, len(is))
		for i, v := range is {
			var w int32
			switch t.DType {
			case ir.Int32:
				w = int32(v)
			case ir.Int16:
				w = int32(int16(v))
			case ir.Int8:
				w = int32(int8(v))
			case ir.Uint8:
				w = int32(uint8(v))
			case ir.Bool:
				if v != 0 {
					w = 1
				}
			}
			tp.Int32Data[i] = w
		}
	}
	return tp
}

// ReadTensorFile reads a serialized TensorProto (an ONNX test data .pb file)
// and returns the tensor and its name. Error messages start with path; a
// file holding a sequence or optional value (SequenceProto, OptionalProto)
// gives an error wrapping an *ir.UnsupportedError.
func ReadTensorFile(path string) (*ir.Tensor, string, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, "", err
	}
	return DecodeTensor(data, path)
}

// readFile reads a whole file; errors start with path.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %w", path, pe.Err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// DecodeTensor decodes a serialized TensorProto and returns the tensor and
// its name; name (the file name) starts every error message. It never
// panics.
func DecodeTensor(data []byte, name string) (t *ir.Tensor, tensorName string, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, tensorName, err = nil, "", fmt.Errorf("%s: internal error decoding tensor: %v", name, r)
		}
	}()
	if len(data) == 0 {
		return nil, "", fmt.Errorf("%s: empty file, not a serialized ONNX TensorProto", name)
	}
	var tp onnxpb.TensorProto
	perr := proto.Unmarshal(data, &tp)
	if perr == nil && len(tp.ProtoReflect().GetUnknown()) == 0 {
		t, err = TensorFromProto(&tp)
		if err == nil {
			return t, tp.GetName(), nil
		}
	}
	if kind := dataProtoKind(data); kind != "" {
		return nil, "", fmt.Errorf("%s: %w", name, unsupportedf(
			"file holds an ONNX %s, not a TensorProto; only tensor values are supported", kind))
	}
	var m onnxpb.ModelProto
	if proto.Unmarshal(data, &m) == nil && m.Graph != nil && m.IrVersion != nil && len(m.ProtoReflect().GetUnknown()) == 0 {
		return nil, "", fmt.Errorf("%s: file holds an ONNX model, not a TensorProto", name)
	}
	if perr != nil {
		return nil, "", fmt.Errorf("%s: not a serialized ONNX TensorProto (%v)", name, perr)
	}
	if err == nil {
		return nil, "", fmt.Errorf("%s: not a serialized ONNX TensorProto (unknown fields)", name)
	}
	var ue *ir.UnsupportedError
	if errors.As(err, &ue) {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	return nil, "", fmt.Errorf("%s: invalid TensorProto: %w", name, err)
}

// WriteTensorFile writes t as a serialized TensorProto named name. It writes
// a temporary file in the same directory and renames it over path, so path
// never holds a partial file. Error messages start with path.
func WriteTensorFile(path string, t *ir.Tensor, name string) error {
	if t == nil {
		return fmt.Errorf("%s: nil tensor", path)
	}
	if onnxDType(t.DType) == onnxpb.TensorProto_UNDEFINED {
		return fmt.Errorf("%s: tensor %q has element type %s, which ONNX cannot store", path, name, t.DType)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%s: tensor %q: %v", path, name, err)
	}
	data, err := proto.Marshal(TensorToProto(t, name))
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return atomicfile.Write(path, data, 0o644)
}

// float16Value decodes an IEEE 754 half-precision bit pattern.
func float16Value(h uint16) float64 {
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	var v float64
	switch e {
	case 0:
		v = math.Ldexp(m, -24)
	case 0x1f:
		if m == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(m+1024, e-25)
	}
	if h&0x8000 != 0 {
		v = math.Copysign(v, -1)
	}
	return v
}

// float16Bits rounds f to the nearest half-precision value (ties to even)
// and returns its bit pattern; out-of-range values become infinities.
func float16Bits(f float64) uint16 {
	var sign uint16
	if math.Signbit(f) {
		sign = 0x8000
	}
	a := math.Abs(f)
	switch {
	case math.IsNaN(f):
		return sign | 0x7e00
	case a >= 65520: // halfway between 65504 and 2^16 rounds to even: infinity
		return sign | 0x7c00
	case a < 0x1p-14: // subnormal (or zero)
		return sign | uint16(math.RoundToEven(a*0x1p24))
	}
	frac, exp := math.Frexp(a) // a = frac * 2^exp, frac in [0.5, 1)
	m := int(math.RoundToEven((frac*2 - 1) * 1024))
	bits := (exp-1+15)<<10 + m // a mantissa carry moves into the exponent
	return sign | uint16(bits)
}
