package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/ir"
)

// run executes the CLI in-process and returns its error.
func run(args ...string) error {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(os.Stderr)
	return root.Execute()
}

const mlp = "../../testsuite/models/cancer-mlp"

func TestBadInputsGiveOneLineErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	model, err := os.ReadFile(filepath.Join(mlp, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("truncated.onnx", model[:len(model)/2])
	random := write("random.onnx", []byte("\x12\x34 definitely not protobuf \xff\xfe"))
	wrongShape := filepath.Join(dir, "wrong.npy")
	if err := npy.Write(wrongShape, ir.NewFloat(ir.Shape{2, 7}, nil)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", truncated}, "truncated.onnx"},
		{[]string{"inspect", random}, "random.onnx"},
		{[]string{"inspect", filepath.Join(dir, "missing.onnx")}, "missing.onnx"},
		{[]string{"infer", filepath.Join(mlp, "model.onnx"), "-i", wrongShape}, "model expects"},
		{[]string{"infer", filepath.Join(mlp, "model.onnx"), "-i", random}, "unknown tensor file type"},
		{[]string{"infer", filepath.Join(mlp, "model.onnx")}, "model takes 1 inputs"},
		{[]string{"inspect", "--after", "nope", filepath.Join(mlp, "model.onnx")}, "unknown pass"},
		{[]string{"conformance", dir}, "no test cases"},
		{[]string{"demo", "--model", "nope"}, "no bundled model"},
	} {
		err := run(c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line containing %q", c.args, msg, c.want)
		}
	}
}

func TestInferWritesOutputs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.npy")
	if err := run("infer", filepath.Join(mlp, "model.onnx"), "-i", filepath.Join(mlp, "inputs.npy"), "-o", out); err != nil {
		t.Fatal(err)
	}
	got, err := npy.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := npy.Read(filepath.Join(mlp, "expected.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Shape.Equal(want.Shape) {
		t.Fatalf("output shape %v, want %v", got.Shape, want.Shape)
	}
	for i := range want.Float {
		if d := got.Float[i] - want.Float[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("output %d = %g, PyTorch %g", i, got.Float[i], want.Float[i])
		}
	}
}

func TestDemoAndEvalRun(t *testing.T) {
	if err := run("demo"); err != nil {
		t.Fatal(err)
	}
	if err := run("eval", mlp, "../../testsuite/models/digits-mlp"); err != nil {
		t.Fatal(err)
	}
}
