package compiler

import (
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/passes"
)

// splitTestPlan turns testPlan into a split plan of one encrypted stage and
// a suffix that reads its output.
func splitTestPlan(t *testing.T) *Plan {
	p := testPlan(t)
	prog := p.Program
	in, out := prog.Inputs[0].Name, prog.Outputs[0].Name
	p.Program = nil
	p.Stages = []Stage{
		{Kind: passes.StageEncrypted, Nodes: []string{"d1", "p", "d2"}, Inputs: []string{in}, Outputs: []string{out}, Graph: p.Graph, Program: prog},
		{Kind: passes.StageSuffix, Inputs: []string{out}, Outputs: []string{out}, Graph: p.Graph},
	}
	p.Split = &SplitReport{Cut: "auto", Candidates: []passes.SplitCandidate{{Label: "none"}}}
	return p
}

func TestSplitPlanRoundTrip(t *testing.T) {
	p := splitTestPlan(t)
	data, err := EncodePlan(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodePlan(data, "split.plan")
	if err != nil {
		t.Fatal(err)
	}
	if !q.IsSplit() || q.Program != nil || len(q.Stages) != 2 || q.Split.Candidates[0].Label != "none" {
		t.Fatalf("decoded split plan %+v", q)
	}
	if _, err := q.RunStages(); err != nil {
		t.Fatal(err)
	}
}

func TestSplitPlanInvalid(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(p *Plan)
		want   string
	}{
		{"unknown input", func(p *Plan) { p.Stages[1].Inputs = []string{"zzz"} }, `stage 1 (suffix) reads "zzz", which no earlier stage gives`},
		{"program names", func(p *Plan) { p.Stages[0].Inputs = []string{"y"} }, `stage 0 (encrypted): program inputs: value 0 is "x", the stage's "y"`},
		{"program on a plaintext stage", func(p *Plan) { p.Stages[1].Program = p.Stages[0].Program }, "stage 1 (suffix): a program belongs to encrypted stages only"},
		{"both", func(p *Plan) { p.Program = p.Stages[0].Program }, "both a program and 2 stages"},
		{"bad graph", func(p *Plan) { p.Stages[1].Graph = []byte("junk") }, "stage 1 (suffix): graph"},
	} {
		p := splitTestPlan(t)
		c.mutate(p)
		data, err := EncodePlan(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodePlan(data, "split.plan"); err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "split.plan: ") {
			t.Errorf("%s: error %v, want one naming the file and containing %q", c.name, err, c.want)
		}
	}
}
