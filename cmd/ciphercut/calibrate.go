package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

func calibrateCmd() *cobra.Command {
	var logNs []int
	var levels, reps, maxDepth int
	var output string
	var boot bool
	cmd := &cobra.Command{
		Use:   "calibrate [--logn 14,15] [-o FILE]",
		Short: "Measure CKKS operation costs on this machine for the cost model",
		Long: "calibrate times Lattigo's CKKS primitives (encode, encrypt, decrypt, add, plaintext\n" +
			"and ciphertext products, rescale, rotations plain and hoisted, linear-transformation\n" +
			"diagonals, polynomial evaluations) at a few levels of each ring degree, on the\n" +
			"128-bit chain (scale 2^40) the compiler would choose there, and writes the profile\n" +
			"`ciphercut report` predicts with (default: the user cache directory,\n" +
			"ciphercut/profile.json). N=2^16 needs several GiB and minutes: ask for it with\n" +
			"--logn 16; --bootstrap also times one bootstrap there (about 11 GiB more).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				p, err := cost.DefaultProfilePath()
				if err != nil {
					return err
				}
				output = p
			}
			if boot && !slices.Contains(logNs, 16) {
				return fmt.Errorf("calibrate --bootstrap measures bootstrapping on N=2^16, the only ring the compiler bootstraps on: add --logn 16")
			}
			opts := ckks.CalibrateOptions{Levels: levels, Reps: reps, Bootstrap: boot}
			for _, logN := range logNs {
				p, err := calibrationParams(logN, maxDepth)
				if err != nil {
					return err
				}
				opts.Params = append(opts.Params, p)
			}
			var bar *progressbar.ProgressBar
			prof, err := ckks.Calibrate(opts, func(done, total int, what string) {
				if bar == nil {
					bar = newBar(total, "calibrating")
				}
				if bar != nil {
					bar.Describe("calibrating " + what)
					_ = bar.Set(done)
				}
			})
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if err := prof.Save(output); err != nil {
				return err
			}
			fmt.Fprintf(os.Stdout, "profile of %s written to %s\n", prof.Machine, output)
			for _, r := range prof.Rings {
				top := r.Levels[len(r.Levels)-1]
				fmt.Fprintf(os.Stdout, "  N=2^%d, levels %d..%d, |P|=%d: at level %d rotate %.1fms, hoisted rotation %.1fms, diagonal %.3fms, ct×ct %.1fms\n",
					r.LogN, r.Levels[0].Level, top.Level, len(r.LogP), top.Level, 1000*top.Rotate, 1000*top.HoistedRotate, 1000*top.Diagonal, 1000*top.MulRelin)
				if r.Bootstrap > 0 {
					fmt.Fprintf(os.Stdout, "  N=2^%d: one bootstrap %.1fs\n", r.LogN, r.Bootstrap)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntSliceVar(&logNs, "logn", []int{14, 15}, "ring degrees log2(N) to measure, in [13, 16]")
	cmd.Flags().IntVar(&levels, "levels", 4, "levels measured per ring (interpolated between)")
	cmd.Flags().IntVar(&reps, "reps", 5, "timings per operation (the median is kept)")
	cmd.Flags().IntVar(&maxDepth, "max-depth", 16, "longest chain measured per ring")
	cmd.Flags().BoolVar(&boot, "bootstrap", false, "also time one bootstrap on the N=2^16 ring (needs --logn 16)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "profile file (default: user cache dir/ciphercut/profile.json)")
	return cmd
}

// calibrationParams is the 128-bit chain at scale 2^40 the compiler picks
// for the deepest circuit (up to maxDepth) that ring 2^logN holds.
func calibrationParams(logN, maxDepth int) (ckksir.Params, error) {
	if _, ok := passes.MaxLogQP128[logN]; !ok {
		return ckksir.Params{}, fmt.Errorf("calibrate: --logn %d outside [13, 16]", logN)
	}
	for depth := maxDepth; depth >= 1; depth-- {
		p, err := passes.ChooseParams(depth, 1<<(logN-1), passes.LowerOptions{MaxLogN: logN, LogScale: 40})
		if err == nil && p.LogN == logN {
			return p, nil
		}
	}
	return ckksir.Params{}, fmt.Errorf("calibrate: no 128-bit chain at scale 2^40 for N=2^%d", logN)
}
