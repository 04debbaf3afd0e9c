// Package conformance runs ONNX backend test cases (a folder with model.onnx
// and test_data_set_*/input_*.pb, output_*.pb) through ciphercut's frontend
// and reference interpreter and compares against the expected outputs.
package conformance

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// Tolerances of the ONNX backend test runner: |got-want| <= Atol + Rtol*|want|.
const (
	Rtol = 1e-3
	Atol = 1e-7
)

// Status is the outcome of one case.
type Status int

// Case outcomes.
const (
	Passed Status = iota
	Failed
	Skipped
)

func (s Status) String() string {
	return [...]string{"PASS", "FAIL", "SKIP"}[s]
}

// Result is one case's outcome; Detail says why it failed or was skipped.
type Result struct {
	Case   string
	Status Status
	Detail string
}

// Summary counts outcomes.
type Summary struct {
	Passed, Failed, Skipped int
	Results                 []Result
}

// String is the closing line: "N passed, M failed, K skipped".
func (s Summary) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
}

// Cases lists the case folders under root (those holding a model.onnx),
// sorted by name. root may itself be one case.
func Cases(root string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(root, "model.onnx")); err == nil {
		return []string{root}, nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(d, "model.onnx")); err == nil {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s: no test cases (folders with model.onnx) found", root)
	}
	return dirs, nil
}

// Run runs every case under root, writing one line per case and the summary
// line to w.
func Run(root string, w io.Writer) (Summary, error) {
	var s Summary
	dirs, err := Cases(root)
	if err != nil {
		return s, err
	}
	for _, d := range dirs {
		s.add(RunCase(d), w)
	}
	fmt.Fprintln(w, s.String())
	return s, nil
}

// RunCase runs one case folder.
func RunCase(dir string) Result {
	name := filepath.Base(dir)
	res := Result{Case: name}
	outcome := func(err error) Result { return classify(res, err, "") }
	g, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return outcome(err)
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	sort.Strings(sets)
	if len(sets) == 0 {
		return outcome(fmt.Errorf("no test_data_set_* folders"))
	}
	for _, set := range sets {
		inputs, err := readTensors(set, "input")
		if err != nil {
			return outcome(err)
		}
		want, err := readTensors(set, "output")
		if err != nil {
			return outcome(err)
		}
		if len(inputs) != len(g.Inputs) {
			return outcome(fmt.Errorf("%s: %d inputs for a model with %d", filepath.Base(set), len(inputs), len(g.Inputs)))
		}
		feeds := make(map[string]*ir.Tensor, len(inputs))
		for i, in := range g.Inputs {
			feeds[in.Name] = inputs[i]
		}
		got, err := plain.Run(g, feeds, nil)
		if err != nil {
			return outcome(err)
		}
		if len(want) != len(g.Outputs) {
			return outcome(fmt.Errorf("%s: %d expected outputs for a model with %d", filepath.Base(set), len(want), len(g.Outputs)))
		}
		for i, o := range g.Outputs {
			if err := Compare(got[o.Name], want[i]); err != nil {
				return outcome(fmt.Errorf("%s output %q: %v", filepath.Base(set), o.Name, err))
			}
		}
	}
	res.Status = Passed
	return res
}

// readTensors reads PREFIX_0.pb, PREFIX_1.pb, ... from a test data folder.
func readTensors(set, prefix string) ([]*ir.Tensor, error) {
	paths, _ := filepath.Glob(filepath.Join(set, prefix+"_*.pb"))
	index := func(p string) int {
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix+"_"), ".pb"))
		return n
	}
	sort.Slice(paths, func(i, j int) bool { return index(paths[i]) < index(paths[j]) })
	out := make([]*ir.Tensor, len(paths))
	for i, p := range paths {
		t, _, err := onnx.ReadTensorFile(p)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// Compare checks got against want: same shape, same kind of data (float or
// integer), floats within Atol + Rtol*|want| (NaN matching NaN), integers equal.
func Compare(got, want *ir.Tensor) error {
	if got == nil {
		return fmt.Errorf("not computed")
	}
	if !got.Shape.Equal(want.Shape) {
		return fmt.Errorf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.DType.IsFloat() != want.DType.IsFloat() {
		return fmt.Errorf("dtype %s, want %s", got.DType, want.DType)
	}
	if !want.DType.IsFloat() {
		for i, w := range want.Int {
			if got.Int[i] != w {
				return fmt.Errorf("element %d is %d, want %d", i, got.Int[i], w)
			}
		}
		return nil
	}
	worst, at := 0.0, -1
	for i, w := range want.Float {
		g := got.Float[i]
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) {
				return fmt.Errorf("element %d is %g, want %g", i, g, w)
			}
			continue
		}
		if math.IsInf(w, 0) || math.IsInf(g, 0) {
			if g != w {
				return fmt.Errorf("element %d is %g, want %g", i, g, w)
			}
			continue
		}
		if excess := math.Abs(g-w) - (Atol + Rtol*math.Abs(w)); excess > worst {
			worst, at = excess, i
		}
	}
	if at >= 0 {
		return fmt.Errorf("element %d is %g, want %g (beyond atol %g + rtol %g)", at, got.Float[at], want.Float[at], Atol, Rtol)
	}
	return nil
}

// classify records err as the case's outcome: an *ir.UnsupportedError skips
// the case with its reason (after skipPrefix), anything else fails it.
func classify(res Result, err error, skipPrefix string) Result {
	var ue *ir.UnsupportedError
	if errors.As(err, &ue) {
		res.Status, res.Detail = Skipped, skipPrefix+ue.Error()
	} else {
		res.Status, res.Detail = Failed, err.Error()
	}
	return res
}
