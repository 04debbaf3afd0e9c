package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
)

func inspectCmd() *cobra.Command {
	var after string
	var raw, all bool
	cmd := &cobra.Command{
		Use:   "inspect MODEL.onnx",
		Short: "Print the tensor IR of a model, one line per node",
		Long: "inspect loads an ONNX model, runs the canonicalization passes (or stops after\n" +
			"--after PASS) and prints the IR: one line per node with op, shapes, parameter\n" +
			"count and attributes.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	return cmd
}
