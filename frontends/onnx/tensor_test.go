package onnx

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/ir"
)

// TestRawVsTyped checks that raw_data and the typed fields decode to the same
// tensor for every supported element type.
func TestRawVsTyped(t *testing.T) {
	le := binary.LittleEndian
	dims := []int64{2, 2}
	cases := []struct {
		dt    onnxpb.TensorProto_DataType
		typed func(tp *onnxpb.TensorProto)
		raw   []byte
		want  *ir.Tensor
	}{
		{onnxpb.TensorProto_FLOAT, func(tp *onnxpb.TensorProto) { tp.FloatData = []float32{1.5, -2, 0.1, 3e38} },
			le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil,
				math.Float32bits(1.5)), math.Float32bits(-2)), math.Float32bits(0.1)), math.Float32bits(3e38)),
			&ir.Tensor{DType: ir.Float32, Float: []float64{1.5, -2, float64(float32(0.1)), float64(float32(3e38))}}},
		{onnxpb.TensorProto_DOUBLE, func(tp *onnxpb.TensorProto) { tp.DoubleData = []float64{1.5, -2, 0.1, 1e300} },
			le.AppendUint64(le.AppendUint64(le.AppendUint64(le.AppendUint64(nil,
				math.Float64bits(1.5)), math.Float64bits(-2)), math.Float64bits(0.1)), math.Float64bits(1e300)),
			&ir.Tensor{DType: ir.Float64, Float: []float64{1.5, -2, 0.1, 1e300}}},
		{onnxpb.TensorProto_FLOAT16, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{0x3c00, 0xc000, 0x3555, 0x7bff} },
			[]byte{0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0xff, 0x7b},
			&ir.Tensor{DType: ir.Float16, Float: []float64{1, -2, 0.333251953125, 65504}}},
		{onnxpb.TensorProto_INT64, func(tp *onnxpb.TensorProto) { tp.Int64Data = []int64{1, -2, math.MaxInt64, math.MinInt64} },
			le.AppendUint64(le.AppendUint64(le.AppendUint64(le.AppendUint64(nil, 1), uint64(1<<64-2)), math.MaxInt64), 1<<63),
			&ir.Tensor{DType: ir.Int64, Int: []int64{1, -2, math.MaxInt64, math.MinInt64}}},
		{onnxpb.TensorProto_INT32, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{1, -2, math.MaxInt32, math.MinInt32} },
			le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 1), 1<<32-2), math.MaxInt32), 1<<31),
			&ir.Tensor{DType: ir.Int32, Int: []int64{1, -2, math.MaxInt32, math.MinInt32}}},
		{onnxpb.TensorProto_INT16, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{1, -2, 32767, -32768} },
			[]byte{1, 0, 0xfe, 0xff, 0xff, 0x7f, 0, 0x80},
			&ir.Tensor{DType: ir.Int16, Int: []int64{1, -2, 32767, -32768}}},
		{onnxpb.TensorProto_INT8, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{1, -2, 127, -128} },
			[]byte{1, 0xfe, 0x7f, 0x80},
			&ir.Tensor{DType: ir.Int8, Int: []int64{1, -2, 127, -128}}},
		{onnxpb.TensorProto_UINT8, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{1, 2, 127, 255} },
			[]byte{1, 2, 127, 255},
			&ir.Tensor{DType: ir.Uint8, Int: []int64{1, 2, 127, 255}}},
		{onnxpb.TensorProto_BOOL, func(tp *onnxpb.TensorProto) { tp.Int32Data = []int32{1, 0, 0, 1} },
			[]byte{1, 0, 0, 1},
			&ir.Tensor{DType: ir.Bool, Int: []int64{1, 0, 0, 1}}},
	}
	for _, c := range cases {
		t.Run(c.dt.String(), func(t *testing.T) {
			c.want.Shape = ir.Shape{2, 2}
			typed := &onnxpb.TensorProto{Name: proto.String("t"), Dims: dims, DataType: proto.Int32(int32(c.dt))}
			c.typed(typed)
			raw := &onnxpb.TensorProto{Name: proto.String("t"), Dims: dims, DataType: proto.Int32(int32(c.dt)), RawData: c.raw}
			for _, tp := range []*onnxpb.TensorProto{typed, raw} {
				got, err := TensorFromProto(tp)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %+v, want %+v", got, c.want)
				}
			}
			// Round trip through TensorToProto and the wire format.
			data := marshal(t, TensorToProto(c.want, "t"))
			back, name, err := DecodeTensor(data, "t.pb")
			if err != nil || name != "t" || !reflect.DeepEqual(back, c.want) {
				t.Errorf("round trip: %+v %q %v", back, name, err)
			}
			// A wrong raw length is an error.
			raw.RawData = raw.RawData[:len(raw.RawData)-1]
			if _, err := TensorFromProto(raw); err == nil || !strings.Contains(err.Error(), `tensor "t": raw_data holds`) {
				t.Errorf("short raw_data: %v", err)
			}
		})
	}
}

