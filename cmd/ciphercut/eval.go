package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func evalCmd() *cobra.Command {
	var data string
	var limit int
	var profile string
	var memLimit *string
	cmd := &cobra.Command{
		Use:   "eval (PLAN --data MODEL_DIR | MODEL_DIR...)",
		Short: "Measure accuracy on a model folder's held-out samples, encrypted or in plaintext",
		Long: "With a plan and --data, eval runs every sample of the model folder (model.onnx,\n" +
			"inputs.npy, labels.npy, expected.npy, as under testsuite/models) encrypted and prints\n" +
			"plaintext accuracy, encrypted accuracy, top-1 agreement and the errors against the\n" +
			"plan's plaintext reference and bound. Without --data, eval runs each model folder\n" +
			"through the reference interpreter, as imported and after canonicalization, and\n" +
			"prints accuracy and the largest difference from PyTorch's own outputs.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data != "" {
				if len(args) != 1 {
					return fmt.Errorf("eval --data takes exactly one plan")
				}
				return evalEncrypted(args[0], data, limit, profile, *memLimit)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "model\tsamples\taccuracy\tmax |ours-torch|\tcanonical max |diff|\tcanonical nodes\ttime")
			for _, dir := range args {
				m, err := zoo.OpenDir(dir)
				if err != nil {
					return err
				}
				r, err := evaluate(m)
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%s\t%d\t%.2f%%\t%.2e\t%.2e\t%d\t%v\n", m.Name, m.Samples(), 100*r.accuracy,
					r.torchDiff, r.canonicalDiff, r.nodes, r.elapsed.Round(time.Millisecond))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "model folder whose samples to run encrypted through PLAN")
	cmd.Flags().IntVar(&limit, "limit", 0, "run only the first N samples (0: all)")
	cmd.Flags().StringVar(&profile, "profile", "", "write measured per-layer times and errors to this JSON file (for `ciphercut report --measured`)")
	memLimit = memoryLimitFlag(cmd)
	return cmd
}

// evalEncrypted runs a model folder's samples through a plan encrypted.
func evalEncrypted(planPath, dir string, limit int, profile, memLimit string) error {
	plan, ref, err := loadPlan(planPath)
	if err != nil {
		return err
	}
	m, err := zoo.OpenDir(dir)
	if err != nil {
		return err
	}
	n := m.Samples()
	if limit > 0 && limit < n {
		n = limit
	}
	x, labels := zoo.Rows(m.Inputs, 0, n), zoo.Rows(m.Labels, 0, n)
	exact, err := zoo.RunBatched(m.Graph, x, 32)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	approx, err := zoo.RunBatched(ref, x, 1)
	if err != nil {
		return fmt.Errorf("%s: plan reference: %w", planPath, err)
	}
	if err := reportRanges(ref, x); err != nil {
		return err
	}
	if plan.IsSplit() {
		if profile != "" {
			return fmt.Errorf("%s: --profile measures single-program plans, not split plans", planPath)
		}
		y, rep, err := runSplit(plan, ref, x, true, memLimit)
		if err != nil {
			return fmt.Errorf("%s: %w", planPath, err)
		}
		fmt.Printf("%s on %d samples (split %q)\n", m.Name, n, plan.Split.Candidates[0].Label)
		printAccuracy(exact, approx, y, labels)
		printSplitTiming(os.Stdout, rep, n)
		return nil
	}
	sess, err := newSession(plan.Program, memLimit)
	if err != nil {
		return err
	}
	prof := newProfiler(profile, plan.Program, sess)
	y, t, err := sess.Infer(x)
	if err != nil {
		return fmt.Errorf("%s: %w", planPath, err)
	}
	if err := prof.write(planPath, plan, t, n, y, approx); err != nil {
		return err
	}
	maxErr, meanErr := errorStats(y, approx)
	maxExact, meanExact := errorStats(y, exact)
	fmt.Printf("%s on %d samples (%s)\n", m.Name, n, plan.Program.Params)
	printAccuracy(exact, approx, y, labels)
	fmt.Printf("  |encrypted - plan reference|  max %.3e  mean %.3e  (plan bound %.3e)\n", maxErr, meanErr, outputBound(plan))
	fmt.Printf("  |encrypted - exact model|     max %.3e  mean %.3e\n", maxExact, meanExact)
	printTiming(sess.Setup, t, n)
	if maxErr > outputBound(plan) {
		return fmt.Errorf("encrypted result exceeds the plan's error bound (%.3e > %.3e)", maxErr, outputBound(plan))
	}
	return nil
}

