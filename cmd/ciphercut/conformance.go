package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/testsuite/conformance"
)

func conformanceCmd() *cobra.Command {
	var encrypted bool
	cmd := &cobra.Command{
		Use:   "conformance DIR",
		Short: "Run ONNX backend test cases through the frontend and interpreter",
		Long: "conformance runs every case folder under DIR (model.onnx plus\n" +
			"test_data_set_*/input_*.pb and output_*.pb), prints one line per case and a last\n" +
			"line `N passed, M failed, K skipped`. It exits non-zero when a case fails.\n" +
			"--encrypted compiles each case in the CKKS subset (one real encrypted input, one\n" +
			"output; a tensor without a leading batch axis of 1 is encrypted whole as one\n" +
			"sample) with its own input as calibration, runs it encrypted at 128-bit\n" +
			"security and checks the output within the approximation error plus the plan's\n" +
			"predicted bound.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run := conformance.Run
			if encrypted {
				run = conformance.RunEncrypted
			}
			s, err := run(args[0], os.Stdout)
			if err != nil {
				return err
			}
			if s.Failed > 0 {
				return fmt.Errorf("%d conformance cases failed", s.Failed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&encrypted, "encrypted", false, "run the cases in the CKKS subset encrypted")
	return cmd
}
