package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

func inferCmd() *cobra.Command {
	var inputs, outputs []string
	cmd := &cobra.Command{
		Use:   "infer MODEL.onnx --input X.npy [-o OUT.npy]",
		Short: "Run a model in plaintext with the reference interpreter",
		Long: "infer runs the float64 reference interpreter. Inputs are .npy or TensorProto .pb\n" +
			"files, given in the model's input order or as NAME=FILE; samples may be\n" +
			"stacked along a symbolic leading axis. Outputs go to the -o files (.npy or .pb,\n" +
			"one per model output, in order) or are printed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := onnx.Load(args[0])
			if err != nil {
				return err
			}
			feeds, err := bindInputs(g, inputs)
			if err != nil {
				return err
			}
			var res map[string]*ir.Tensor
			if batchedInput(g) {
				var out *ir.Tensor
				out, err = zoo.RunBatched(g, feeds[g.Inputs[0].Name], 64)
				res = map[string]*ir.Tensor{g.Outputs[0].Name: out}
			} else {
				res, err = plain.Run(g, feeds, nil)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if len(outputs) > 0 && len(outputs) != len(g.Outputs) {
				return fmt.Errorf("%d output files for a model with %d outputs", len(outputs), len(g.Outputs))
			}
			for i, o := range g.Outputs {
				if len(outputs) > 0 {
					if err := writeTensor(outputs[i], o.Name, res[o.Name]); err != nil {
						return err
					}
					fmt.Printf("%s %s%v -> %s\n", o.Name, res[o.Name].DType, res[o.Name].Shape, outputs[i])
					continue
				}
				printTensor(o.Name, res[o.Name])
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&inputs, "input", "i", nil, "input tensor file (.npy or .pb), optionally NAME=FILE; repeat per input")
	cmd.Flags().StringArrayVarP(&outputs, "output", "o", nil, "output file (.npy or .pb); repeat per output")
	return cmd
}

// bindInputs maps the --input flags onto the graph's inputs.
func bindInputs(g *ir.Graph, specs []string) (map[string]*ir.Tensor, error) {
	if len(specs) != len(g.Inputs) {
		names := make([]string, len(g.Inputs))
		for i, in := range g.Inputs {
			names[i] = fmt.Sprintf("%s %s%v", in.Name, in.DType, in.Shape)
		}
		return nil, fmt.Errorf("model takes %d inputs (%s), got %d --input files", len(g.Inputs), strings.Join(names, ", "), len(specs))
	}
	feeds := map[string]*ir.Tensor{}
	for i, spec := range specs {
		name, path := g.Inputs[i].Name, spec
		if k, v, ok := strings.Cut(spec, "="); ok {
			name, path = k, v
		}
		t, err := readTensor(path)
		if err != nil {
			return nil, err
		}
		feeds[name] = t
	}
	for _, in := range g.Inputs {
		t, ok := feeds[in.Name]
		if !ok {
			return nil, fmt.Errorf("no --input for model input %q", in.Name)
		}
		if err := plain.CheckInput(in, t); err != nil {
			return nil, err
		}
	}
	return feeds, nil
}

// printTensor writes a tensor's name, shape and values, one row of the last
// axis per line, eliding the middle of long tensors.
func printTensor(name string, t *ir.Tensor) {
	fmt.Fprintf(os.Stdout, "%s %s%v\n", name, t.DType, t.Shape)
	row := 1
	if len(t.Shape) > 0 {
		row = max(1, t.Shape[len(t.Shape)-1])
	}
	vals := t.Floats()
	rows := len(vals) / row
	for r := 0; r < rows; r++ {
		if rows > 20 && r == 10 {
			fmt.Printf("  ... %d more rows\n", rows-20)
			r = rows - 10
		}
		var b strings.Builder
		b.WriteString(" ")
		for _, v := range vals[r*row : (r+1)*row] {
			fmt.Fprintf(&b, " %.6g", v)
		}
		fmt.Println(b.String())
	}
}

// batchedInput reports whether g has one input whose leading axis is
// symbolic, so that samples can be run in chunks.
func batchedInput(g *ir.Graph) bool {
	return len(g.Inputs) == 1 && len(g.Outputs) == 1 && len(g.Inputs[0].Shape) > 0 && g.Inputs[0].Shape[0] < 0
}
