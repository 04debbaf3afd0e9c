package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
)

// CompileOptions tune Compile.
type CompileOptions struct {
	// Calib holds calibration samples for the model's input, stacked along
	// the leading axis (the model's bundled samples by default). Required.
	Calib *ir.Tensor
	// Approx tunes activation approximation (precision target, margin).
	Approx passes.ApproxOptions
	// Transformer tunes the decomposition of encrypted matrix products,
	// softmax and layer normalization (passes.DecomposeTransformer).
	Transformer passes.TransformerOptions
	// Lower tunes lowering to CKKS (batch, ring limits, scale).
	Lower passes.LowerOptions
	// Log, when set, receives one line per pipeline step.
	Log io.Writer
	// Split, when set, splits the model between the data owner and a
	// worker (passes.ChooseSplit): the plan then holds Stages instead of
	// one Program.
	Split *passes.SplitOptions
	// Profile is the machine profile split costs come from; nil means
	// cost.DefaultProfile().
	Profile *cost.Profile
}

// Compile turns an imported model into an encrypted-execution plan:
//
//  1. the Canonicalize table (shapes, folding, fusion, recognition);
//  2. the Encrypt table: MaxPool decomposed into pairwise maxima, products
//     of two encrypted matrices, softmax and layer normalization decomposed
//     into products, polynomials and Newton iterations calibrated on
//     opts.Calib (passes.DecomposeTransformer), each activation calibrated
//     on opts.Calib and replaced by the cheapest polynomial that keeps the
//     model's outputs on target;
//  3. lowering to the CKKS-level IR (linear regions become diagonal
//     matrices, polynomials, levels, parameters, error bounds); with
//     opts.Split, the split pass (passes.ChooseSplit) first chooses which
//     nodes the data owner runs in plaintext (on the canonical graph) and
//     which the worker runs encrypted, costing each candidate by lowering
//     its encrypted stages, and only the chosen stages are lowered.
//
// model is not modified. modelBytes (the ONNX file) identifies the model in
// the plan.
func Compile(model *ir.Graph, name string, modelBytes []byte, opts CompileOptions) (*Plan, error) {
	if opts.Calib == nil {
		return nil, fmt.Errorf("compile %s: no calibration samples", name)
	}
	g := model.Clone()
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", args...)
		}
	}
	if err := RunPasses(g, Canonicalize, Options{Verify: true}); err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	logf("canonicalized: %d nodes", len(g.Nodes))
	canon := g.Clone()
	var report *passes.ApproxReport
	var tfReport *passes.TransformerReport
	if opts.Split != nil && opts.Split.Policy.ClientAided == passes.ClientAidedLayerNorm {
		// The data owner computes every layer normalization exactly.
		opts.Transformer.KeepLayerNorm = true
	}
	if opts.Transformer.MaxSlots == 0 && opts.Lower.Batch > 1 && opts.Lower.Packing != ckksir.PackFeature {
		opts.Transformer.MaxSlots = productSlots(opts.Lower.MaxLogN, opts.Lower.Batch)
	}
	encrypt := []Pass{
		{Name: "decompose-maxpool", Run: passes.DecomposeMaxPool},
		{Name: "decompose-transformer", Run: func(g *ir.Graph) error {
			var err error
			tfReport, err = passes.DecomposeTransformer(g, opts.Calib, opts.Transformer)
			return err
		}},
		{Name: "approximate-activations", Run: func(g *ir.Graph) error {
			var err error
			report, err = passes.ApproximateActivations(g, opts.Calib, opts.Approx)
			return err
		}},
	}
	if err := RunPasses(g, encrypt, Options{Verify: true}); err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	logf("approximated %d activations", len(report.Entries))
	if tfReport != nil && tfReport.Products > 0 {
		// Skewed attention products keep their scores where the
		// product leaves them (passes.LowerOptions).
		opts.Lower.SharedProductLayouts = true
	}
	sum := sha256.Sum256(modelBytes)
	plan := &Plan{
		FormatVersion:  PlanFormatVersion,
		ModelName:      name,
		ModelSHA256:    hex.EncodeToString(sum[:]),
		Approximations: report.String() + tfReport.String(),
	}
	var err error
	if plan.Graph, err = g.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	if opts.Split != nil {
		plan.Stages, plan.Split, err = compileSplit(canon, g, opts, logf)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", name, err)
		}
		return plan, nil
	}
	lower := opts.Lower
	if lower.Calib == nil {
		lower.Calib = opts.Calib
	}
	if lower.Log == nil {
		lower.Log = opts.Log
	}
	prog, err := passes.LowerCKKS(g, lower)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	if err := ckksir.Verify(prog); err != nil {
		return nil, fmt.Errorf("compile %s: lowering produced an invalid program: %w", name, err)
	}
	logf("lowered: %s, %s packing, depth %d, %d samples per ciphertext", prog.Params, prog.Packing, prog.Depth(), prog.Batch)
	plan.Program = prog
	return plan, nil
}

// productSlots bounds the elements of one product of two encrypted
// matrices (passes.TransformerOptions.MaxSlots) so that batch samples fit
// in each ciphertext: the slots of the largest ring (2^maxLogN, 0 meaning
// passes.DefaultMaxLogN) over batch, rounded down to a power of two as
// block sizes are. Larger products are computed in parts.
func productSlots(maxLogN, batch int) int {
	if maxLogN <= 0 {
		maxLogN = passes.DefaultMaxLogN
	}
	return 1 << max(maxLogN-1-bits.Len(uint(max(batch, 1)-1)), 0)
}
