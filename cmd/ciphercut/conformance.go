package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/testsuite/conformance"
)

func conformanceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "conformance DIR",
		Short: "Run ONNX backend test cases through the frontend and interpreter",
		Long: "conformance runs every case folder under DIR (model.onnx plus\n" +
			"test_data_set_*/input_*.pb and output_*.pb), prints one line per case and a last\n" +
			"line `N passed, M failed, K skipped`. It exits non-zero when a case fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := conformance.Run(args[0], os.Stdout)
			if err != nil {
				return err
			}
			if s.Failed > 0 {
				return fmt.Errorf("%d conformance cases failed", s.Failed)
			}
			return nil
		},
	}
}
