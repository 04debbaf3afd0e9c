package main

import (
	"fmt"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func runCmd() *cobra.Command {
	var input, output, profile string
	var verify bool
	var rmt *remoteFlags
	var memLimit *string
	cmd := &cobra.Command{
		Use:   "run PLAN --input X.npy [-o OUT.npy] [--verify] [--profile M.json]",
		Short: "Run a plan on encrypted inputs",
		Long: "run generates keys, encrypts the samples of X.npy (stacked along the leading axis),\n" +
			"evaluates the plan on the ciphertexts with only the public evaluation keys,\n" +
			"decrypts and writes OUT.npy (same leading axis) or prints the outputs. --verify\n" +
			"also runs the plan's plaintext reference and fails when the encrypted result\n" +
			"leaves the error bound the plan predicts.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rmt.memLimit = *memLimit
			if input == "" {
				return fmt.Errorf("missing --input X.npy")
			}
			if isOwnerPlan(args[0]) { // see remote_run.go
				return rmt.runOwnerPlan(args[0], input, output, verify)
			}
			plan, ref, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			x, err := readTensor(input)
			if err != nil {
				return err
			}
			if !x.DType.IsFloat() && ref.Inputs[0].DType.IsFloat() {
				return fmt.Errorf("%s holds %s data; the model's input %q takes real numbers", input, x.DType, ref.Inputs[0].Name)
			}
			if plan.IsSplit() {
				if profile != "" {
					return fmt.Errorf("%s: a split plan runs without --profile (measurements take single-program plans)", args[0])
				}
				var y *ir.Tensor
				var rep *split.Report
				if rmt.enabled() {
					y, rep, err = rmt.runSplit(args[0], plan, x, verify)
				} else {
					y, rep, err = runSplit(plan, ref, x, verify, *memLimit)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return finishSplitRun(os.Stdout, ref.Outputs[0].Name, ref, x, y, output, verify, rep)
			}
			if rmt.enabled() {
				y, err := rmt.run(args[0], plan, x)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return finishRun(ref, plan, x, y, output, verify)
			}
			sess, err := newSession(plan.Program, *memLimit)
			if err != nil {
				return err
			}
			prof := newProfiler(profile, plan.Program, sess)
			y, t, err := sess.Infer(x)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if prof != nil {
				want, err := zoo.RunBatched(ref, x, 1)
				if err != nil {
					return fmt.Errorf("plaintext reference: %w", err)
				}
				if err := prof.write(args[0], plan, t, x.Shape[0], y, want); err != nil {
					return err
				}
			}
			if output != "" {
				if err := writeTensor(output, plan.Program.Outputs[0].Name, y); err != nil {
					return err
				}
			} else {
				printTensor(plan.Program.Outputs[0].Name, y)
			}
			printTiming(sess.Setup, t, x.Shape[0])
			if verify {
				return verifyAgainst(ref, plan, x, y)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "input samples (.npy or .pb), stacked along the leading axis")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output file (.npy or .pb)")
	cmd.Flags().StringVar(&profile, "profile", "", "write measured per-layer times and errors to this JSON file (for `ciphercut report --measured`)")
	cmd.Flags().BoolVar(&verify, "verify", false, "compare with the plaintext reference within the plan's predicted bound")
	rmt = addRemoteFlags(cmd)
	memLimit = memoryLimitFlag(cmd)
	return cmd
}

// loadPlan reads a plan and its plaintext reference graph.
func loadPlan(path string) (*compiler.Plan, *ir.Graph, error) {
	plan, err := compiler.ReadPlan(path)
	if err != nil {
		return nil, nil, err
	}
	g, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return plan, g, nil
}

// outputBound is the plan's predicted bound on the output error.
func outputBound(plan *compiler.Plan) float64 {
	return plan.Program.Values[plan.Program.Outputs[0].Value].Bound
}

// verifyAgainst runs the plan's plaintext reference on x and checks the
// encrypted outputs y against the plan's predicted bound.
func verifyAgainst(ref *ir.Graph, plan *compiler.Plan, x, y *ir.Tensor) error {
	want, err := zoo.RunBatched(ref, x, 1)
	if err != nil {
		return fmt.Errorf("plaintext reference: %w", err)
	}
	if err := reportRanges(ref, x); err != nil {
		return err
	}
	maxErr, meanErr := errorStats(y, want)
	bound := outputBound(plan)
	fmt.Printf("verify: max |encrypted - plaintext| = %.3e, mean %.3e, plan bound %.3e, top-1 agreement %.2f%%\n",
		maxErr, meanErr, bound, 100*zoo.Agreement(y, want))
	if maxErr > bound {
		return fmt.Errorf("encrypted result exceeds the plan's error bound (%.3e > %.3e)", maxErr, bound)
	}
	return nil
}

// errorStats returns the max and mean absolute elementwise difference.
func errorStats(a, b *ir.Tensor) (maxErr, meanErr float64) {
	sum := 0.0
	for i, v := range a.Float {
		d := math.Abs(v - b.Float[i])
		sum += d
		maxErr = math.Max(maxErr, d)
	}
	return maxErr, sum / float64(len(a.Float))
}

func printTiming(s local.Setup, t local.Timing, samples int) {
	fmt.Fprintf(os.Stdout, "keys: %v (%d Galois keys, %.1f MiB evaluation keys), worker setup %v\n",
		s.KeyGen.Round(time.Millisecond), s.GaloisKeys, float64(s.EvalKeyBytes)/(1<<20), s.Encode.Round(time.Millisecond))
	fmt.Fprintf(os.Stdout, "%d samples in %d ciphertexts: encrypt %v, evaluate %v, decrypt %v (%.1f samples/s); upload %.1f MiB, download %.1f MiB\n",
		samples, t.Ciphertexts, t.Encrypt.Round(time.Millisecond), t.Eval.Round(time.Millisecond), t.Decrypt.Round(time.Millisecond),
		float64(samples)/t.Total().Seconds(), float64(t.UploadBytes)/(1<<20), float64(t.DownloadBytes)/(1<<20))
}

// reportRanges runs the plaintext debug check: every polynomial input that
// leaves the interval it was calibrated for is flagged, since the encrypted
// result is only accurate inside it.
func reportRanges(ref *ir.Graph, x *ir.Tensor) error {
	viol, err := passes.OutOfRange(ref, x)
	if err != nil {
		return fmt.Errorf("range check: %w", err)
	}
	if len(viol) == 0 {
		fmt.Println("range check: every activation input stayed inside its calibrated interval")
		return nil
	}
	samples := map[int]bool{}
	for _, v := range viol {
		samples[v.Sample] = true
	}
	fmt.Printf("range check: WARNING: %d samples drive %d activation inputs outside their calibrated interval; their encrypted outputs may be wrong (recompile with --calib covering them, or a larger --margin):\n",
		len(samples), len(viol))
	for i, v := range viol {
		if i == 5 {
			fmt.Printf("  ... %d more\n", len(viol)-5)
			break
		}
		fmt.Println("  " + v.String())
	}
	return nil
}
