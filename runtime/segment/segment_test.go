package segment

import (
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// TestSplitRunsLikeWhole splits cancer-mlp (on a test-only small ring) in
// two and three segments, runs them in turn under one secret key, each with
// its own evaluation keys, and checks the result against the whole
// program's within the plan's error bound.
func TestSplitRunsLikeWhole(t *testing.T) {
	m, _, p, err := smallring.Compile("../../testsuite/models/cancer-mlp", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	x := zoo.Rows(m.Inputs, 0, 4)
	client, err := ckks.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	whole := run(t, client, p, []*Segment{Whole(p)}, x)
	bound := p.Values[p.Outputs[0].Value].Bound
	t.Logf("%d instructions, valid cuts %v", len(p.Instrs), Cuts(p))
	for _, n := range []int{2, 3} {
		segs, err := Split(p, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) != n {
			t.Fatalf("%d segments, want %d", len(segs), n)
		}
		y := run(t, client, p, segs, x)
		if d := zoo.MaxAbsDiff(y, whole); d > 2*bound {
			t.Errorf("%d segments: max |split - whole| = %.3e, bound %.3e", n, d, bound)
		}
	}
}

// run encrypts x, evaluates the segments in turn locally and decrypts.
func run(t *testing.T, client *ckks.Client, p *ckksir.Program, segs []*Segment, x *ir.Tensor) *ir.Tensor {
	t.Helper()
	cts, err := client.Encrypt(p.Inputs[0].Name, x)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(p, segs, map[string][]*ckks.Ciphertext{p.Inputs[0].Name: cts}, func(seg *Segment, in map[string][]*ckks.Ciphertext) (map[string][]*ckks.Ciphertext, error) {
		sc, err := client.ForProgram(seg.Program)
		if err != nil {
			return nil, err
		}
		evk, err := sc.EvaluationKeys(nil)
		if err != nil {
			return nil, err
		}
		ev, err := ckks.NewEvaluator(seg.Program, evk)
		if err != nil {
			return nil, err
		}
		return ev.Run(in)
	})
	if err != nil {
		t.Fatal(err)
	}
	y, err := client.Decrypt(p.Outputs[0].Name, out[p.Outputs[0].Name], x.Shape[0])
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// TestSplitRefusesBadCuts checks SplitAt's errors: cuts out of order and a
// cut after a ciphertext product.
func TestSplitRefusesBadCuts(t *testing.T) {
	p := &ckksir.Program{
		Params:    ckksir.Params{LogN: 10, LogQ: []int{40, 30, 30}, LogP: []int{40}, LogScale: 30},
		BlockSize: 4, Batch: 128,
		Values: []ckksir.Value{
			{Layout: ckksir.Layout{Shape: ir.Shape{4}}, Level: 2},
			{Layout: ckksir.Layout{Shape: ir.Shape{4}}, Level: 1},
			{Layout: ckksir.Layout{Shape: ir.Shape{4}}, Level: 1},
		},
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 2}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpMul, In: []int{0, 0}, Out: 1},
			{Op: ckksir.OpAddConst, In: []int{1}, Out: 2, Bias: []float64{1, 1, 1, 1}},
		},
	}
	if _, err := SplitAt(p, []int{1}); err == nil {
		t.Error("cut after a product: no error")
	} else {
		t.Log(err)
	}
	if _, err := SplitAt(p, []int{2}); err == nil {
		t.Error("cut at the end: no error")
	}
	if _, err := Split(p, 2); err == nil {
		t.Error("Split with no valid cut: no error")
	}
	segs, err := Split(p, 1)
	if err != nil || len(segs) != 1 || len(segs[0].Program.Instrs) != 2 {
		t.Errorf("Split(p, 1) = %v, %v", segs, err)
	}
}

// TestSplitNoProgram checks that a plan without a single program (a split
// plan) is an error, not a crash.
func TestSplitNoProgram(t *testing.T) {
	if _, err := Split(nil, 2); err == nil || !strings.Contains(err.Error(), "split plan") {
		t.Errorf("Split(nil): %v", err)
	}
	if _, err := SplitAt(nil, []int{1}); err == nil || !strings.Contains(err.Error(), "split plan") {
		t.Errorf("SplitAt(nil): %v", err)
	}
}
