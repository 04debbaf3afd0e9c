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
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// Compile compiles the model in folder dir (a testsuite/models folder) (calibrated on its own samples,
// activations at the given precision in bits, 0 for the default) and
// returns the model, its plan, and a copy of the plan's program on the ring
// N=2^logN with as many batch blocks as fit (security 0).
func Compile(dir string, precision, logN int) (*zoo.Model, *compiler.Plan, *ckksir.Program, error) {
	m, err := zoo.OpenDir(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	name := filepath.Base(dir)
	onnxBytes, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := compiler.Compile(m.Graph, name, onnxBytes, compiler.CompileOptions{
		Calib: m.Inputs, Approx: passes.ApproxOptions{PrecisionBits: precision}})
	if err != nil {
		return nil, nil, nil, err
	}
	p := *plan.Program
	p.Params.LogN, p.Params.SecurityBits = logN, 0
	if p.BlockSize > p.Params.Slots() {
		return nil, nil, nil, fmt.Errorf("%s: a block of %d slots does not fit N=2^%d", name, p.BlockSize, logN)
	}
	if p.Packing == ckksir.PackFeature {
		p.Batch, p.BlockSize = p.Params.Slots(), 1
	} else {
		p.Batch = p.Params.Slots() / p.BlockSize
	}
	return m, plan, &p, nil
}
