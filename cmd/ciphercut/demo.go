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
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func demoCmd() *cobra.Command {
	var model string
	var samples int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Compile a bundled model and run it on encrypted samples (no files or setup needed)",
		Long: "demo takes a model compiled into the binary (cancer-mlp: a hospital scores\n" +
			"patients without revealing them; or digits-mlp), compiles it to a CKKS plan at\n" +
			"128-bit security, encrypts a handful of held-out samples, evaluates them with only\n" +
			"the public evaluation keys, decrypts, and compares with the plaintext model.",
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
			sess, err := local.NewSession(plan.Program, sessionProgress(plan.Program))
			if err != nil {
				return err
			}
			x, labels := zoo.Rows(m.Inputs, 0, n), zoo.Rows(m.Labels, 0, n)
			y, t, err := sess.Infer(x)
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
			return printDemo(y, exact, approx, labels, plan, sess.Setup, t)
		},
	}
	cmd.Flags().StringVar(&model, "model", "cancer-mlp", "bundled model: cancer-mlp or digits-mlp")
	cmd.Flags().IntVar(&samples, "samples", 8, "held-out samples to run encrypted")
	return cmd
}

// printDemo prints one line per sample (encrypted and plaintext class and
// scores) and the summary: the error against the exact model (mostly the
// polynomial approximation) and against the plan's own plaintext reference
// (the CKKS noise, which the plan bounds).
func printDemo(y, exact, approx, labels *ir.Tensor, plan *compiler.Plan, s local.Setup, t local.Timing) error {
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
	printTiming(s, t, len(enc))
	fmt.Fprintln(os.Stdout, "the evaluator held only public evaluation keys; the secret key never left the client.")
	return nil
}
