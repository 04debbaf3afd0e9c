package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir"
)

// checkReports renders the report of a compiled plan beside the
// measurement `run --profile` wrote: table, JSON and both plot formats, and
// checks that bad profile and measurement files are one-line errors naming
// the file.
func checkReports(t *testing.T, plan, measured string) {
	t.Helper()
	dir := t.TempDir()
	m, err := cost.LoadMeasurement(measured)
	if err != nil {
		t.Fatal(err)
	}
	p, err := compiler.ReadPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Instrs) != len(p.Program.Instrs) || m.Ciphertexts != 1 || m.Samples != 4 || len(m.Outputs) != 1 {
		t.Fatalf("measurement %+v", m)
	}
	if o := m.Outputs[0]; o.MaxError > o.Bound || o.MaxAbs <= 0 {
		t.Errorf("measured output %+v", o)
	}
	rep, err := buildReport(p.Program, "", measured, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var table, js bytes.Buffer
	if err := cost.WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "measured") || !strings.Contains(table.String(), "bound holds") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := cost.WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back cost.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Layers) == 0 || back.Totals.MeasuredEvalSeconds == nil {
		t.Errorf("JSON: %v, %+v", err, back.Totals)
	}
	for _, name := range []string{"r.svg", "r.png"} {
		out := filepath.Join(dir, name)
		if err := run("report", plan, "--measured", measured, "--plot", out); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := run("report", plan, "--json"); err != nil {
		t.Error(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"report", plan, "--profile", bad},
		{"report", plan, "--profile", filepath.Join(dir, "missing.json")},
		{"report", plan, "--measured", bad},
	} {
		err := run(args...)
		if err == nil || !strings.Contains(err.Error(), filepath.Base(args[3])) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: got %v, want a one-line error naming the file", args, err)
		}
	}
}

func TestCalibrateRefusesBadRing(t *testing.T) {
	err := run("calibrate", "--logn", "11", "-o", filepath.Join(t.TempDir(), "p.json"))
	if err == nil || !strings.Contains(err.Error(), "--logn 11") {
		t.Errorf("got %v, want an error about --logn 11", err)
	}
}

// TestDisagreements checks the list of samples whose top-1 class differs.
func TestDisagreements(t *testing.T) {
	y := ir.NewFloat(ir.Shape{4, 2}, []float64{1, 0, 0, 1, 1, 0, 0, 1})
	want := ir.NewFloat(ir.Shape{4, 2}, []float64{1, 0, 1, 0, 0, 1, 0, 1})
	if got := disagreements(y, want, 10); got != "1 (1, plaintext 0), 2 (0, plaintext 1)" {
		t.Errorf("disagreements %q", got)
	}
	if got := disagreements(y, want, 1); got != "1 (1, plaintext 0), and 1 more" {
		t.Errorf("disagreements limited to 1: %q", got)
	}
	if got := disagreements(y, y, 10); got != "" {
		t.Errorf("no disagreement: %q", got)
	}
}
