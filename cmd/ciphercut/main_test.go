package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
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

// TestCompileRunVerify compiles cancer-mlp, runs four samples encrypted with
// --verify (which fails when the plan's bound is exceeded), and checks that a
// corrupted or truncated plan is refused with an error naming the file.
func TestCompileRunVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted run; skipped in -short mode")
	}
	dir := t.TempDir()
	plan := filepath.Join(dir, "cancer.plan")
	if err := run("compile", filepath.Join(mlp, "model.onnx"), "-o", plan); err != nil {
		t.Fatal(err)
	}
	x, err := npy.Read(filepath.Join(mlp, "inputs.npy"))
	if err != nil {
		t.Fatal(err)
	}
	four := filepath.Join(dir, "four.npy")
	if err := npy.Write(four, &ir.Tensor{DType: x.DType, Shape: ir.Shape{4, 30}, Float: x.Float[:120]}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.npy")
	measured := filepath.Join(dir, "measured.json")
	if err := run("run", plan, "-i", four, "-o", out, "--verify", "--profile", measured); err != nil {
		t.Fatal(err)
	}
	checkReports(t, plan, measured)
	if y, err := npy.Read(out); err != nil || !y.Shape.Equal(ir.Shape{4, 2}) {
		t.Fatalf("output %v, %v; want a 4x2 tensor", y, err)
	}
	data, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.plan")
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-10] ^= 0xff
	truncated := filepath.Join(dir, "truncated.plan")
	ints := filepath.Join(dir, "ints.npy")
	if err := npy.Write(ints, ir.NewInt(ir.Shape{4, 30}, nil)); err != nil {
		t.Fatal(err)
	}
	if err := run("run", plan, "-i", ints); err == nil || !strings.Contains(err.Error(), "real numbers") {
		t.Errorf("integer input: got %v, want an error about real numbers", err)
	}
	for p, b := range map[string][]byte{corrupt: flipped, truncated: data[:len(data)/2]} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		err := run("run", p, "-i", four)
		if err == nil || !strings.Contains(err.Error(), filepath.Base(p)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want a one-line error naming the file", filepath.Base(p), err)
		}
	}
}

// TestLargeBatchChoosesFeaturePacking checks that --batch beyond what slot
// packing holds switches to feature packing, unless --packing is given.
func TestLargeBatchChoosesFeaturePacking(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "b.plan")
	model := filepath.Join(mlp, "model.onnx")
	if err := run("compile", model, "-o", plan, "--batch", "1000"); err != nil {
		t.Fatal(err)
	}
	p, err := compiler.ReadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if p.Program.Packing != ckksir.PackFeature || p.Program.Batch < 1000 {
		t.Errorf("--batch 1000 gave %s packing with %d samples per ciphertext", p.Program.Packing, p.Program.Batch)
	}
	if err := run("report", plan); err != nil {
		t.Errorf("report on a feature-packed plan: %v", err)
	}
	if err := run("compile", model, "-o", plan, "--batch", "1000", "--packing", "slot"); err == nil || !strings.Contains(err.Error(), "samples of") {
		t.Errorf("--packing slot --batch 1000: got %v, want the capacity error", err)
	}
}