func TestTensorEdgeCases(t *testing.T) {
	// Scalars and empty tensors.
	scalar, err := TensorFromProto(floatTensor("s", nil, 2.5))
	if err != nil || scalar.Shape == nil || len(scalar.Shape) != 0 || scalar.Float[0] != 2.5 {
		t.Errorf("scalar: %+v %v", scalar, err)
	}
	empty, err := TensorFromProto(floatTensor("e", []int64{0, 3}))
	if err != nil || empty.Len() != 0 || !empty.Shape.Equal(ir.Shape{0, 3}) {
		t.Errorf("empty: %+v %v", empty, err)
	}
	for _, c := range []struct {
		tp          *onnxpb.TensorProto
		unsupported bool
		want        string
	}{
		{floatTensor("neg", []int64{-1}), false, "negative dimension"},
		{&onnxpb.TensorProto{Name: proto.String("nt"), Dims: []int64{1}}, false, "no data type"},
		{&onnxpb.TensorProto{Name: proto.String("bf"), DataType: proto.Int32(16), RawData: []byte{0, 0}}, true, "unsupported element type BFLOAT16"},
		{&onnxpb.TensorProto{Name: proto.String("c64"), DataType: proto.Int32(14), FloatData: []float32{1, 2}}, true, "COMPLEX64"},
		{&onnxpb.TensorProto{Name: proto.String("f8"), DataType: proto.Int32(17), RawData: []byte{0}}, true, "FLOAT8E4M3FN"},
		{&onnxpb.TensorProto{Name: proto.String("bad"), DataType: proto.Int32(99)}, false, "invalid element type 99"},
		{&onnxpb.TensorProto{Name: proto.String("seg"), DataType: proto.Int32(1), Segment: &onnxpb.TensorProto_Segment{}}, true, "segmented"},
		{&onnxpb.TensorProto{Name: proto.String("ext"), DataType: proto.Int32(1), ExternalData: []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("x.bin")}}}, true, `tensor "ext": data stored outside the model file (external data, location "x.bin")`},
	} {
		_, err := TensorFromProto(c.tp)
		if err == nil || isUnsupported(err) != c.unsupported || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want unsupported=%v containing %q", c.tp.GetName(), err, c.unsupported, c.want)
		}
	}
	if _, err := TensorFromProto(nil); err == nil {
		t.Errorf("nil tensor accepted")
	}
	if tp := TensorToProto(nil, "n"); tp.GetDataType() != 0 || tp.GetName() != "n" {
		t.Errorf("TensorToProto(nil): %v", tp)
	}
}

func TestTensorFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "input_0.pb")
	x := ir.NewFloat(ir.Shape{2, 3}, []float64{0.1, 1, 2, 3, 4, 1e-30})
	if err := WriteTensorFile(path, x, "x"); err != nil {
		t.Fatal(err)
	}
	got, name, err := ReadTensorFile(path)
	if err != nil || name != "x" {
		t.Fatalf("%v %q", err, name)
	}
	// Float32 tensors are stored as float32.
	for i, v := range x.Float {
		if got.Float[i] != float64(float32(v)) {
			t.Errorf("element %d: %v, want %v", i, got.Float[i], float64(float32(v)))
		}
	}
	// Overwrite in place; no temporary files are left behind.
	if err := WriteTensorFile(path, ir.NewInt(ir.Shape{1}, []int64{7}), "y"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
	if got, name, err := ReadTensorFile(path); err != nil || name != "y" || got.Int[0] != 7 {
		t.Errorf("rewritten: %+v %q %v", got, name, err)
	}
	// Errors name the file.
	for _, c := range []struct {
		path string
		err  error
	}{
		{filepath.Join(dir, "missing", "a.pb"), WriteTensorFile(filepath.Join(dir, "missing", "a.pb"), x, "x")},
		{path, WriteTensorFile(path, &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2}}, "bad")},
		{path, WriteTensorFile(path, &ir.Tensor{Shape: ir.Shape{}}, "undef")},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.path)
		} else {
			checkErr(t, c.err, c.path)
		}
	}
	for name, data := range map[string][]byte{
		"empty.pb":  {},
		"model.pb":  marshal(t, reluModel()),
		"random.pb": []byte("\xff\xfe\xfd garbage"),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if _, _, err := ReadTensorFile(p); err == nil {
			t.Errorf("%s: read as a tensor", name)
		} else {
			checkErr(t, err, p)
			t.Log(err)
		}
	}
	if _, _, err := ReadTensorFile(filepath.Join(dir, "nope.pb")); err == nil {
		t.Errorf("nonexistent file read")
	} else {
		checkErr(t, err, filepath.Join(dir, "nope.pb"))
	}
}

// TestSequenceData checks that the sequence and optional test data are
// reported as unsupported.
func TestSequenceData(t *testing.T) {
	for _, c := range []string{"test_identity_sequence", "test_identity_opt"} {
		p := filepath.Join(suiteDir, "onnx", c, "test_data_set_0", "input_0.pb")
		if _, err := os.Stat(p); err != nil {
			t.Skip(err)
		}
		_, _, err := ReadTensorFile(p)
		if err == nil || !isUnsupported(err) || !strings.Contains(err.Error(), "SequenceProto/OptionalProto") {
			t.Errorf("%s: %v", c, err)
		}
	}
}

func TestFloat16(t *testing.T) {
	// Every half value converts exactly and back.
	for h := 0; h < 1<<16; h++ {
		v := float16Value(uint16(h))
		got := float16Bits(v)
		if math.IsNaN(v) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 || got&0x8000 != uint16(h)&0x8000 {
				t.Errorf("NaN %#04x -> %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, v, got)
		}
	}
	for _, c := range []struct {
		f    float64
		want uint16
	}{
		{1 + 0x1p-11, 0x3c00},   // tie, to even
		{1 + 3*0x1p-11, 0x3c02}, // tie, to even
		{1 + 0x1p-11 + 1e-9, 0x3c01},
		{65519, 0x7bff},
		{65520, 0x7c00},
		{-1e10, 0xfc00},
		{0x1p-25, 0}, // tie with zero, to even
		{0x1p-25 * 1.5, 1},
		{0x1p-14 - 0x1p-25, 0x0400}, // rounds up into the normal range
		{math.Copysign(0, -1), 0x8000},
	} {
		if got := float16Bits(c.f); got != c.want {
			t.Errorf("float16Bits(%v) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
}
