// Package smallring gives tests a bundled model compiled by ciphercut and
// moved to a small, insecure ring: the same program, layouts, rotations and
// levels as its 128-bit plan, fast enough for go test (see
// testsuite/zoo's TestEncryptedDigitsCNNInsecureSmallRing). Never use its
// programs outside tests.
package smallring

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// Compile compiles the model in folder dir (a testsuite/models folder) (calibrated on its own samples,
// activations at the given precision in bits, 0 for the default) and
// returns the model, its plan, and a copy of the plan's program on the ring
// N=2^logN with as many batch blocks as fit (security 0).
func Compile(dir string, precision, logN int) (*zoo.Model, *compiler.Plan, *ckksir.Program, error) {
	m, plan, err := compile(dir, precision, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := Move(plan.Program, logN)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", filepath.Base(dir), err)
	}
	return m, plan, p, nil
}

// CompileSplit compiles the model in folder dir as Compile does, split as
// opts says (a split plan: stages), moves every encrypted stage's program
// to the ring N=2^logN in the returned plan (its file then holds the
// small-ring programs) and returns its stages for runtime/split too.
func CompileSplit(dir string, precision, logN int, opts *passes.SplitOptions) (*zoo.Model, *compiler.Plan, []split.Stage, error) {
	m, plan, err := compile(dir, precision, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	if !plan.IsSplit() {
		return nil, nil, nil, fmt.Errorf("%s: the plan is not split", filepath.Base(dir))
	}
	for i, s := range plan.Stages {
		if s.Program == nil {
			continue
		}
		if plan.Stages[i].Program, err = Move(s.Program, logN); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: stage %d: %w", filepath.Base(dir), i, err)
		}
	}
	stages, err := plan.RunStages()
	return m, plan, stages, err
}

// DigitsCNNSplit is the split the tests run digits-cnn with (precision 3
// bits, on N=2^13 with CompileSplit): the data owner runs the first
// convolution block in plaintext (--reveal-prefix 1, --cut after its
// pooling) and the last layer, the worker the rest, with client-aided
// activations where they pay: a prefix, encrypted segments, a client-aided
// step and a suffix.
func DigitsCNNSplit() *passes.SplitOptions {
	return &passes.SplitOptions{Cut: "after=/features/features.3/AveragePool",
		Policy: passes.SplitPolicy{RevealPrefix: 1, RevealSuffix: 1, ClientAided: passes.ClientAidedActivations}}
}

func compile(dir string, precision int, split *passes.SplitOptions) (*zoo.Model, *compiler.Plan, error) {
	m, err := zoo.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	onnxBytes, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return nil, nil, err
	}
	plan, err := compiler.Compile(m.Graph, filepath.Base(dir), onnxBytes, compiler.CompileOptions{
		Calib: m.Inputs, Approx: passes.ApproxOptions{PrecisionBits: precision}, Split: split})
	return m, plan, err
}

// Move returns a copy of prog on the ring N=2^logN with as many batch
// blocks as fit (security 0): the same instructions, layouts, rotations and
// levels.
func Move(prog *ckksir.Program, logN int) (*ckksir.Program, error) {
	p := *prog
	p.Params.LogN, p.Params.SecurityBits = logN, 0
	if p.BlockSize > p.Params.Slots() {
		return nil, fmt.Errorf("a block of %d slots does not fit N=2^%d", p.BlockSize, logN)
	}
	if p.Packing == ckksir.PackFeature {
		p.Batch, p.BlockSize = p.Params.Slots(), 1
	} else {
		p.Batch = p.Params.Slots() / p.BlockSize
	}
	return &p, nil
}
