package local

import (
	"errors"
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
	for _, c := range []struct {
		limit         int64
		lanes         int
		encoded, peak int64
	}{
		{40 * gib, 2, 4 * gib, 19 * gib}, // all fits
		{17 * gib, 2, 2 * gib, 17 * gib}, // two lanes, half the diagonals
		{15 * gib, 2, 0, 15 * gib},       // two lanes, no diagonal kept
		{14 * gib, 1, 1 * gib, 14 * gib}, // one lane, some diagonals
		{13 * gib, 1, 0, 13 * gib},       // one bare lane
	} {
		m, err := PlanMemory(kp, 0, c.limit, 2)
		if err != nil {
			t.Fatalf("limit %d GiB: %v", c.limit/gib, err)
		}
		if m.Lanes != c.lanes || m.Encoded != c.encoded || m.Peak() != c.peak || m.Peak() > c.limit {
			t.Errorf("limit %d GiB: %d lanes, %d encoded, peak %d; want %d, %d, %d", c.limit/gib, m.Lanes, m.Encoded, m.Peak(), c.lanes, c.encoded, c.peak)
		}
		if want := int64(-1); (m.Encoded == kp.EncodedBytes) != (m.Budget() == want) {
			t.Errorf("limit %d GiB: budget %d with %d of %d encoded", c.limit/gib, m.Budget(), m.Encoded, kp.EncodedBytes)
		}
	}
	// A lane alone gets both cores, each beyond the first adding
	// WorkerBytes; weights count too.
	kw := *kp
	kw.WorkerBytes = gib
	if m, err := PlanMemory(&kw, gib, 15*gib, 2); err != nil || m.Lanes != 1 || m.LaneBytes != 3*gib || m.Encoded != 0 || m.Peak() != 15*gib {
		t.Errorf("workers: %d lanes of %d bytes, %d encoded, peak %d, err %v; want 1 lane of 3 GiB, peak 15 GiB", m.Lanes, m.LaneBytes, m.Encoded, m.Peak(), err)
	}
	_, err := PlanMemory(kp, 0, 12*gib, 2)
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "8.0 GiB of evaluation keys") || !strings.Contains(err.Error(), "12.0 GiB memory limit") {
		t.Errorf("12 GiB: got %v, want a refusal naming the sizes", err)
	}
	if m, _ := PlanMemory(kp, 0, 40*gib, 2); !strings.Contains(m.String(), "predicted peak") {
		t.Errorf("String:\n%s", m)
	}
}
