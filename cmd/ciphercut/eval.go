package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func evalCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "eval MODEL_DIR...",
		Short: "Check bundled models on their held-out samples",
		Long: "eval runs each model folder (model.onnx, inputs.npy, labels.npy, expected.npy, as\n" +
			"under testsuite/models) through the reference interpreter, as imported and after\n" +
			"canonicalization, and prints accuracy and the largest difference from PyTorch's\n" +
			"own outputs.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	canon, err := canonical(m)
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
	g := m.Graph.Clone()
	if err := compiler.RunPasses(g, compiler.Canonicalize, compiler.Options{Verify: true}); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return g, nil
}
