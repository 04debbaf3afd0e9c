package main

import (
	"fmt"
	"math"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/cost/costplot"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/local"
)

func reportCmd() *cobra.Command {
	var profile, measured, plotPath string
	var asJSON bool
	var samples, cpus int
	var memLimit *string
	cmd := &cobra.Command{
		Use:   "report PLAN [--profile FILE] [--measured OUT.json] [--memory-limit SIZE] [--json] [--plot FILE.svg|png]",
		Short: "Predict a plan's cost per layer: time, operations, keys, memory, precision",
		Long: "report predicts, per layer and in total, what running PLAN encrypted costs: operation\n" +
			"counts (diagonals, hoisted and full rotations, ciphertext products, rescales),\n" +
			"seconds, levels, bootstraps, rotation keys and their bytes, peak memory, network\n" +
			"bytes and the precision (bits) the plan's error bounds guarantee. Times come from\n" +
			"the machine profile (--profile, else the one `ciphercut calibrate` wrote, else the\n" +
			"bundled default). --measured puts the times and errors `ciphercut run/eval\n" +
			"--profile` measured beside the predictions. Times are for an in-process run on\n" +
			"this machine within --memory-limit: the diagonals its memory plan cannot keep\n" +
			"encoded are encoded at each use, and the plan may evaluate fewer ciphertexts at once.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := compiler.ReadPlan(args[0])
			if err != nil {
				return err
			}
			if plan.IsSplit() {
				if measured != "" {
					return fmt.Errorf("%s: --measured takes single-program plans, not split plans", args[0])
				}
				return writeSplitReport(os.Stdout, args[0], plan, profile, asJSON, plotPath)
			}
			mem, err := inProcessMemory(plan.Program, *memLimit, cpus)
			if err != nil {
				return err
			}
			rep, err := buildReport(plan.Program, profile, measured, samples, cpus, mem)
			if err != nil {
				return err
			}
			if plotPath != "" {
				if err := costplot.Write(rep, plotPath); err != nil {
					return err
				}
			}
			if asJSON {
				return cost.WriteJSON(os.Stdout, rep)
			}
			fmt.Printf("plan %s: model %s\n", args[0], plan.ModelName)
			return cost.WriteTable(os.Stdout, rep)
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "machine profile JSON (default: calibrated profile, else the bundled one)")
	cmd.Flags().StringVar(&measured, "measured", "", "measurement JSON written by `run/eval --profile`, shown beside the prediction")
	cmd.Flags().StringVar(&plotPath, "plot", "", "also draw time and precision per layer into FILE.svg or FILE.png")
	cmd.Flags().IntVar(&cpus, "cpus", 0, "cores the evaluator uses (default: the measurement's, else the profile's)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&samples, "samples", 0, "samples per run (default: the measurement's, else one ciphertext)")
	memLimit = memoryLimitFlag(cmd)
	return cmd
}

// buildReport predicts prog's cost with a profile and attaches a
// measurement when measuredPath is set. mem, when not nil, is the run's
// memory plan: its lanes and the diagonals it encodes at each use count;
// nil predicts a run that keeps every diagonal encoded.
func buildReport(prog *ckksir.Program, profilePath, measuredPath string, samples, cpus int, mem *local.MemoryPlan) (*cost.Report, error) {
	prof, src, err := cost.LoadProfileOrDefault(profilePath)
	if err != nil {
		return nil, err
	}
	var m *cost.Measurement
	opts := cost.Options{Ciphertexts: ciphertextsFor(prog, samples), CPUs: cpus}
	if measuredPath != "" {
		if m, err = cost.LoadMeasurement(measuredPath); err != nil {
			return nil, err
		}
		if samples == 0 {
			opts.Ciphertexts = m.Ciphertexts
		}
		if cpus == 0 {
			opts.CPUs = m.CPUs
		}
		opts.Magnitudes = map[string]float64{}
		for _, o := range m.Outputs {
			opts.Magnitudes[o.Name] = o.MaxAbs
		}
	}
	budget := int64(-1)
	if mem != nil {
		budget, opts.Lanes = mem.Budget(), mem.Lanes
	}
	rep, err := compiler.PredictProgramWithin(prog, prof, opts, budget)
	if err != nil {
		return nil, err
	}
	if mem != nil {
		rep.Totals.PeakMemoryBytes = mem.Peak()
		rep.Notes = append(rep.Notes, fmt.Sprintf("in-process run within %.2f GiB: %d lane(s) on %d core(s), %.2f of %.2f GiB of diagonals kept encoded",
			float64(mem.Limit)/(1<<30), mem.Lanes, mem.Cores, float64(mem.Encoded)/(1<<30), float64(mem.EncodedAll)/(1<<30)))
	}
	rep.Profile += " (" + src + ")"
	if m != nil {
		if err := rep.Attach(m); err != nil {
			return nil, fmt.Errorf("%s: %w", measuredPath, err)
		}
	}
	return rep, nil
}

// ciphertextsFor is the number of ciphertext lanes (slot packing) or
// batches (feature packing) that samples take; at least 1.
func ciphertextsFor(prog *ckksir.Program, samples int) int {
	per := prog.Batch
	if prog.Packing == ckksir.PackFeature {
		per = prog.Params.Slots()
	}
	return max(1, (samples+per-1)/max(1, per))
}

// profiler measures an encrypted run for --profile.
type profiler struct {
	path   string
	tracer *cost.Tracer
}

// newProfiler installs a tracer on the session when path is set.
func newProfiler(path string, prog *ckksir.Program, sess *local.Session) *profiler {
	if path == "" {
		return nil
	}
	p := &profiler{path: path, tracer: cost.NewTracer(len(prog.Instrs))}
	sess.SetTrace(p.tracer.Record)
	return p
}

// write saves the measurement: per-instruction times, the run's timing and
// each output's largest error against want (the plan's plaintext
// reference on the same samples).
func (p *profiler) write(planPath string, plan *compiler.Plan, t local.Timing, samples int, y, want *ir.Tensor) error {
	if p == nil {
		return nil
	}
	prog := plan.Program
	instrs := p.tracer.Seconds()
	maxAbs := 0.0
	for _, v := range y.Float {
		maxAbs = math.Max(maxAbs, math.Abs(v))
	}
	maxErr, _ := errorStats(y, want)
	m := &cost.Measurement{
		Plan:           planPath,
		Machine:        cost.ThisMachine(),
		CPUs:           runtime.NumCPU(),
		Samples:        samples,
		Ciphertexts:    t.Ciphertexts,
		EvalSeconds:    t.Eval.Seconds(),
		EncryptSeconds: t.Encrypt.Seconds(),
		DecryptSeconds: t.Decrypt.Seconds(),
		Instrs:         instrs,
		Layers:         cost.LayerSeconds(prog, instrs),
		Outputs: []cost.MeasuredOutput{{Name: prog.Outputs[0].Name, MaxError: maxErr, MaxAbs: maxAbs,
			Bound: outputBound(plan)}},
	}
	if prog.Packing == ckksir.PackFeature {
		m.Ciphertexts = ciphertextsFor(prog, samples) // batches, not ciphertexts
	}
	if err := cost.SaveMeasurement(p.path, m); err != nil {
		return err
	}
	fmt.Printf("measurement written to %s (see `ciphercut report %s --measured %s`)\n", p.path, planPath, p.path)
	return nil
}
