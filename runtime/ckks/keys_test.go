package ckks

import (
	"math"
	"runtime"
	"testing"

	"github.com/tuneinsight/lattigo/v5/he/hefloat"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// TestPlanKeysMatchesGeneratedInsecureSmallRing checks that the key plan
// predicts the generated key set: the same number of Galois keys and, within
// 1% (headers), the same bytes.
func TestPlanKeysMatchesGeneratedInsecureSmallRing(t *testing.T) {
	lay := ckksir.Layout{Shape: ir.Shape{16}}
	diags := map[int][]float64{}
	for _, d := range []int{-5, 0, 1, 3, 9} {
		v := make([]float64, 64)
		for j := range v {
			if j+d >= 0 && j+d < 64 {
				v[j] = 0.25
			}
		}
		diags[d] = v
	}
	m := ckksir.NewMatrix(diags)
	p := &ckksir.Program{
		Params: smallParams(3), BlockSize: 64, Batch: 32,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 2}},
		Values:  []ckksir.Value{{Layout: lay, Level: 3}, {Layout: lay, Level: 2}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{m}},
			{Op: ckksir.OpMul, Out: 2, In: []int{1, 1}},
		},
	}
	kp, err := PlanKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	_, evk, _ := setup(t, p)
	if len(kp.Rotations) != evk.Count() || !kp.Relinearization {
		t.Errorf("plan: %d rotations %v, relinearization %v; generated %d Galois keys", len(kp.Rotations), kp.Rotations, kp.Relinearization, evk.Count())
	}
	if got, want := float64(kp.TotalBytes), float64(evk.Bytes()); math.Abs(got-want) > 0.01*want {
		t.Errorf("planned %v key bytes, generated %v", got, want)
	}
}

// TestEvaluatorBytesCoversLattigoInsecureSmallRing checks the memory plan's
// size of one Lattigo evaluator against the heap a real one takes: at
// least what it allocates, and not more than a quarter above.
func TestEvaluatorBytesCoversLattigoInsecureSmallRing(t *testing.T) {
	for _, levels := range []int{3, 9} {
		p := &ckksir.Program{Params: smallParams(levels), BlockSize: 64, Batch: 32}
		pl, err := newPlan(p)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ev := hefloat.NewEvaluator(pl.params, nil)
		runtime.ReadMemStats(&after)
		got := int64(after.TotalAlloc - before.TotalAlloc)
		runtime.KeepAlive(ev)
		t.Logf("%d levels: allocated %d, counted %d", levels, got, pl.evaluatorBytes())
		if want := pl.evaluatorBytes(); got > want || float64(want) > 1.25*float64(got) {
			t.Errorf("%d levels: an evaluator allocates %d bytes, the memory plan counts %d", levels, got, want)
		}
	}
}
