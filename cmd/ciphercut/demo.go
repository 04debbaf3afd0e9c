package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func demoCmd() *cobra.Command {
	var model string
	var samples, workers, segments int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Compile a bundled model and run it on encrypted samples (no files or setup needed)",
		Long: "demo takes a model compiled into the binary (cancer-mlp: a hospital scores\n" +
			"patients without revealing them; or digits-mlp), compiles it to a CKKS plan at\n" +
			"128-bit security, encrypts a handful of held-out samples, evaluates them with only\n" +
			"the public evaluation keys, decrypts, and compares with the plaintext model.\n" +
			"--workers N runs the encrypted part on N worker hosts started in this process,\n" +
			"over libp2p on loopback (as `run --workers N`), split in --segments segments.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := zoo.Open(zoo.Embedded(), model)
			if err != nil {
				return fmt.Errorf("no bundled model %q (have cancer-mlp, digits-mlp): %w", model, err)
			}
			onnxBytes, err := fs.ReadFile(zoo.Embedded(), path.Join(model, "model.onnx"))
			if err != nil {
				return err
			}
			n := min(samples, m.Samples())
			fmt.Printf("model %s: input %v, compiling with %d calibration samples\n", m.Name, m.Inputs.Shape[1:], m.Samples())
			start := time.Now()
			plan, err := compiler.Compile(m.Graph, m.Name, onnxBytes, compiler.CompileOptions{Calib: m.Inputs})
			if err != nil {
				return err
			}
			fmt.Print(plan.Approximations)
			fmt.Printf("plan: %s, depth %d, compiled in %v\n\n", plan.Program.Params, plan.Program.Depth(), time.Since(start).Round(time.Millisecond))
			x, labels := zoo.Rows(m.Inputs, 0, n), zoo.Rows(m.Labels, 0, n)
			y, timing, err := demoEncrypted(plan, x, workers, segments)
			if err != nil {
				return err
			}
			exact, err := zoo.RunBatched(m.Graph, x, 32)
			if err != nil {
				return err
			}
			ref, err := ir.UnmarshalGraph(plan.Graph)
			if err != nil {
				return err
			}
			approx, err := zoo.RunBatched(ref, x, 1)
			if err != nil {
				return err
			}
			return printDemo(y, exact, approx, labels, plan, timing)
		},
	}
	cmd.Flags().StringVar(&model, "model", "cancer-mlp", "bundled model: cancer-mlp or digits-mlp")
	cmd.Flags().IntVar(&samples, "samples", 8, "held-out samples to run encrypted")
	cmd.Flags().IntVar(&workers, "workers", 0, "run the encrypted part on N in-process libp2p workers (0: in this process, no network)")
	cmd.Flags().IntVar(&segments, "segments", 0, "with --workers: encrypted segments (default 2 with 2 workers or more)")
	return cmd
}

// printDemo prints one line per sample (encrypted and plaintext class and
// scores) and the summary: the error against the exact model (mostly the
// polynomial approximation) and against the plan's own plaintext reference
// (the CKKS noise, which the plan bounds).
// demoEncrypted runs the plan on x encrypted: in this process, or with
// workers > 0 through that many in-process libp2p workers, on the code path
// of `run --workers` (which prints where each segment ran and its time).
// It returns the decrypted outputs and a function printing the timing.
func demoEncrypted(plan *compiler.Plan, x *ir.Tensor, workers, segments int) (*ir.Tensor, func(), error) {
	if workers <= 0 {
		sess, err := local.NewSession(plan.Program, sessionProgress(plan.Program))
		if err != nil {
			return nil, nil, err
		}
		y, t, err := sess.Infer(x)
		if err != nil {
			return nil, nil, err
		}
		return y, func() { printTiming(sess.Setup, t, x.Shape[0]) }, nil
	}
	data, err := compiler.EncodePlan(plan)
	if err != nil {
		return nil, nil, err
	}
	rf := &remoteFlags{workers: workers, segments: segments, redundancy: 1, timeout: 10 * time.Minute}
	job, err := rf.fromPlan(plan.ModelName, segment.PlanID(data), plan)
	if err != nil {
		return nil, nil, err
	}
	fmt.Println()
	y, err := rf.execute(job, x)
	if err != nil {
		return nil, nil, err
	}
	fmt.Println()
	return y, func() {}, nil
}

func printDemo(y, exact, approx, labels *ir.Tensor, plan *compiler.Plan, timing func()) error {
	enc, plain := zoo.Argmax(y), zoo.Argmax(exact)
	k := y.Shape[len(y.Shape)-1]
	fmt.Printf("%-7s %-6s %-10s %-10s %s\n", "sample", "label", "encrypted", "plaintext", "encrypted scores")
	for i := range enc {
		fmt.Printf("%-7d %-6d %-10d %-10d %.3f\n", i, labels.Ints()[i], enc[i], plain[i], y.Float[i*k:(i+1)*k])
	}
	maxErr, _ := errorStats(y, exact)
	noise, _ := errorStats(y, approx)
	fmt.Printf("\ntop-1 agreement with the plaintext model: %.0f%%; max |encrypted - plaintext| = %.3g (polynomial activations)\n",
		100*zoo.Agreement(y, exact), maxErr)
	if noise > outputBound(plan) {
		return fmt.Errorf("CKKS noise %.3g exceeds the plan's bound %.3g", noise, outputBound(plan))
	}
	fmt.Printf("CKKS noise: max |encrypted - plan's plaintext reference| = %.3g, within the plan's bound %.3g\n", noise, outputBound(plan))
	timing()
	fmt.Fprintln(os.Stdout, "the evaluator held only public evaluation keys; the secret key never left the client.")
	return nil
}
