package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/local"
)

func inspectCmd() *cobra.Command {
	var memLimit *string
	var after string
	var raw, all bool
	cmd := &cobra.Command{
		Use:   "inspect MODEL.onnx | PLAN",
		Short: "Print the IR of a model (one line per node) or of a compiled plan",
		Long: "inspect loads an ONNX model, runs the canonicalization passes (or stops after\n" +
			"--after PASS) and prints the IR: one line per node with op, shapes, parameter\n" +
			"count and attributes. Given a plan, it prints the activation approximations, the\n" +
			"HE-level program (one line per CKKS instruction with levels and error bounds)\n" +
			"and the evaluation keys the plan needs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !strings.HasSuffix(args[0], ".onnx") {
				return inspectPlan(args[0], *memLimit)
			}
			g, err := onnx.Load(args[0])
			if err != nil {
				return err
			}
			if !raw {
				opts := compiler.Options{After: after, Verify: true}
				if all {
					opts.Dump, opts.DumpAll = os.Stdout, true
				}
				if err := compiler.RunPasses(g, compiler.Canonicalize, opts); err != nil {
					return err
				}
			}
			if all {
				return nil
			}
			return ir.Dump(os.Stdout, g)
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "stop after the named pass")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the IR as imported, before any pass")
	cmd.Flags().BoolVar(&all, "all", false, "print the IR after every pass")
	memLimit = memoryLimitFlag(cmd)
	return cmd
}

// inspectPlan prints a plan: approximations, HE program and key summary;
// for a split plan, the stages and each encrypted stage's program.
func inspectPlan(path, memLimit string) error {
	plan, _, err := loadPlan(path)
	if err != nil {
		return err
	}
	if plan.IsSplit() {
		fmt.Printf("plan %s: model %s (sha256 %s), format v%d, split\n\n", path, plan.ModelName, plan.ModelSHA256, plan.FormatVersion)
		fmt.Print(plan.Approximations)
		fmt.Println()
		printSplit(os.Stdout, path, plan)
		for i, s := range plan.Stages {
			if s.Program == nil {
				continue
			}
			fmt.Printf("\nstage %d (%s), %s packing:\n", i, s.Kind, s.Program.Packing)
			if err := inspectProgram(s.Program, memLimit); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Printf("plan %s: model %s (sha256 %s), format v%d, %s packing\n\n", path, plan.ModelName, plan.ModelSHA256, plan.FormatVersion, plan.Program.Packing)
	fmt.Print(plan.Approximations)
	fmt.Println()
	return inspectProgram(plan.Program, memLimit)
}

// inspectProgram prints a CKKS program, its keys and the memory an
// in-process run of it plans within memLimit (the --memory-limit flag).
func inspectProgram(prog *ckksir.Program, memLimit string) error {
	if err := ckksir.Dump(os.Stdout, prog); err != nil {
		return err
	}
	keys, err := ckks.PlanKeys(prog)
	if err != nil {
		return err
	}
	fmt.Printf("\nevaluation keys: %d Galois keys (rotations %v), relinearization %v, up to %.1f MiB each (keys are generated at the level they are used), %.1f MiB in all\n",
		len(keys.Rotations), keys.Rotations, keys.Relinearization, float64(keys.KeyBytes)/(1<<20), float64(keys.TotalBytes)/(1<<20))
	fmt.Printf("encoded weights on the worker: %.1f MiB if all pre-encoded (the runtime encodes the largest at each use when memory is short)\n", float64(keys.EncodedBytes)/(1<<20))
	fmt.Printf("working memory per evaluation lane: %.1f MiB\n", float64(keys.LaneBytes)/(1<<20))
	if keys.BootstrapMatrixBytes > 0 {
		fmt.Printf("bootstrapping DFT matrices on the worker: %.1f MiB\n", float64(keys.BootstrapMatrixBytes)/(1<<20))
	}
	limit, err := limitOrAvailable(memLimit)
	if err != nil {
		return err
	}
	if limit > 0 {
		m, err := local.PlanMemory(keys, local.WeightBytes(prog), limit, runtime.NumCPU())
		if err != nil {
			fmt.Printf("in-process run on this machine (%d cores): %v\n", runtime.NumCPU(), err)
			return nil
		}
		fmt.Printf("in-process run on this machine (%d cores), %s\n", runtime.NumCPU(), m)
	}
	return nil
}
