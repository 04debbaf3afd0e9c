package compiler

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

const suiteDir = "../testsuite"

// maxModelSamples bounds the rows of inputs.npy run through the interpreter
// per model (the whole held-out split is slow for the CNNs).
const maxModelSamples = 16

// opCounts renders the node count per op of g, sorted by op.
func opCounts(g *ir.Graph) string {
	m := map[string]int{}
	for _, n := range g.Nodes {
		m[n.Op]++
	}
	ops := make([]string, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%s:%d", op, m[op])
	}
	return strings.Join(parts, " ")
}

// maxDiff returns the largest difference between got and want relative to
// max(1, |want|), or an error when their shapes or types differ.
func maxDiff(got, want *ir.Tensor) (float64, error) {
	if !got.Shape.Equal(want.Shape) {
		return 0, fmt.Errorf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.DType.IsFloat() != want.DType.IsFloat() {
		return 0, fmt.Errorf("dtype %v, want %v", got.DType, want.DType)
	}
	d := 0.0
	a, b := got.Floats(), want.Floats()
	for i := range a {
		if math.IsNaN(a[i]) && math.IsNaN(b[i]) || a[i] == b[i] {
			continue
		}
		d = max(d, math.Abs(a[i]-b[i])/max(1, math.Abs(b[i])))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
	}
	return d, nil
}

// firstRows returns the first n rows (along axis 0) of t.
func firstRows(t *ir.Tensor, n int) *ir.Tensor {
	if len(t.Shape) == 0 || t.Shape[0] <= n {
		return t
	}
	s := t.Shape.Clone()
	s[0] = n
	per := t.Shape.Size() / t.Shape[0]
	c := &ir.Tensor{DType: t.DType, Shape: s}
	if t.DType.IsFloat() {
		c.Float = t.Float[:n*per]
	} else {
		c.Int = t.Int[:n*per]
	}
	return c
}

// canonicalizeAndCompare runs Canonicalize on a copy of the model at path,
// specialized to the feeds' shapes and verified after every pass, and
// checks that it computes what the original does on feeds. It returns the
// canonical graph.
func canonicalizeAndCompare(t *testing.T, path string, feeds map[string]*ir.Tensor, tol float64) *ir.Graph {
	t.Helper()
	before, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Run(before, feeds, nil)
	if err != nil {
		t.Fatalf("original graph: %v", err)
	}
	g, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]ir.Shape{}
	for name, f := range feeds {
		shapes[name] = f.Shape
	}
	if err := passes.BindInputs(g, shapes); err != nil {
		t.Fatal(err)
	}
	if err := RunPasses(g, Canonicalize, Options{Verify: true}); err != nil {
		if !strings.HasPrefix(err.Error(), "pass infer-shapes: ") || !strings.Contains(err.Error(), `node "`) {
			t.Fatal(err)
		}
		// Shapes depend on input values, so zeros do not do: infer them
		// from the case's inputs instead.
		t.Logf("%v; inferring shapes from the test inputs", err)
		if g, err = onnx.Load(path); err != nil {
			t.Fatal(err)
		}
		table := append([]Pass{{Name: "infer-shapes", Run: func(g *ir.Graph) error {
			return passes.InferShapesFrom(g, feeds)
		}}}, Canonicalize[1:]...)
		if err := RunPasses(g, table, Options{Verify: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range g.Nodes {
		if n.Op == "Gelu" {
			// Exporters write 1/√2 as a float32 constant; Gelu uses the
			// exact value, which moves results by up to ~1e-7.
			tol = max(tol, 1e-6)
		}
	}
	got, err := plain.Run(g, feeds, nil)
	if err != nil {
		t.Fatalf("canonical graph: %v", err)
	}
	for name, w := range want {
		d, err := maxDiff(got[name], w)
		if err != nil {
			t.Errorf("output %q: %v", name, err)
		} else if d > tol {
			t.Errorf("output %q differs by %g after canonicalization", name, d)
		}
	}
	return g
}

// TestCanonicalizeModels canonicalizes the trained models of
// testsuite/models, checks that the result is fully canonical and computes
// what the exported graph does, and logs its ops.
func TestCanonicalizeModels(t *testing.T) {
	models, _ := filepath.Glob(filepath.Join(suiteDir, "models", "*", "model.onnx"))
	if len(models) == 0 {
		t.Skip("no testsuite/models")
	}
	for _, path := range models {
		dir := filepath.Dir(path)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			in, err := npy.Read(filepath.Join(dir, "inputs.npy"))
			if err != nil {
				t.Fatal(err)
			}
			in = firstRows(in, maxModelSamples)
			probe, err := onnx.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(probe.Inputs) != 1 {
				t.Fatalf("%d inputs", len(probe.Inputs))
			}
			if in.DType.IsFloat() {
				in.DType = probe.Inputs[0].DType
			}
			feeds := map[string]*ir.Tensor{probe.Inputs[0].Name: in}
			g := canonicalizeAndCompare(t, path, feeds, 1e-9)
			t.Logf("%d -> %d nodes: %s", len(probe.Nodes), len(g.Nodes), opCounts(g))
			checkCanonical(t, g)
			if exp, err := npy.Read(filepath.Join(dir, "expected.npy")); err == nil {
				out, err := plain.Run(g, feeds, nil)
				if err != nil {
					t.Fatal(err)
				}
				d, err := maxDiff(out[g.Outputs[0].Name], firstRows(exp, maxModelSamples))
				if err != nil || d > 1e-3 {
					t.Errorf("canonical graph vs torch: diff %g, %v", d, err)
				}
			}
		})
	}
}

// checkCanonical fails on patterns canonicalization should have removed.
func checkCanonical(t *testing.T, g *ir.Graph) {
	t.Helper()
	uses := g.Consumers()
	for _, n := range g.Nodes {
		switch n.Op {
		case "BatchNormalization", "Identity", "Dropout", "Erf", "Shape", "Sigmoid":
			t.Errorf("%v left", n)
		case "MatMul", "Gemm":
			if n.Input(1).IsConst() {
				t.Errorf("%v with constant weights left", n)
			}
		case "Dense":
			m := n.Inputs[1].Const.Shape[1]
			if us := uses[n.Outputs[0]]; len(us) == 1 && us[0].Op == "Add" {
				for _, in := range us[0].Inputs {
					if in.IsConst() && (in.Const.Len() == m || in.Const.Len() == 1) {
						t.Errorf("%v followed by a bias Add", n)
					}
				}
			}
		case "ReduceMean":
			if us := uses[n.Outputs[0]]; len(us) == 1 && us[0].Op == "Sub" {
				t.Errorf("%v: layer normalization not recognized", n)
			}
		}
		for _, in := range n.Inputs {
			if in != nil && in.Shape == nil {
				t.Errorf("%v: input %q has no shape", n, in.Name)
			}
		}
	}
}

// TestCanonicalizeONNXCases canonicalizes every ONNX backend case that loads
// and runs in the interpreter, specialized to its test inputs, and checks
// the outputs against the original graph's.
func TestCanonicalizeONNXCases(t *testing.T) {
	models, _ := filepath.Glob(filepath.Join(suiteDir, "onnx", "*", "model.onnx"))
	if len(models) == 0 {
		t.Skip("no testsuite/onnx cases")
	}
	ran := 0
	for _, path := range models {
		dir := filepath.Dir(path)
		g, err := onnx.Load(path)
		if err != nil {
			continue
		}
		feeds := map[string]*ir.Tensor{}
		for i, in := range g.Inputs {
			f := filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i))
			tensor, _, err := onnx.ReadTensorFile(f)
			if err != nil {
				feeds = nil
				break
			}
			feeds[in.Name] = tensor
		}
		if feeds == nil {
			continue
		}
		if _, err := plain.Run(g, feeds, nil); err != nil {
			continue
		}
		ran++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			canonicalizeAndCompare(t, path, feeds, 1e-9)
		})
	}
	t.Logf("%d of %d cases load and run", ran, len(models))
	if ran == 0 {
		t.Skip("no case runs yet")
	}
}
