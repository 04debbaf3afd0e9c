package onnx

import (
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ciphercut/ciphercut/frontends/onnx/onnxpb"
	"github.com/ciphercut/ciphercut/ir"
)

// fuzzSeeds adds the named testsuite files to the corpus.
func fuzzSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(suiteDir, "onnx", name))
		if err == nil {
			f.Add(data)
		}
	}
}

func FuzzDecode(f *testing.F) {
	fuzzSeeds(f,
		"test_relu/model.onnx",
		"test_add_bcast/model.onnx",
		"test_basic_conv_with_padding/model.onnx",
		"test_clip_default_inbounds/model.onnx",
		"test_constant/model.onnx",
		"test_gemm_default_single_elem_vector_bias/model.onnx",
		"test_split_equal_parts_1d/model.onnx",
		"test_cast_FLOAT_to_STRING/model.onnx",
		"test_identity_sequence/model.onnx",
	)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Decode(data, "fuzz.onnx")
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fuzz.onnx: ") {
				t.Fatalf("error without the file name: %q", msg)
			}
			if strings.Contains(msg, "internal error") {
				t.Fatalf("recovered panic: %s", msg)
			}
			return
		}
		if err := ir.Verify(g); err != nil {
			t.Fatalf("decoded graph does not verify: %v", err)
		}
		if err := g.Sort(); err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		if err := ir.Dump(&sb, g); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzReadTensor(f *testing.F) {
	fuzzSeeds(f,
		"test_relu/test_data_set_0/input_0.pb",
		"test_add_uint8/test_data_set_0/input_0.pb",
		"test_cast_FLOAT_to_FLOAT16/test_data_set_0/output_0.pb",
		"test_cast_FLOAT_to_DOUBLE/test_data_set_0/output_0.pb",
		"test_cast_STRING_to_FLOAT/test_data_set_0/input_0.pb",
		"test_identity_opt/test_data_set_0/input_0.pb",
		"test_identity_sequence/test_data_set_0/input_0.pb",
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		tensor, name, err := DecodeTensor(data, "fuzz.pb")
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "fuzz.pb: ") {
				t.Fatalf("error without the file name: %q", msg)
			}
			if strings.Contains(msg, "internal error") {
				t.Fatalf("recovered panic: %s", msg)
			}
			return
		}
		if err := tensor.Validate(); err != nil {
			t.Fatal(err)
		}
		// Decoded data survives a round trip exactly (NaNs as NaNs).
		back, err := TensorFromProto(TensorToProto(tensor, name))
		if err != nil {
			t.Fatal(err)
		}
		if back.DType != tensor.DType || !back.Shape.Equal(tensor.Shape) || back.Len() != tensor.Len() {
			t.Fatalf("round trip: %+v != %+v", back, tensor)
		}
		for i := range tensor.Float {
			a, b := tensor.Float[i], back.Float[i]
			if a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
				t.Fatalf("element %d: %v != %v", i, a, b)
			}
		}
		for i := range tensor.Int {
			if tensor.Int[i] != back.Int[i] {
				t.Fatalf("element %d: %v != %v", i, tensor.Int[i], back.Int[i])
			}
		}
	})
}

// TestMutatedModels decodes structurally mutated versions of the testsuite
// models (fields cleared, numbers and names changed, list entries dropped or
// duplicated), which byte-level fuzzing rarely reaches: every result must be a
// verified graph or an error naming the file, never a panic.
func TestMutatedModels(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(suiteDir, "onnx", "*", "model.onnx"))
	more, _ := filepath.Glob(filepath.Join(suiteDir, "models", "*", "model.onnx"))
	paths = append(paths, more...)
	if len(paths) == 0 {
		t.Skip("no models")
	}
	rng := rand.New(rand.NewSource(1))
	mutants, loaded := 0, 0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var orig onnxpb.ModelProto
		if err := proto.Unmarshal(data, &orig); err != nil {
			t.Fatal(err)
		}
		var names []string
		collectStrings(orig.ProtoReflect(), &names)
		for k := 0; k < 12; k++ {
			m := proto.Clone(&orig).(*onnxpb.ModelProto)
			mutate(m.ProtoReflect(), rng, names, 0.05+0.1*rng.Float64())
			data, err := proto.Marshal(m)
			if err != nil {
				continue
			}
			mutants++
			g, err := Decode(data, "mutant.onnx")
			if err != nil {
				if msg := err.Error(); !strings.HasPrefix(msg, "mutant.onnx: ") || strings.Contains(msg, "internal error") {
					t.Fatalf("%s mutant: %s", path, msg)
				}
				continue
			}
			loaded++
			if err := ir.Verify(g); err != nil {
				t.Fatalf("%s mutant: %v", path, err)
			}
		}
	}
	t.Logf("%d mutants, %d loaded", mutants, loaded)
}

