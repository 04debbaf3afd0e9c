// Package compiler drives ciphercut's compilation: it runs tables of passes
// (package passes) over the tensor IR, checking and dumping the graph
// between them on request.
package compiler

import (
	"fmt"
	"io"
	"strings"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
)

// Pass is one named step of a pass table: a function that rewrites the graph
// in place.
type Pass struct {
	// Name identifies the pass in errors, dumps and `ciphercut inspect
	// --after NAME`; names are unique across the tables.
	Name string
	Run  func(*ir.Graph) error
}

// Canonicalize brings an imported graph to canonical form, in this order:
// static shapes, constants folded, copies and dead nodes removed, fully
// connected layers as Dense (first, so that a batch normalization after a
// MatMul+Add finds one layer), batch normalization folded into the layer
// before it, and the activations and normalizations exporters decompose
// recognized again. Input shapes must be bound first where they are not
// static (passes.BindInputs), or symbolic dimensions are taken as 1.
//
// Later stages append their own tables (lowering to ciphertext operations)
// after this one; RunPasses runs any table.
var Canonicalize = []Pass{
	{Name: "infer-shapes", Run: passes.InferShapes},
	{Name: "fold-constants", Run: passes.FoldConstants},
	{Name: "remove-identity", Run: passes.RemoveIdentity},
	{Name: "prune", Run: passes.Prune},
	{Name: "fuse-matmul-add", Run: passes.FuseMatMulAdd},
	{Name: "fold-batchnorm", Run: passes.FoldBatchNorm},
	{Name: "recognize-silu", Run: passes.RecognizeSiLU},
	{Name: "recognize-gelu", Run: passes.RecognizeGELU},
	{Name: "recognize-layernorm", Run: passes.RecognizeLayerNorm},
}

// Options control RunPasses.
type Options struct {
	// After, when not empty, stops the run after the pass of that name (for
	// `ciphercut inspect --after NAME`). An unknown name is an error that
	// lists the table's names.
	After string
	// Verify runs ir.Verify on the graph before the first pass and after
	// every pass; a failure names the pass that broke the graph.
	Verify bool
	// Dump, when set, receives an ir.Dump of the graph after the last pass
	// run, headed by a line "// after NAME".
	Dump io.Writer
	// DumpAll dumps to Dump before the first pass ("// before NAME") and after
	// every pass, like the Go compiler's GOSSAFUNC.
	DumpAll bool
}

// PassNames returns the names of the passes of table, in order.
func PassNames(table []Pass) []string {
	names := make([]string, len(table))
	for i, p := range table {
		names[i] = p.Name
	}
	return names
}

// RunPasses runs the passes of table over g in order, as opts says. Errors
// name the pass that failed.
func RunPasses(g *ir.Graph, table []Pass, opts Options) error {
	last := len(table) - 1
	if opts.After != "" {
		last = -1
		for i, p := range table {
			if p.Name == opts.After {
				last = i
				break
			}
		}
		if last < 0 {
			return fmt.Errorf("unknown pass %q (passes: %s)", opts.After, strings.Join(PassNames(table), ", "))
		}
	}
	if opts.Verify {
		if err := ir.Verify(g); err != nil {
			return fmt.Errorf("invalid input graph: %w", err)
		}
	}
	dump := func(when, name string) error {
		if _, err := fmt.Fprintf(opts.Dump, "// %s %s\n", when, name); err != nil {
			return err
		}
		return ir.Dump(opts.Dump, g)
	}
	if opts.Dump != nil && opts.DumpAll && last >= 0 {
		if err := dump("before", table[0].Name); err != nil {
			return err
		}
	}
	for _, p := range table[:last+1] {
		if err := p.Run(g); err != nil {
			return fmt.Errorf("pass %s: %w", p.Name, err)
		}
		if opts.Verify {
			if err := ir.Verify(g); err != nil {
				return fmt.Errorf("pass %s left an invalid graph: %w", p.Name, err)
			}
		}
		if opts.Dump != nil && opts.DumpAll {
			if err := dump("after", p.Name); err != nil {
				return err
			}
		}
	}
	if opts.Dump != nil && !opts.DumpAll && last >= 0 {
		return dump("after", table[last].Name)
	}
	return nil
}
