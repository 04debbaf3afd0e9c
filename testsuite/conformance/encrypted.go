package conformance

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// RunEncrypted runs every case under root encrypted: each case is compiled
// with its own first input as calibration data, run under CKKS at 128-bit
// security, and its decrypted output compared with the expected output.
// Inputs after the first are bound as the model owner's plaintext constants.
// Cases whose input or output has no leading batch axis of 1 are compiled
// with LowerOptions.WholeTensor: the whole input tensor is one encrypted
// sample. Cases outside the encrypted subset (integer data, scalar inputs,
// several outputs, operators with no CKKS lowering, plans beyond this
// machine's memory or the largest 128-bit ring) are skipped with the
// reason.
func RunEncrypted(root string, w io.Writer) (Summary, error) {
	var s Summary
	dirs, err := Cases(root)
	if err != nil {
		return s, err
	}
	for _, d := range dirs {
		r := RunEncryptedCase(d)
		s.add(r, w)
	}
	fmt.Fprintln(w, s.String())
	return s, nil
}

// add counts a result and prints its line.
func (s *Summary) add(r Result, w io.Writer) {
	s.Results = append(s.Results, r)
	switch r.Status {
	case Passed:
		s.Passed++
	case Failed:
		s.Failed++
	case Skipped:
		s.Skipped++
	}
	line := fmt.Sprintf("%s %s", r.Status, r.Case)
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	fmt.Fprintln(w, line)
}

// RunEncryptedCase runs one case folder encrypted. It passes when, for the
// first test data set, |encrypted - expected| <= approximation error (the
// plan's plaintext polynomials against the exact expected output, measured
// on this very input) + the plan's predicted CKKS error bound + the suite's
// float tolerance.
func RunEncryptedCase(dir string) Result {
	res := Result{Case: filepath.Base(dir)}
	skip := func(format string, args ...any) Result {
		res.Status, res.Detail = Skipped, encryptedSkip+fmt.Sprintf(format, args...)
		return res
	}
	modelPath := filepath.Join(dir, "model.onnx")
	data, err := os.ReadFile(modelPath)
	if err != nil {
		res.Status, res.Detail = Failed, err.Error()
		return res
	}
	g, err := onnx.Decode(data, modelPath)
	if err != nil {
		return classify(res, err, "under encryption: ")
	}
	if len(g.Inputs) == 0 || len(g.Outputs) != 1 {
		return skip("%d inputs and %d outputs (the encrypted runner takes one output)", len(g.Inputs), len(g.Outputs))
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	sort.Strings(sets)
	if len(sets) == 0 {
		res.Status, res.Detail = Failed, "no test_data_set_* folders"
		return res
	}
	inputs, err := readTensors(sets[0], "input")
	if err != nil || len(inputs) != len(g.Inputs) {
		return skip("test inputs unreadable: %v", err)
	}
	// The first input is the data owner's, encrypted; the others (weights,
	// biases, statistics in the ONNX test cases) are the model owner's
	// plaintext constants.
	for i, in := range g.Inputs[1:] {
		in.Const = inputs[i+1]
		in.DType, in.Shape = inputs[i+1].DType, inputs[i+1].Shape.Clone()
	}
	g.Inputs = g.Inputs[:1]
	want, err := readTensors(sets[0], "output")
	if err != nil || len(want) != 1 {
		return skip("expected outputs unreadable: %v", err)
	}
	x, y := inputs[0], want[0]
	if !x.DType.IsFloat() || !y.DType.IsFloat() {
		return skip("%s input, %s output (CKKS computes on real numbers)", x.DType, y.DType)
	}
	if len(x.Shape) == 0 {
		return skip("scalar input (calibration needs a sample axis)")
	}
	// A case whose tensors have no leading batch axis of 1 is lowered whole:
	// the whole input is one encrypted sample, fed as [1, x.Shape...].
	opts := compiler.CompileOptions{Calib: x}
	feed := x
	if x.Shape[0] != 1 || len(y.Shape) == 0 || y.Shape[0] != 1 {
		feed = &ir.Tensor{DType: x.DType, Shape: append(ir.Shape{1}, x.Shape...), Float: x.Float}
		opts.Lower.WholeTensor = true
		opts.Lower.Calib = feed
	}
	plan, err := compiler.Compile(g, res.Case, data, opts)
	if err != nil {
		return classify(res, fmt.Errorf("compile: %w", err), "under encryption: ")
	}
	ref, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		res.Status, res.Detail = Failed, err.Error()
		return res
	}
	refOut, err := plain.Run(ref, map[string]*ir.Tensor{ref.Inputs[0].Name: x}, nil)
	if err != nil {
		res.Status, res.Detail = Failed, "plan reference: "+err.Error()
		return res
	}
	approxErr := zoo.MaxAbsDiff(refOut[ref.Outputs[0].Name], y)
	sess, err := local.NewSession(plan.Program, local.Progress{})
	if err != nil {
		return classify(res, err, "under encryption: ")
	}
	got, _, err := sess.Infer(feed)
	if err != nil {
		res.Status, res.Detail = Failed, err.Error()
		return res
	}
	bound := plan.Program.Values[plan.Program.Outputs[0].Value].Bound
	if got.Len() != y.Len() {
		res.Status, res.Detail = Failed, fmt.Sprintf("decrypted output has shape %v, want %v", got.Shape, y.Shape)
		return res
	}
	got.Shape = y.Shape // the runtime returns [1, per-sample shape...]
	allowed := approxErr + bound
	for i, w := range y.Float {
		if d := math.Abs(got.Float[i] - w); d > allowed+Atol+Rtol*math.Abs(w) {
			res.Status = Failed
			res.Detail = fmt.Sprintf("element %d is %g, want %g (approximation error %.2e + plan bound %.2e)", i, got.Float[i], w, approxErr, bound)
			return res
		}
	}
	res.Status = Passed
	res.Detail = fmt.Sprintf("max error %.2e within approximation %.2e + bound %.2e (%s)", zoo.MaxAbsDiff(got, y), approxErr, bound, plan.Program.Params)
	return res
}

// encryptedSkip prefixes the reason of every case the encrypted run skips.
const encryptedSkip = "unsupported under encryption: "
