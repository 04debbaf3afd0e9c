package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden")

const digitsMLP = "../../testsuite/models/digits-mlp"

// splitSummary describes a split plan's stages (what the golden file
// holds: no times, which depend on the machine profile).
func splitSummary(plan *compiler.Plan) string {
	var b strings.Builder
	for i, s := range plan.Stages {
		fmt.Fprintf(&b, "stage %d %s\n  nodes %s\n  in %s\n  out %s\n", i, s.Kind,
			strings.Join(s.Nodes, ", "), strings.Join(s.Inputs, ", "), strings.Join(s.Outputs, ", "))
		if p := s.Program; p != nil {
			fmt.Fprintf(&b, "  program N=2^%d, %d levels, depth %d, %d bootstraps, %d-bit security\n",
				p.Params.LogN, p.Params.MaxLevel(), p.Depth(), p.Bootstraps(), p.Params.SecurityBits)
		}
	}
	return b.String()
}

// TestCompileCutGolden compiles digits-mlp with the data owner running the
// first layer and its activation (--reveal-prefix 1, --cut after the
// activation) and nothing after the encrypted part (--reveal-suffix 0),
// checks the stages against the golden file, then runs the plan encrypted
// with --verify and reports on it with a plot.
func TestCompileCutGolden(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "split.plan")
	if err := run("compile", filepath.Join(digitsMLP, "model.onnx"), "-o", plan, "--cut", "after=/net/net.1/Relu",
		"--reveal-prefix", "1", "--reveal-suffix", "0"); err != nil {
		t.Fatal(err)
	}
	p, err := compiler.ReadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	got := splitSummary(p)
	golden := filepath.Join("testdata", "compile_cut_digits_mlp.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("stages differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
	if err := run("run", plan, "-i", filepath.Join(digitsMLP, "inputs.npy"), "--verify", "-o", filepath.Join(dir, "out.npy")); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(dir, "split.svg")
	if err := run("report", plan, "--plot", svg); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(svg); err != nil || st.Size() == 0 {
		t.Errorf("report --plot wrote no chart: %v", err)
	}
}

// TestCompileCutPolicyErrors checks that a policy no cut satisfies is a
// one-line compile error naming the constraint.
func TestCompileCutPolicyErrors(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(digitsMLP, "model.onnx")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cut", "after=/net/net.2/Gemm", "--reveal-prefix", "1"}, "--reveal-prefix 1"},
		{[]string{"--cut", "after=/net/net.4/Gemm", "--reveal-prefix", "3"}, "leaves a node to encrypt"},
		{[]string{"--cut", "after=nope"}, `no node "nope"`},
		{[]string{"--cut", "diagonal"}, "unknown --cut"},
		{[]string{"--cut", "auto", "--bandwidth", "fast"}, "--bandwidth"},
		{[]string{"--client-aided", "some"}, "unknown client-aided mode"},
	} {
		args := append([]string{"compile", model, "-o", filepath.Join(dir, "p.plan")}, c.args...)
		err := run(args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line containing %q", c.args, msg, c.want)
		}
	}
}
