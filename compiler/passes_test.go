package compiler

import (
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciphercut/ciphercut/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// smallNet builds x[N,4] -> MatMul+Add -> BatchNormalization -> GELU (erf
// form) -> Identity -> output: one rewrite for most canonicalization passes.
func smallNet() *ir.Graph {
	g := &ir.Graph{Name: "small", Opset: 14}
	x := &ir.Value{Name: "x", DType: ir.Float32, Shape: ir.Shape{-1, 4}, DimNames: []string{"N", ""}}
	g.Inputs = []*ir.Value{x}
	k := 0
	konst := func(name string, shape ir.Shape, data ...float64) *ir.Value {
		if data == nil {
			data = make([]float64, shape.Size())
			for i := range data {
				data[i] = float64((i*7+len(name))%11)/10 - 0.5
			}
		}
		return &ir.Value{Name: name, DType: ir.Float32, Shape: shape, Const: ir.NewFloat(shape, data)}
	}
	op := func(op string, attrs ir.Attrs, ins ...*ir.Value) *ir.Value {
		k++
		n := &ir.Node{Name: op + "_" + string(rune('0'+k/10)) + string(rune('0'+k%10)), Op: op, Inputs: ins, Attrs: attrs}
		v := &ir.Value{Name: strings.ToLower(n.Name), Producer: n}
		n.Outputs = []*ir.Value{v}
		g.Nodes = append(g.Nodes, n)
		return v
	}
	h := op("Add", nil, konst("b", ir.Shape{3}), op("MatMul", nil, x, konst("w", ir.Shape{4, 3})))
	h = op("BatchNormalization", nil, h, konst("gamma", ir.Shape{3}), konst("beta", ir.Shape{3}),
		konst("mean", ir.Shape{3}), konst("var", ir.Shape{3}, 1, 2, 3))
	erf := op("Erf", nil, op("Div", nil, h, konst("sqrt2", ir.Shape{}, math.Sqrt2)))
	y := op("Mul", nil, op("Mul", nil, h, op("Add", nil, erf, konst("one", ir.Shape{}, 1))), konst("half", ir.Shape{}, 0.5))
	g.Outputs = []*ir.Value{op("Identity", nil, y)}
	return g
}

// TestCanonicalizeDumpAll checks the dump after every pass of Canonicalize
// on a small graph against testdata/canonicalize_small.golden.
func TestCanonicalizeDumpAll(t *testing.T) {
	var b strings.Builder
	g := smallNet()
	if err := RunPasses(g, Canonicalize, Options{Verify: true, Dump: &b, DumpAll: true}); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	if n := strings.Count(got, "// after "); n != len(Canonicalize) {
		t.Errorf("%d dumps after passes, want %d", n, len(Canonicalize))
	}
	path := filepath.Join("testdata", "canonicalize_small.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestRunPassesAfter(t *testing.T) {
	var b strings.Builder
	g := smallNet()
	if err := RunPasses(g, Canonicalize, Options{After: "fold-batchnorm", Verify: true, Dump: &b}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "// after fold-batchnorm\n") || strings.Count(out, "// after") != 1 {
		t.Errorf("dump does not start with the header of fold-batchnorm only:\n%s", out)
	}
	if strings.Contains(out, "BatchNormalization") || !strings.Contains(out, "Erf") {
		t.Errorf("not stopped right after fold-batchnorm:\n%s", out)
	}
}

func TestRunPassesErrors(t *testing.T) {
	err := RunPasses(smallNet(), Canonicalize, Options{After: "no-such-pass"})
	want := `unknown pass "no-such-pass" (passes: ` + strings.Join(PassNames(Canonicalize), ", ") + ")"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}

	breaking := []Pass{
		{Name: "ok", Run: func(*ir.Graph) error { return nil }},
		{Name: "drop-first-node", Run: func(g *ir.Graph) error { g.Nodes = g.Nodes[1:]; return nil }},
	}
	err = RunPasses(smallNet(), breaking, Options{Verify: true})
	if err == nil || !strings.HasPrefix(err.Error(), "pass drop-first-node left an invalid graph: ") {
		t.Errorf("error %v, want one naming pass drop-first-node", err)
	}

	failing := []Pass{{Name: "fails", Run: func(*ir.Graph) error { return errors.New("boom") }}}
	if err := RunPasses(smallNet(), failing, Options{}); err == nil || err.Error() != "pass fails: boom" {
		t.Errorf("error %v, want pass fails: boom", err)
	}

	bad := smallNet()
	bad.Nodes = bad.Nodes[1:]
	if err := RunPasses(bad, Canonicalize, Options{Verify: true}); err == nil || !strings.HasPrefix(err.Error(), "invalid input graph: ") {
		t.Errorf("error %v, want invalid input graph", err)
	}
}
