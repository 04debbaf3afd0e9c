package onnx

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

const suiteDir = "../../testsuite"

// checkErr fails unless err is a one-line message starting with file.
func checkErr(t *testing.T, err error, file string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, file+": ") {
		t.Errorf("error does not start with %q: %s", file+": ", msg)
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error spans several lines: %q", msg)
	}
}

func isUnsupported(err error) bool {
	var ue *ir.UnsupportedError
	return errors.As(err, &ue)
}

// TestONNXBackendCases loads every ONNX backend node case and reads all of
// its test data. Loading must succeed or fail with an *ir.UnsupportedError;
// the test inputs of loaded models must fit the graph inputs.
func TestONNXBackendCases(t *testing.T) {
	models, _ := filepath.Glob(filepath.Join(suiteDir, "onnx", "*", "model.onnx"))
	if len(models) == 0 {
		t.Skip("no testsuite/onnx cases")
	}
	sort.Strings(models)
	loaded, skipped, tensors, skippedTensors := 0, 0, 0, 0
	reasons := map[string]int{}
	for _, path := range models {
		dir := filepath.Dir(path)
		g, err := Load(path)
		if err != nil {
			checkErr(t, err, path)
			if !isUnsupported(err) {
				t.Errorf("%s: not an UnsupportedError: %v", filepath.Base(dir), err)
				continue
			}
			skipped++
			reasons[unsupportedKey(err)]++
		} else {
			loaded++
			if err := ir.Verify(g); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
		for _, set := range sets {
			files, _ := filepath.Glob(filepath.Join(set, "*.pb"))
			nIn := 0
			for _, f := range files {
				tensor, name, err := ReadTensorFile(f)
				if err != nil {
					checkErr(t, err, f)
					if !isUnsupported(err) {
						t.Errorf("%v", err)
					}
					skippedTensors++
					continue
				}
				tensors++
				if err := tensor.Validate(); err != nil {
					t.Errorf("%s: %v", f, err)
				}
				if g == nil {
					continue
				}
				base := filepath.Base(f)
				var k int
				var vals []*ir.Value
				if _, err := fmt.Sscanf(base, "input_%d.pb", &k); err == nil {
					nIn++
					vals = g.Inputs
				} else if _, err := fmt.Sscanf(base, "output_%d.pb", &k); err == nil {
					vals = g.Outputs
				}
				if k >= len(vals) {
					t.Errorf("%s: model has %d such values", f, len(vals))
					continue
				}
				v := vals[k]
				if name != "" && name != v.Name {
					// The ONNX generator names the tensors after the graph values.
					t.Errorf("%s: tensor %q for value %q", f, name, v.Name)
				}
				if err := plain.CheckInput(v, tensor); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
			if g != nil && nIn != len(g.Inputs) {
				t.Errorf("%s: %d input files, graph has %d inputs", set, nIn, len(g.Inputs))
			}
		}
	}
	t.Logf("%d cases: %d loaded, %d unsupported; %d tensors read, %d unsupported", len(models), loaded, skipped, tensors, skippedTensors)
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("  %3d  %s", reasons[k], k)
	}
	if loaded < len(models)/2 {
		t.Errorf("only %d of %d cases loaded", loaded, len(models))
	}
}

// unsupportedKey summarizes an unsupported error for the log.
func unsupportedKey(err error) string {
	var ue *ir.UnsupportedError
	errors.As(err, &ue)
	r := ue.Reason
	if strings.HasPrefix(r, "supported operators:") {
		return "operator " + ue.Op
	}
	return r
}

// TestTrainedModels loads the models of testsuite/models when present: they
// are meant for ciphercut and must load.
func TestTrainedModels(t *testing.T) {
	models, _ := filepath.Glob(filepath.Join(suiteDir, "models", "*", "model.onnx"))
	if len(models) == 0 {
		t.Skip("no testsuite/models yet")
	}
	for _, path := range models {
		g, err := Load(path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(g.Inputs) != 1 || len(g.Outputs) != 1 {
			t.Errorf("%s: %d inputs, %d outputs", path, len(g.Inputs), len(g.Outputs))
		}
		params := 0
		for _, n := range g.Nodes {
			params += n.ParamCount()
		}
		t.Logf("%s: opset %d, %d nodes, %d parameters, input %s%v %v", path, g.Opset, len(g.Nodes), params,
			g.Inputs[0].DType, g.Inputs[0].Shape, g.Inputs[0].DimNames)
	}
}
