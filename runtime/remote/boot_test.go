package remote

import (
	"context"
	"math"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// TestBootstrapSegmentKeyDirInsecureSmallRing runs a segment that
// bootstraps on a worker, for a data owner that keeps its keys in a
// directory (KeyDir): the evaluation keys, bootstrapping keys included,
// are written there, streamed from the file to the worker, cached on the
// worker's disk and decoded from the mapped file. Session 7 found that
// path broken (the stream lacked the bootstrapping keys) only at N=2^16;
// here it runs at N=2^13 with a reduced bootstrapping circuit, insecure
// by design, and the result is checked against float64.
func TestBootstrapSegmentKeyDirInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstrapping keys take seconds; skipped in -short mode")
	}
	const bs, size = 16, 4
	w := [][]float64{{0.3, -0.2, 0.1, 0}, {0.1, 0.25, 0, -0.15}, {-0.2, 0, 0.3, 0.1}, {0, 0.1, -0.1, 0.2}}
	diags := map[int][]float64{}
	for r, row := range w {
		for c, v := range row {
			d := c - r
			if diags[d] == nil {
				diags[d] = make([]float64, bs)
			}
			diags[d][r] = v
		}
	}
	p1 := &ckksir.Poly{Func: "p1", A: -1, B: 1, Coeffs: []float64{0.1, 0.5, 0.2, -0.1}}
	p2 := &ckksir.Poly{Func: "p2", A: -1, B: 1, Coeffs: []float64{-0.05, 0.6, 0, 0.15}}
	lay := ckksir.Layout{Shape: ir.Shape{size}}
	boot := ckksir.DefaultBootParams()
	boot.CoeffsToSlotsLogQ, boot.SlotsToCoeffsLogQ, boot.LogP = []int{56, 56, 56}, []int{39, 39}, []int{61, 61, 61}
	prog := &ckksir.Program{
		Params:    ckksir.Params{LogN: 13, LogQ: []int{60, 40, 40, 40}, LogP: []int{61}, LogScale: 40},
		BlockSize: bs, Batch: 4096 / bs,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 4}},
		Values:  []ckksir.Value{{Layout: lay, Level: 3}, {Layout: lay, Level: 2}, {Layout: lay, Level: 0}, {Layout: lay, Level: 3}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{ckksir.NewMatrix(diags)}, Layer: "fc"},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: p1, Layer: "act1"},
			{Op: ckksir.OpBootstrap, Out: 3, In: []int{2}, Layer: "boot"},
			{Op: ckksir.OpPoly, Out: 4, In: []int{3}, Poly: p2, Layer: "act2"},
		},
		Boot: boot,
	}
	segs, err := segment.Split(prog, 1)
	if err != nil {
		t.Fatal(err)
	}
	const planID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	op, err := segment.NewOwnerPlan(planID, "boot-test", prog, segs, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	oh := ownerHost(t)
	c := cluster(t, [][]*segment.Shard{{segment.NewShard(planID, "boot-test", segs[0])}}, oh.ID())
	find := StaticProviders(map[int][]peer.AddrInfo{0: c.Bootstrap()}, nil)
	owner, _, err := NewOwner(oh, find, op, OwnerOptions{KeyDir: t.TempDir(), Log: logger(t, "owner: ")})
	if err != nil {
		t.Fatal(err)
	}
	const samples = 3
	x := ir.NewFloat(ir.Shape{samples, size}, nil)
	for i := range x.Float {
		x.Float[i] = math.Sin(float64(i)) * 0.9
	}
	y, runs, err := owner.Infer(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].KeyBytes == 0 {
		t.Fatalf("runs %+v: want one segment run that uploaded keys", runs)
	}
	worst := 0.0
	for s := 0; s < samples; s++ {
		for r := 0; r < size; r++ {
			h := 0.0
			for c := 0; c < size; c++ {
				h += w[r][c] * x.Float[s*size+c]
			}
			want := plain.Chebyshev(p2.Coeffs, plain.Chebyshev(p1.Coeffs, h)) // both on [-1, 1]
			worst = math.Max(worst, math.Abs(y.Float[s*size+r]-want))
		}
	}
	// A bootstrap of this reduced circuit errs by about 1e-7 (see
	// runtime/ckks TestBootstrapInsecureSmallRing); a wrong key or level
	// by O(0.1).
	if worst > 1e-4 {
		t.Errorf("max |remote - float64| = %.3e, want below 1e-4", worst)
	} else {
		t.Logf("max |remote - float64| = %.3e", worst)
	}
}
