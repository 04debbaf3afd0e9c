package zoo

import (
	"os"
	"path/filepath"
	"testing"
)

// TestModelsMatchPyTorch runs every bundled sample of every zoo model through
// the reference interpreter and compares with PyTorch's own outputs.
func TestModelsMatchPyTorch(t *testing.T) {
	dirs, _ := filepath.Glob("../models/*/model.onnx")
	if len(dirs) < 6 {
		t.Fatalf("found %d zoo models, want 6", len(dirs))
	}
	for _, p := range dirs {
		dir := filepath.Dir(p)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if filepath.Base(dir) == "resnet20" && testing.Short() {
				t.Skip("resnet20 takes seconds; skipped in -short mode")
			}
			m, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			out, err := RunBatched(m.Graph, m.Inputs, 32)
			if err != nil {
				t.Fatal(err)
			}
			// PyTorch computes in float32; the interpreter in float64. The
			// classifiers match to 1e-5; tiny-gpt's logits are larger and go
			// through 2 blocks of attention, so it gets 1e-4.
			tol := 1e-5
			if m.Name == "tiny-gpt" {
				tol = 1e-4
			}
			if d := MaxAbsDiff(out, m.Expected); d > tol {
				t.Errorf("max |interpreter - PyTorch| = %g over %d samples, want <= %g", d, m.Samples(), tol)
			}
			if a := Agreement(out, m.Expected); a != 1 {
				t.Errorf("top-1 agreement with PyTorch %.4f, want 1", a)
			}
			t.Logf("%d samples, accuracy %.4f", m.Samples(), Accuracy(out, m.Labels))
		})
	}
}

// TestEmbeddedModels checks that the models compiled into the binary open.
func TestEmbeddedModels(t *testing.T) {
	for _, name := range []string{"cancer-mlp", "digits-mlp"} {
		m, err := Open(Embedded(), name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Samples() < 100 {
			t.Errorf("%s: %d samples, want at least 100", name, m.Samples())
		}
	}
	if _, err := Open(Embedded(), "nope"); err == nil {
		t.Error("opened a model that is not there")
	}
}

func TestOpenDirErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); err == nil {
		t.Error("opened an empty folder")
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); err == nil {
		t.Error("opened a garbage model")
	}
}