// printAccuracy prints the accuracies of the exact model, its polynomial
// reference and the encrypted run, and the encrypted run's agreement.
func printAccuracy(exact, approx, y, labels *ir.Tensor) {
	fmt.Printf("  plaintext accuracy    %.2f%%\n", 100*zoo.Accuracy(exact, labels))
	fmt.Printf("  polynomial plaintext  %.2f%%\n", 100*zoo.Accuracy(approx, labels))
	fmt.Printf("  encrypted accuracy    %.2f%%\n", 100*zoo.Accuracy(y, labels))
	fmt.Printf("  top-1 agreement       %.2f%% with plaintext\n", 100*zoo.Agreement(y, exact))
	if d := disagreements(y, exact, 10); d != "" {
		fmt.Printf("  disagreeing samples   %s\n", d)
	}
}

// disagreements lists the samples (at most limit, then a count) whose top-1
// class differs between y and want, as "index (class in y, in want)".
func disagreements(y, want *ir.Tensor, limit int) string {
	got, exp := zoo.Argmax(y), zoo.Argmax(want)
	var parts []string
	more := 0
	for i := range got {
		if i < len(exp) && got[i] != exp[i] {
			if len(parts) == limit {
				more++
				continue
			}
			parts = append(parts, fmt.Sprintf("%d (%d, plaintext %d)", i, got[i], exp[i]))
		}
	}
	if more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(parts, ", ")
}

type evaluation struct {
	accuracy      float64 // interpreter on the imported graph
	torchDiff     float64 // max |interpreter - PyTorch|
	canonicalDiff float64 // max |canonical - imported|
	nodes         int     // nodes after canonicalization
	elapsed       time.Duration
}

// evaluate runs a model's held-out samples through the imported and the
// canonicalized graph.
func evaluate(m *zoo.Model) (evaluation, error) {
	var r evaluation
	start := time.Now()
	out, err := zoo.RunBatched(m.Graph, m.Inputs, 32)
	if err != nil {
		return r, fmt.Errorf("%s: %w", m.Name, err)
	}
	r.accuracy = zoo.Accuracy(out, m.Labels)
	r.torchDiff = zoo.MaxAbsDiff(out, m.Expected)
	// Run the canonical graph in chunks that divide the sample count.
	chunk := 1
	for c := min(32, m.Samples()); c >= 1; c-- {
		if m.Samples()%c == 0 {
			chunk = c
			break
		}
	}
	canon, err := canonicalBatch(m, chunk)
	if err != nil {
		return r, err
	}
	r.nodes = len(canon.Nodes)
	cout, err := zoo.RunBatched(canon, m.Inputs, 32)
	if err != nil {
		return r, fmt.Errorf("%s after canonicalization: %w", m.Name, err)
	}
	r.canonicalDiff = zoo.MaxAbsDiff(cout, out)
	r.elapsed = time.Since(start)
	return r, nil
}

// canonical returns a canonicalized copy of the model's graph.
func canonical(m *zoo.Model) (*ir.Graph, error) {
	return canonicalBatch(m, 1)
}

// canonicalBatch canonicalizes a copy of the model's graph for batches of
// the given size (canonical shapes are static).
func canonicalBatch(m *zoo.Model, batch int) (*ir.Graph, error) {
	g := m.Graph.Clone()
	if len(g.Inputs) == 1 && len(g.Inputs[0].Shape) > 0 && g.Inputs[0].Shape[0] < 0 {
		shape := append(ir.Shape{batch}, g.Inputs[0].Shape[1:]...)
		if err := passes.BindInputs(g, map[string]ir.Shape{g.Inputs[0].Name: shape}); err != nil {
			return nil, err
		}
	}
	if err := compiler.RunPasses(g, compiler.Canonicalize, compiler.Options{Verify: true}); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return g, nil
}
