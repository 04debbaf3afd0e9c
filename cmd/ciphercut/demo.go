package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func demoCmd() *cobra.Command {
	var model string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a bundled model end to end (no files or setup needed)",
		Long: "demo takes a model compiled into the binary (cancer-mlp: a hospital scoring\n" +
			"patients, or digits-mlp), canonicalizes it, prints its IR and runs every\n" +
			"held-out sample through the reference interpreter, comparing with PyTorch.\n" +
			"Encrypted execution of the same plan is the next milestone.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := zoo.Open(zoo.Embedded(), model)
			if err != nil {
				return fmt.Errorf("no bundled model %q (have cancer-mlp, digits-mlp): %w", model, err)
			}
			fmt.Printf("model %s: %d held-out samples, input %v\n\n", m.Name, m.Samples(), m.Inputs.Shape[1:])
			start := time.Now()
			g, err := canonical(m)
			if err != nil {
				return err
			}
			if err := ir.Dump(os.Stdout, g); err != nil {
				return err
			}
			r, err := evaluate(m)
			if err != nil {
				return err
			}
			fmt.Printf("\nplaintext reference: accuracy %.2f%% on %d samples, max |ciphercut - PyTorch| = %.2e, "+
				"canonical graph max |diff| = %.2e, %v\n", 100*r.accuracy, m.Samples(), r.torchDiff, r.canonicalDiff,
				time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "cancer-mlp", "bundled model: cancer-mlp or digits-mlp")
	return cmd
}
