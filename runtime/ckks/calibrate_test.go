package ckks

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// TestCalibrateInsecureSmallRing runs the whole calibration on a small
// insecure ring and checks the profile's shape (never its timings).
func TestCalibrateInsecureSmallRing(t *testing.T) {
	var steps []int
	prof, err := Calibrate(CalibrateOptions{Params: []ckksir.Params{smallParams(4)}, Levels: 3, Reps: 1, PolyDegrees: []int{3, 63}, StreamBytes: 4 << 20},
		func(done, total int, what string) { steps = append(steps, done) })
	if err != nil {
		t.Fatal(err)
	}
	if err := prof.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(prof.Rings) != 1 || prof.CPUs < 1 || prof.Machine == "" || prof.ParallelEfficiency <= 0 || prof.ParallelEfficiency > 1 {
		t.Fatalf("profile %+v", prof)
	}
	r := prof.Rings[0]
	if r.LogN != 12 || r.MaxLevel != 4 || len(r.Levels) != 3 || r.Levels[0].Level != 1 || r.Levels[2].Level != 4 {
		t.Errorf("ring %+v", r)
	}
	for _, l := range r.Levels {
		if l.Rotate <= 0 || l.HoistedRotate <= 0 || l.Diagonal <= 0 || l.MulRelin <= 0 || l.CiphertextBytes <= 0 || l.KeyBytes <= 0 {
			t.Errorf("level %+v: unmeasured fields", l)
		}
	}
	if len(r.Poly) != 1 || r.Poly[0].Degree != 3 || r.Poly[0].NonScalar < 1 {
		t.Errorf("polynomials %+v (degree 63 is too deep for 4 levels)", r.Poly)
	}
	if len(r.Linear) == 0 || r.Linear[0].Diagonals != 32 {
		t.Errorf("linear transformations %+v", r.Linear)
	}
	if len(steps) == 0 || steps[len(steps)-1] != 3+2+1 {
		t.Errorf("progress steps %v, want 1..6", steps)
	}
	data, err := json.Marshal(prof)
	if err != nil {
		t.Fatal(err)
	}
	back, err := cost.ParseProfile(data)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if !bytes.Equal(data, again) {
		t.Error("profile does not survive a JSON round trip")
	}
}

// TestCalibrateBootstrapInsecureSmallRing times a bootstrap on a test-only
// N=2^13 ring through the runtime; CalibrateBootstrap itself checks the
// refreshed message.
func TestCalibrateBootstrapInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstrapping keys take seconds; skipped in -short mode")
	}
	p := ckksir.Params{LogN: 13, LogQ: []int{60, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40}, LogP: []int{61, 61}, LogScale: 40}
	if got := BootstrapProgram(p); len(got.Params.LogQ) != 10 || got.Values[1].Level != 9 || ckksir.Verify(got) != nil {
		t.Fatalf("BootstrapProgram: chain %v, output level %d, verify %v", got.Params.LogQ, got.Values[1].Level, ckksir.Verify(got))
	}
	secs, err := CalibrateBootstrap(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if secs <= 0 {
		t.Fatalf("bootstrap timed at %g s", secs)
	}
	t.Logf("one bootstrap at N=2^13: %.2f s", secs)
}
