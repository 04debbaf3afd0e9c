package npy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciphercut/ciphercut/ir"
)

// The testdata files were written by NumPy 1.24 (np.save).
func TestReadNumPyFiles(t *testing.T) {
	cases := []struct {
		file string
		want *ir.Tensor
	}{
		{"f4_2x3.npy", &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 3}, Float: []float64{0, 0.25, 0.5, 0.75, 1, 1.25}}},
		{"f8_3.npy", &ir.Tensor{DType: ir.Float64, Shape: ir.Shape{3}, Float: []float64{1.5, -2.25, 3e10}}},
		{"i8_2x2x1.npy", &ir.Tensor{DType: ir.Int64, Shape: ir.Shape{2, 2, 1}, Int: []int64{1, -2, 3, 4}}},
		{"b1_3.npy", &ir.Tensor{DType: ir.Bool, Shape: ir.Shape{3}, Int: []int64{1, 0, 1}}},
		{"f4_scalar.npy", &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{}, Float: []float64{7.5}}},
	}
	for _, c := range cases {
		got, err := Read(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", c.file, diff)
		}
	}
}

func TestReadRejects(t *testing.T) {
	for file, want := range map[string]string{
		"f4_fortran.npy": "Fortran",
		"c8_2.npy":       "unsupported .npy dtype",
		"missing.npy":    "no such file",
	} {
		_, err := Read(filepath.Join("testdata", file))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v, want one containing %q", file, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), file) {
			t.Errorf("%s: error %q does not name the file", file, err)
		}
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty.npy":     nil,
		"garbage.npy":   []byte("hello, this is not numpy"),
		"truncated.npy": mustRead(t, "testdata/f4_2x3.npy")[:90],
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, want := range []*ir.Tensor{
		{DType: ir.Float32, Shape: ir.Shape{2, 1, 3}, Float: []float64{1, 2, 3, 4, 5, 6.5}},
		{DType: ir.Float64, Shape: ir.Shape{1}, Float: []float64{1.0 / 3}},
		{DType: ir.Int64, Shape: ir.Shape{2, 2}, Int: []int64{1, -1, 1 << 40, 0}},
		{DType: ir.Float32, Shape: ir.Shape{}, Float: []float64{2}},
	} {
		p := filepath.Join(dir, "t.npy")
		if err := Write(p, want); err != nil {
			t.Fatal(err)
		}
		got, err := Read(p)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("round trip (-want +got)\n%s", diff)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("write left %d files behind, want 1", len(entries))
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"f4_2x3.npy", "i8_2x2x1.npy", "b1_3.npy", "f4_scalar.npy"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tensor, err := Decode(data)
		if err != nil {
			return
		}
		if err := tensor.Validate(); err != nil {
			t.Fatalf("decoded an invalid tensor: %v", err)
		}
	})
}
