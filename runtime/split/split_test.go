package split_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// TestSplitDigitsCNNInsecureSmallRing compiles digits-cnn split
// (smallring.DigitsCNNSplit: the data owner runs the first convolution
// block in plaintext and the last layer, the worker the rest, with
// client-aided activations where they pay). Every encrypted stage moves to
// the test-only ring N=2^13 (same program, levels and rotations) and runs
// end to end in process; each stage's result is checked against its
// plaintext reference within the stage's predicted bound, and the outputs
// against the exact model's top-1.
func TestSplitDigitsCNNInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take seconds; skipped in -short mode")
	}
	m, plan, _, err := smallring.CompileSplit(filepath.Join("..", "..", "testsuite", "models", "digits-cnn"), 3, 13, smallring.DigitsCNNSplit())
	if err != nil {
		t.Fatal(err)
	}
	// The plan survives a round trip through its file format.
	enc, err := compiler.EncodePlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if plan, err = compiler.DecodePlan(enc, "digits-cnn.plan"); err != nil {
		t.Fatal(err)
	}
	kinds := map[passes.StageKind]int{}
	for _, s := range plan.Stages {
		kinds[s.Kind]++
	}
	if kinds[passes.StagePrefix] != 1 || kinds[passes.StageEncrypted] < 2 || kinds[passes.StageClientAided] < 1 {
		t.Fatalf("stages %v: want a prefix, encrypted segments and a client-aided step", kinds)
	}
	stages, err := plan.RunStages()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stages {
		if st.Program != nil {
			if b := st.Program.Bootstraps(); b != 0 {
				t.Errorf("stage %s has %d bootstraps", st.Name, b)
			}
		}
	}
	n := 8
	x := zoo.Rows(m.Inputs, 0, n)
	in := m.Graph.Inputs[0].Name
	env, rep, err := split.Run(stages, map[string]*ir.Tensor{in: x}, split.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range rep.Stages {
		if st.Encrypted {
			t.Logf("stage %s: max |encrypted - reference| %.3e within bound %.3e; eval %v, %d B up, %d B down",
				st.Name, st.MaxError, st.Bound, st.Timing.Eval, st.Timing.UploadBytes, st.Timing.DownloadBytes)
		}
	}
	y := env[m.Graph.Outputs[0].Name]
	exact, err := zoo.RunBatched(m.Graph, x, n)
	if err != nil {
		t.Fatal(err)
	}
	if agree := zoo.Agreement(y, exact); agree < 1 {
		t.Errorf("top-1 agreement with the exact model %.3f on %d samples", agree, n)
	}
	if rep.RoundTrips != kinds[passes.StageEncrypted] || rep.Bootstraps != 0 {
		t.Errorf("%d round trips, %d bootstraps; want %d and 0", rep.RoundTrips, rep.Bootstraps, kinds[passes.StageEncrypted])
	}
}

// TestRunMissingValue checks that a stage reading a value no earlier stage
// produced is an error naming the stage and the value.
func TestRunMissingValue(t *testing.T) {
	x := &ir.Tensor{DType: ir.Float64, Shape: ir.Shape{1, 2}, Float: []float64{1, 2}}
	_, _, err := split.Run([]split.Stage{{Name: "suffix", Inputs: []string{"h"}, Outputs: []string{"y"}}},
		map[string]*ir.Tensor{"x": x}, split.Options{})
	if err == nil || !strings.Contains(err.Error(), `stage suffix reads "h"`) {
		t.Errorf("error %v, want one naming the stage and the value", err)
	}
}

// TestReportCountsBootstrapsOfEveryCiphertext checks that a run's report
// counts each encrypted stage's bootstraps once per ciphertext it ran on.
func TestReportCountsBootstrapsOfEveryCiphertext(t *testing.T) {
	stages := []split.Stage{
		{Name: "a", Inputs: []string{"x"}, Outputs: []string{"y"}, Program: &ckksir.Program{}, Bootstraps: 2},
		{Name: "b", Inputs: []string{"y"}, Outputs: []string{"z"}, Program: &ckksir.Program{}, Bootstraps: 5},
	}
	runner := func(i int, st split.Stage, feeds map[string]*ir.Tensor, tm *split.StageTiming) (map[string]*ir.Tensor, error) {
		tm.Timing.Ciphertexts = 3
		return map[string]*ir.Tensor{st.Outputs[0]: feeds[st.Inputs[0]]}, nil
	}
	x := ir.NewFloat(ir.Shape{4, 1}, []float64{1, 2, 3, 4})
	_, rep, err := split.Run(stages, map[string]*ir.Tensor{"x": x}, split.Options{Runner: runner})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bootstraps != 3*(2+5) || rep.RoundTrips != 2 {
		t.Errorf("%d bootstraps in %d round trips; want 21 in 2", rep.Bootstraps, rep.RoundTrips)
	}
}
