package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

func compileCmd() *cobra.Command {
	var out, calib, workerMemory string
	var bootstrap bool
	var opts compiler.CompileOptions
	var cf cutFlags
	var splitOut string // --split-out: see shard.go
	var split *splitFlags
	cmd := &cobra.Command{
		Use:   "compile MODEL.onnx -o PLAN",
		Short: "Compile a model into a CKKS encrypted-execution plan",
		Long: "compile canonicalizes the model, calibrates each activation's input range on\n" +
			"calibration samples (the inputs.npy beside the model by default, or --calib),\n" +
			"replaces activations by the cheapest polynomials that keep the outputs on target,\n" +
			"lowers to CKKS operations and picks 128-bit secure parameters. The plan file is\n" +
			"versioned, checksummed and written atomically.\n\n" +
			"--cut auto|after=NODE splits the model between the data owner (plaintext prefix and\n" +
			"suffix, within --reveal-prefix/--reveal-suffix weighted layers) and a worker\n" +
			"(encrypted), choosing the split of least predicted latency: data-owner compute\n" +
			"(--client-speed), encryption, transfers (--bandwidth), worker time (cost profile,\n" +
			"bootstraps placed per candidate), decryption and round trips (--rtt).\n" +
			"--client-aided activations|all lets the data owner compute activations between\n" +
			"encrypted segments where that costs less than polynomials and bootstraps.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("missing -o PLAN")
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			g, err := onnx.Decode(data, args[0])
			if err != nil {
				return err
			}
			samples, err := loadCalib(args[0], calib)
			if err != nil {
				return err
			}
			opts.Calib = samples
			opts.Log = os.Stderr
			if opts.Split, opts.Profile, err = cf.options(cmd, g); err != nil {
				return err
			}
			if bootstrap {
				opts.Lower.Boot = ckksir.DefaultBootParams()
			}
			if opts.Lower.MaxKeyBytes, err = keyBudget(workerMemory); err != nil {
				return err
			}
			name := filepath.Base(filepath.Dir(args[0]))
			plan, err := compiler.Compile(g, name, data, opts)
			var ue *ir.UnsupportedError
			if err != nil && errors.As(err, &ue) && opts.Lower.Batch > 1 && !cmd.Flags().Changed("packing") {
				// Slot packing holds whole samples per ciphertext; when
				// --batch asks for more than the largest ring holds, one
				// sample per slot does.
				fmt.Fprintf(os.Stderr, "slot packing cannot hold %d samples per ciphertext (%v); using feature packing\n", opts.Lower.Batch, ue)
				opts.Lower.Packing = ckksir.PackFeature
				plan, err = compiler.Compile(g, name, data, opts)
			}
			if err != nil {
				return err
			}
			if plan.Vocab, err = readVocab(filepath.Join(filepath.Dir(args[0]), "vocab.json"), false); err != nil {
				return err
			}
			if err := compiler.WritePlan(out, plan); err != nil {
				return err
			}
			fmt.Print(plan.Approximations)
			if plan.IsSplit() {
				printSplit(os.Stdout, out, plan)
				if splitOut != "" {
					return split.write(out, plan, splitOut)
				}
				return nil
			}
			if prog := plan.Program; prog.Packing == ckksir.PackFeature {
				fmt.Printf("plan %s: %s\n  packing feature, depth %d, %d samples per batch (one per slot), %d scalar products\n",
					out, prog.Params, prog.Depth(), prog.Batch, prog.ScalarProducts())
			} else {
				fmt.Printf("plan %s: %s\n  packing slot, depth %d, %d samples per ciphertext, %d diagonals\n", out, prog.Params,
					prog.Depth(), prog.Batch, prog.DiagonalCount())
			}
			if n := plan.Program.Bootstraps(); n > 0 {
				fmt.Printf("  %d bootstraps (%s)\n", n, plan.Program.Boot)
			}
			if splitOut != "" {
				return split.write(out, plan, splitOut)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "plan file to write")
	cmd.Flags().StringVar(&calib, "calib", "", "calibration samples: a .npy file or a folder holding inputs.npy (default: inputs.npy beside the model)")
	cmd.Flags().IntVar(&opts.Approx.PrecisionBits, "precision", 6, "output precision target in bits: approximations keep max |output error| <= 2^-BITS * max |output|")
	cmd.Flags().IntVar(&opts.Lower.Batch, "batch", 1, "samples (or prompts) each ciphertext must hold at least (more are packed when they fit; a transformer's products of two encrypted matrices are computed in parts to leave room); beyond what slot packing holds, feature packing is chosen unless --packing is given")
	cmd.Flags().Float64Var(&opts.Approx.Margin, "margin", 0.25, "widen each calibrated range by this fraction of its half-width on each side")
	cmd.Flags().Var(&opts.Lower.Packing, "packing", "slot: whole samples per ciphertext (low latency); feature: one sample per slot, one ciphertext per tensor element, no rotations (throughput)")
	cmd.Flags().IntVar(&opts.Lower.MaxLogN, "max-logn", 16, "largest ring degree 2^LOGN to consider")
	cf.add(cmd)
	cmd.Flags().BoolVar(&opts.Lower.NaivePlacement, "naive-placement", false, "place bootstraps where a value runs out of levels instead of where they cost least (to compare the two)")
	cmd.Flags().StringVar(&workerMemory, "worker-memory", "16GiB", "memory of the machine that runs the encrypted part: a circuit whose evaluation keys without bootstrapping would exceed 3/4 of it bootstraps on a short chain instead")
	cmd.Flags().BoolVar(&bootstrap, "bootstrap", true, "bootstrap a model too deep for any modulus chain (on N=2^16, with a sparse secret; bootstrapping keys take about 8 GB)")
	cmd.Flags().StringVar(&splitOut, "split-out", "", "also write the split plan into this directory: the data-owner plan (no worker weights), one worker shard per segment and the manifest (as `ciphercut shard`)")
	split = addSplitFlags(cmd)
	return cmd
}

// loadCalib reads calibration samples: the --calib file or folder, else the
// inputs.npy beside the model.
func loadCalib(model, flag string) (*ir.Tensor, error) {
	path := flag
	if path == "" {
		path = filepath.Join(filepath.Dir(model), "inputs.npy")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no calibration samples: %s does not exist; pass --calib FILE.npy or a folder with inputs.npy", path)
		}
	} else if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "inputs.npy")
	}
	return npy.Read(path)
}