// collectStrings gathers the string values of m, to swap names around.
func collectStrings(m protoreflect.Message, out *[]string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if fd.Kind() == protoreflect.MessageKind {
					collectStrings(l.Get(i).Message(), out)
				} else if fd.Kind() == protoreflect.StringKind {
					*out = append(*out, l.Get(i).String())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			collectStrings(v.Message(), out)
		case fd.Kind() == protoreflect.StringKind:
			*out = append(*out, v.String())
		}
		return true
	})
}

// mutate randomly changes the populated fields of m, each with probability p.
func mutate(m protoreflect.Message, rng *rand.Rand, names []string, p float64) {
	scalar := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
		switch fd.Kind() {
		case protoreflect.Int64Kind:
			return protoreflect.ValueOfInt64([]int64{-1, 0, 1, 2, 7, 17, 1 << 40, math.MaxInt64}[rng.Intn(8)])
		case protoreflect.Int32Kind:
			return protoreflect.ValueOfInt32(int32(rng.Intn(26) - 1))
		case protoreflect.Uint64Kind:
			return protoreflect.ValueOfUint64(rng.Uint64())
		case protoreflect.FloatKind:
			return protoreflect.ValueOfFloat32(float32([]float64{0, -1, math.NaN(), math.Inf(1)}[rng.Intn(4)]))
		case protoreflect.DoubleKind:
			return protoreflect.ValueOfFloat64([]float64{0, -1, math.NaN(), math.Inf(1)}[rng.Intn(4)])
		case protoreflect.EnumKind:
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.Intn(24)))
		case protoreflect.StringKind:
			if len(names) > 0 && rng.Intn(4) > 0 {
				return protoreflect.ValueOfString(names[rng.Intn(len(names))])
			}
			return protoreflect.ValueOfString([]string{"", "x", "ai.onnx", "com.microsoft"}[rng.Intn(4)])
		case protoreflect.BytesKind:
			b := append([]byte{}, v.Bytes()...)
			if len(b) > 0 {
				b = b[:rng.Intn(len(b))]
			}
			return protoreflect.ValueOfBytes(b)
		}
		return v
	}
	type change struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var fields []change
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fields = append(fields, change{fd, v})
		return true
	})
	for _, f := range fields {
		fd, v := f.fd, f.v
		switch {
		case fd.IsMap():
		case fd.IsList():
			l := v.List()
			if l.Len() > 0 && rng.Float64() < p {
				if rng.Intn(2) == 0 {
					l.Truncate(rng.Intn(l.Len()))
				} else if fd.Kind() == protoreflect.MessageKind {
					c := proto.Clone(l.Get(rng.Intn(l.Len())).Message().Interface())
					l.Append(protoreflect.ValueOfMessage(c.ProtoReflect()))
				} else {
					l.Append(l.Get(rng.Intn(l.Len())))
				}
			}
			for i := 0; i < l.Len(); i++ {
				if fd.Kind() == protoreflect.MessageKind {
					mutate(l.Get(i).Message(), rng, names, p)
				} else if rng.Float64() < p {
					l.Set(i, scalar(fd, l.Get(i)))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if rng.Float64() < p/2 {
				m.Clear(fd)
			} else {
				mutate(v.Message(), rng, names, p)
			}
		default:
			if rng.Float64() < p/2 {
				m.Clear(fd)
			} else if rng.Float64() < p {
				m.Set(fd, scalar(fd, v))
			}
		}
	}
}
