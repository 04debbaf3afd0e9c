package compiler

import (
	"fmt"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// DefaultBootstrapSeconds is the time of one bootstrap at N=2^16 used when
// the cost profile did not measure bootstrapping (the bundled one does
// not): 12.8 s, measured on the machine of BENCHMARKS.md (issue 5); half
// per halving of the ring.
const DefaultBootstrapSeconds = 12.8

// PredictProgram predicts the cost of running prog on ciphertexts lanes
// (see cost.Predict) with the profile prof, every diagonal kept encoded.
func PredictProgram(prog *ckksir.Program, prof *cost.Profile, opts cost.Options) (*cost.Report, error) {
	return PredictProgramWithin(prog, prof, opts, -1)
}

// PredictProgramWithin is PredictProgram for an evaluator that keeps only
// budget bytes of encoded diagonals (local.MemoryPlan.Budget; -1: all) and
// encodes the others at each use.
func PredictProgramWithin(prog *ckksir.Program, prof *cost.Profile, opts cost.Options, budget int64) (*cost.Report, error) {
	counts, err := ckks.InstrStatsWithin(prog, budget)
	if err != nil {
		return nil, err
	}
	kp, err := ckks.PlanKeys(prog)
	if err != nil {
		return nil, err
	}
	keys := cost.Keys{Rotations: kp.Rotations, Relinearization: kp.Relinearization,
		KeyBytes: kp.KeyBytes, TotalBytes: kp.TotalBytes, EncodedBytes: kp.EncodedBytes}
	return cost.Predict(prog, counts, keys, prof, opts)
}

// withBootstrapTime returns prof, or a copy whose rings without a
// bootstrap time get DefaultBootstrapSeconds scaled to their degree.
func withBootstrapTime(prof *cost.Profile) *cost.Profile {
	c := *prof
	c.Rings = append([]cost.Ring(nil), prof.Rings...)
	for i := range c.Rings {
		if c.Rings[i].Bootstrap == 0 {
			c.Rings[i].Bootstrap = DefaultBootstrapSeconds / float64(int(1)<<max(0, 16-c.Rings[i].LogN))
		}
	}
	return &c
}

// splitCompiler lowers and costs the stages of candidate splits.
type splitCompiler struct {
	name   string
	canon  *ir.Graph // exact canonical graph: plaintext stages
	approx *ir.Graph // approximated graph: encrypted stages
	lower  passes.LowerOptions
	prof   *cost.Profile
	calib  *ir.Tensor
	// costs caches stage costs by stage; lowered for costing without
	// calibration (magnitudes change bounds, not operations).
	costs map[string]passes.StageCost
}

// lowerStage lowers an encrypted stage of the approximated graph; with
// calib (per stage input, samples stacked), its magnitudes and error bounds
// are calibrated.
func (sc *splitCompiler) lowerStage(s passes.StageSpec, calib map[string]*ir.Tensor) (*ir.Graph, *ckksir.Program, error) {
	sub, err := sc.approx.Subgraph(sc.approx.Name, s.Inputs, s.Outputs)
	if err != nil {
		return nil, nil, err
	}
	opts := sc.lower
	// Without samples (costing) the magnitudes are bounded from the
	// polynomial intervals and matrix norms: enough to count operations.
	opts.Calib, opts.CalibInputs, opts.Log = nil, calib, nil
	prog, err := passes.LowerCKKS(sub, opts)
	if err != nil {
		return nil, nil, err
	}
	return sub, prog, nil
}

// predictStage is a stage's cost on one ciphertext.
func (sc *splitCompiler) predictStage(prog *ckksir.Program) (passes.StageCost, error) {
	rep, err := PredictProgram(prog, sc.prof, cost.Options{Ciphertexts: 1})
	if err != nil {
		return passes.StageCost{}, err
	}
	t := rep.Totals
	return passes.StageCost{WorkerSeconds: t.EvalSeconds, EncryptSeconds: t.EncryptSeconds, DecryptSeconds: t.DecryptSeconds,
		UploadBytes: t.UploadBytes, DownloadBytes: t.DownloadBytes, Bootstraps: t.Bootstraps}, nil
}

// cost is the passes.StageCoster: lower for costing, predict, cache.
func (sc *splitCompiler) cost(s passes.StageSpec) (passes.StageCost, error) {
	key := s.Key()
	if c, ok := sc.costs[key]; ok {
		return c, nil
	}
	_, prog, err := sc.lowerStage(s, nil)
	if err != nil {
		return passes.StageCost{}, err
	}
	c, err := sc.predictStage(prog)
	if err != nil {
		return passes.StageCost{}, err
	}
	sc.costs[key] = c
	return c, nil
}

// calibrateValues runs the approximated graph on every calibration sample
// and returns the named values, samples stacked along the leading axis
// (which replaces each value's batch axis of 1).
func (sc *splitCompiler) calibrateValues(names map[string]bool) (map[string]*ir.Tensor, error) {
	g := sc.approx
	if len(g.Inputs) != 1 {
		return nil, fmt.Errorf("split: calibration needs a model with one input, not %d", len(g.Inputs))
	}
	x := g.Inputs[0]
	per := x.Shape.Size()
	n := sc.calib.Shape[0]
	if per <= 0 || sc.calib.Len() != n*per {
		return nil, fmt.Errorf("split: calibration samples of shape %v do not match input %q %v", sc.calib.Shape, x.Name, x.Shape)
	}
	out := map[string]*ir.Tensor{}
	add := func(name string, t *ir.Tensor) {
		if !names[name] || t == nil {
			return
		}
		o := out[name]
		if o == nil {
			shape := append(ir.Shape{n}, t.Shape[1:]...)
			o = &ir.Tensor{DType: ir.Float64, Shape: shape, Float: make([]float64, 0, n*len(t.Float))}
			out[name] = o
		}
		o.Float = append(o.Float, t.Float...)
	}
	opts := &plain.Options{Observe: func(nd *ir.Node, outs []*ir.Tensor) {
		for i, o := range nd.Outputs {
			if o != nil && i < len(outs) {
				add(o.Name, outs[i])
			}
		}
	}}
	for s := range n {
		in := &ir.Tensor{DType: ir.Float64, Shape: x.Shape.Clone()}
		if sc.calib.DType.IsFloat() {
			in.Float = sc.calib.Float[s*per : (s+1)*per]
		} else {
			// Token ids: the embedding's Gather reads them as integers.
			in.DType, in.Int = sc.calib.DType, sc.calib.Int[s*per:(s+1)*per]
		}
		add(x.Name, in)
		if _, err := plain.Run(g, map[string]*ir.Tensor{x.Name: in}, opts); err != nil {
			return nil, fmt.Errorf("split: calibration sample %d: %w", s, err)
		}
	}
	for name := range names {
		if out[name] == nil {
			return nil, fmt.Errorf("split: calibration did not reach %q", name)
		}
	}
	return out, nil
}

// build lowers the chosen split's stages (encrypted ones calibrated) and
// returns them with the cost predicted from the final programs.
func (sc *splitCompiler) build(chosen *passes.SplitCandidate, link passes.Link) ([]Stage, passes.SplitCost, error) {
	names := map[string]bool{}
	for _, s := range chosen.Stages {
		if s.Kind == passes.StageEncrypted {
			for _, in := range s.Inputs {
				names[in] = true
			}
		}
	}
	values, err := sc.calibrateValues(names)
	if err != nil {
		return nil, passes.SplitCost{}, err
	}
	stages := make([]Stage, len(chosen.Stages))
	final := map[string]passes.StageCost{}
	for i, s := range chosen.Stages {
		st := Stage{Kind: s.Kind, Nodes: s.Nodes, Inputs: s.Inputs, Outputs: s.Outputs}
		var g *ir.Graph
		if s.Kind == passes.StageEncrypted {
			calib := map[string]*ir.Tensor{}
			for _, in := range s.Inputs {
				calib[in] = values[in]
			}
			g, st.Program, err = sc.lowerStage(s, calib)
			if err == nil {
				final[s.Key()], err = sc.predictStage(st.Program)
			}
		} else {
			g, err = sc.canon.Subgraph(sc.canon.Name, s.Inputs, s.Outputs)
		}
		if err != nil {
			return nil, passes.SplitCost{}, fmt.Errorf("stage %d (%s): %w", i, s.Kind, err)
		}
		if st.Graph, err = g.MarshalBinary(); err != nil {
			return nil, passes.SplitCost{}, fmt.Errorf("stage %d (%s): %w", i, s.Kind, err)
		}
		stages[i] = st
	}
	pred, err := passes.CostSplit(sc.canon, chosen.Stages, link, func(s passes.StageSpec) (passes.StageCost, error) {
		return final[s.Key()], nil
	})
	return stages, pred, err
}

// compileSplit chooses and builds a split plan: canon is the canonical
// graph, approx the same after the Encrypt table.
func compileSplit(canon, approx *ir.Graph, opts CompileOptions, logf func(string, ...any)) ([]Stage, *SplitReport, error) {
	prof := opts.Profile
	if prof == nil {
		prof = cost.DefaultProfile()
	}
	lower := opts.Lower
	if lower.Probes == nil {
		lower.Probes = passes.NewProbeCache()
	}
	sc := &splitCompiler{name: canon.Name, canon: canon, approx: approx, lower: lower,
		prof: withBootstrapTime(prof), calib: opts.Calib, costs: map[string]passes.StageCost{}}
	split := opts.Split.WithDefaults()
	if split.Log == nil {
		split.Log = opts.Log
	}
	emb, err := passes.Embedding(canon)
	if err != nil {
		return nil, nil, err
	}
	if split.Policy.RevealPrefix < 0 {
		split.Policy.RevealPrefix = emb.Weighted
	}
	if note := emb.String(); note != "" {
		logf("split: %s", note)
	}
	choice, err := passes.ChooseSplit(canon, split, sc.cost)
	if err != nil {
		return nil, nil, err
	}
	for i, c := range choice.Candidates {
		if i == 5 {
			logf("  ... %d more", len(choice.Candidates)-5)
			break
		}
		logf("  split %s", c)
	}
	stages, pred, err := sc.build(choice.Chosen, split.Link)
	if err != nil {
		return nil, nil, err
	}
	rep := &SplitReport{Cut: split.Cut, Policy: split.Policy, Link: split.Link, Chain: choice.Chain, Predicted: pred, Embedding: emb}
	for _, c := range choice.Candidates {
		rep.Candidates = append(rep.Candidates, *c)
	}
	logf("split: %s; predicted %.3gs per sample from the final stages", choice.Chosen.Label, pred.Total)
	return stages, rep, nil
}
