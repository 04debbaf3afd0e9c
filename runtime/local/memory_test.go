package local

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

// TestPlanMemory checks the strategy choice on sizes where it is known:
// every lane and every diagonal when they fit, fewer diagonals then fewer
// lanes as the limit shrinks, and a refusal naming the sizes below one
// bare lane.
func TestPlanMemory(t *testing.T) {
	const gib = 1 << 30
	kp := &ckks.KeyPlan{TotalBytes: 8 * gib, BootstrapMatrixBytes: 2 * gib, LaneBytes: 2 * gib, EncodedBytes: 4 * gib}
	o := RuntimeOverhead
	for _, c := range []struct {
		limit         int64
		lanes         int
		encoded, peak int64
	}{
		{40 * gib, 2, 4 * gib, 18*gib + o},   // all fits
		{16*gib + o, 2, 2 * gib, 16*gib + o}, // two lanes, half the diagonals
		{14*gib + o, 2, 0, 14*gib + o},       // two lanes, no diagonal kept
		{13*gib + o, 1, 1 * gib, 13*gib + o}, // one lane, some diagonals
		{12*gib + o, 1, 0, 12*gib + o},       // one bare lane
	} {
		m, err := PlanMemory(kp, 0, c.limit, 2)
		if err != nil {
			t.Fatalf("limit %d GiB: %v", c.limit/gib, err)
		}
		if m.Lanes != c.lanes || m.Cores != 2 || m.Encoded != c.encoded || m.Peak() != c.peak || m.Peak() > c.limit {
			t.Errorf("limit %d GiB: %d lanes on %d cores, %d encoded, peak %d; want %d, 2, %d, %d", c.limit/gib, m.Lanes, m.Cores, m.Encoded, m.Peak(), c.lanes, c.encoded, c.peak)
		}
		if want := int64(-1); (m.Encoded == kp.EncodedBytes) != (m.Budget() == want) {
			t.Errorf("limit %d GiB: budget %d with %d of %d encoded", c.limit/gib, m.Budget(), m.Encoded, kp.EncodedBytes)
		}
	}
	// A lane alone gets both cores, each beyond the first adding
	// WorkerBytes (weights count too); short of that, one core.
	kw := *kp
	kw.WorkerBytes = gib
	if m, err := PlanMemory(&kw, gib, 14*gib+o, 2); err != nil || m.Lanes != 1 || m.Cores != 2 || m.LaneBytes != 3*gib || m.Encoded != 0 {
		t.Errorf("workers: %d lanes on %d cores of %d bytes, %d encoded, err %v; want 1 lane on 2 cores of 3 GiB", m.Lanes, m.Cores, m.LaneBytes, m.Encoded, err)
	}
	if m, err := PlanMemory(&kw, gib, 13*gib+o, 2); err != nil || m.Lanes != 1 || m.Cores != 1 || m.LaneBytes != 2*gib || m.Peak() != 13*gib+o {
		t.Errorf("one core: %d lanes on %d cores of %d bytes, peak %d, err %v; want 1 lane on 1 core of 2 GiB", m.Lanes, m.Cores, m.LaneBytes, m.Peak(), err)
	}
	_, err := PlanMemory(kp, 0, 11*gib+o, 2)
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "8.0 GiB of evaluation keys") || !strings.Contains(err.Error(), fmt.Sprintf("%.1f GiB memory limit", float64(11*gib+o)/gib)) {
		t.Errorf("11 GiB + overhead: got %v, want a refusal naming the sizes", err)
	}
	if m, _ := PlanMemory(kp, 0, 40*gib, 2); !strings.Contains(m.String(), "predicted peak") {
		t.Errorf("String:\n%s", m)
	}
}

// TestShareMemory checks the division of a limit among sessions held at
// once: each share is at least what its session runs in, the overhead is
// counted once, the rest goes by encoded diagonals, and stages that cannot
// fit together are refused naming the sizes.
func TestShareMemory(t *testing.T) {
	const gib = 1 << 30
	o := RuntimeOverhead
	attn := &ckks.KeyPlan{TotalBytes: 10 * gib, BootstrapMatrixBytes: 2 * gib, LaneBytes: 2 * gib, EncodedBytes: 6 * gib}
	mlp := &ckks.KeyPlan{TotalBytes: 1 * gib, LaneBytes: 1 * gib, EncodedBytes: 2 * gib}
	limit := 20*gib + o
	shares, err := shareMemory([]*ckks.KeyPlan{attn, mlp}, []int64{0, 0}, limit)
	if err != nil {
		t.Fatal(err)
	}
	// Least needs 14 and 2 GiB; the 4 GiB left split 3:1.
	if want := []int64{17*gib + o, 3*gib + o}; shares[0] != want[0] || shares[1] != want[1] {
		t.Errorf("shares %v, want %v", shares, want)
	}
	var together int64
	for i, kp := range []*ckks.KeyPlan{attn, mlp} {
		m, err := PlanMemory(kp, 0, shares[i], 1)
		if err != nil {
			t.Fatalf("stage %d within its share: %v", i, err)
		}
		together += m.Peak() - o
	}
	if together+o > limit {
		t.Errorf("the sessions' peaks add up to %d, over the limit %d", together+o, limit)
	}
	if _, err := shareMemory([]*ckks.KeyPlan{attn, attn}, []int64{0, 0}, limit); err == nil || !strings.Contains(err.Error(), "2 encrypted stages held at once need at least 29.8 GiB") {
		t.Errorf("two stages of 14 GiB within 21.8 GiB: %v", err)
	}
}
