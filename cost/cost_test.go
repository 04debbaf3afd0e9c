package cost

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// testProfile is a synthetic profile: every time at level l is (l+1)
// milliseconds times a per-operation weight.
func testProfile() *Profile {
	p := &Profile{Version: ProfileVersion, Machine: "test", CPUs: 2}
	r := Ring{LogN: 13, LogScale: 40, LogP: []int{61, 61}, MaxLevel: 6}
	for _, l := range []int{1, 3, 6} {
		u := float64(l+1) * 1e-3
		r.Levels = append(r.Levels, Level{Level: l, Encode: u, Encrypt: u, Decrypt: u, Add: u / 10, AddPlain: u / 10,
			MulPlain: u / 5, MulScalar: u / 5, MulRelin: 5 * u, Rescale: u, Rotate: 4 * u, Decompose: 2 * u,
			HoistedRotate: u, Diagonal: u / 4, ModDown: u / 2, CiphertextBytes: int64(l+1) << 17, KeyBytes: int64(l+1) << 20})
	}
	p.Rings = []Ring{r}
	return p
}

// testProgram: linear -> poly -> mul -> linear, on N=2^13.
func testProgram() (*ckksir.Program, []OpCounts) {
	lay := ckksir.Layout{Shape: ir.Shape{8}}
	p := &ckksir.Program{
		Params:    ckksir.Params{LogN: 13, LogQ: []int{60, 40, 40, 40, 40, 40, 40}, LogP: []int{61, 61}, LogScale: 40},
		BlockSize: 64, Batch: 64,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 4}},
		Values: []ckksir.Value{{Layout: lay, Level: 6}, {Layout: lay, Level: 5, Bound: 1e-6},
			{Layout: lay, Level: 2, Bound: 1e-4}, {Layout: lay, Level: 1, Bound: 2e-4}, {Layout: lay, Level: 0, Bound: 1.0 / 1024}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Layer: "fc1"},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Layer: "act"},
			{Op: ckksir.OpMul, Out: 3, In: []int{2, 2}, Layer: "act"},
			{Op: ckksir.OpLinear, Out: 4, In: []int{3}, Layer: "fc2"},
		},
	}
	counts := []OpCounts{
		{Op: "linear", Layer: "fc1", LevelIn: 6, LevelOut: 5, Ciphertexts: 1, Matrices: 1, Diagonals: 8, BabySteps: 3, GiantSteps: 1, Rescales: 1, Rotations: []int{1, 2, 3, 4}, Temporaries: 3},
		{Op: "poly", Layer: "act", LevelIn: 5, LevelOut: 2, Ciphertexts: 1, NonScalarMults: 4, ScalarMults: 8, Rescales: 4, PlainAdds: 1, PolyDegree: 7, Temporaries: 5},
		{Op: "mul", Layer: "act", LevelIn: 2, LevelOut: 1, Ciphertexts: 1, NonScalarMults: 1, Rescales: 1},
		{Op: "linear", Layer: "fc2", LevelIn: 1, LevelOut: 0, Ciphertexts: 1, Matrices: 1, Diagonals: 4, BabySteps: 1, GiantSteps: 1, Rescales: 1, Rotations: []int{1, 4}, Temporaries: 1},
	}
	return p, counts
}

func TestPredictHandBuilt(t *testing.T) {
	p, counts := testProgram()
	keys := Keys{Rotations: []int{1, 2, 3, 4}, Relinearization: true, KeyBytes: 1 << 20, TotalBytes: 5 << 20, EncodedBytes: 3 << 20}
	rep, err := Predict(p, counts, keys, testProfile(), Options{Ciphertexts: 1, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 3 || rep.Layers[1].Name != "act" || len(rep.Layers[1].Instrs) != 2 || rep.Layers[1].Ops != "poly+mul" {
		t.Fatalf("layers %+v", rep.Layers)
	}
	sum := 0.0
	for _, l := range rep.Layers {
		sum += l.Seconds
		if l.Seconds <= 0 {
			t.Errorf("layer %s: %g s", l.Name, l.Seconds)
		}
	}
	if math.Abs(sum-rep.Totals.LaneSeconds) > 1e-12 || rep.Totals.EvalSeconds != rep.Totals.LaneSeconds {
		t.Errorf("layers sum to %g, lane %g, eval %g", sum, rep.Totals.LaneSeconds, rep.Totals.EvalSeconds)
	}
	// The mul at level 2 costs mulRelin + rescale at level 2: 6 ms.
	if got := rep.Instrs[2].Seconds; math.Abs(got-6*3e-3) > 1e-12 {
		t.Errorf("mul predicted %g s, want %g", got, 6*3e-3)
	}
	// fc1 on one core at level 6 (u = 7 ms): decompose 2u, 2 ModDowns u,
	// MulScalar u/5, 3 hoisted rotations 3u, 8 diagonals 2u, one giant
	// step 4u, one rescale u.
	if got, want := rep.Instrs[0].Seconds, 7e-3*(2+1+0.2+3+2+4+1); math.Abs(got-want) > 1e-12 {
		t.Errorf("fc1 predicted %g s, want %g", got, want)
	}
	if rep.Layers[0].Rotations != 4 || rep.Layers[2].Rotations != 2 || rep.Totals.RotationKeys != 4 {
		t.Errorf("rotations: layers %d, %d, total %d", rep.Layers[0].Rotations, rep.Layers[2].Rotations, rep.Totals.RotationKeys)
	}
	if c := rep.Totals.Counts; c.Diagonals != 12 || c.NonScalarMults != 5 || c.Rescales != 7 || c.BabySteps != 4 || c.GiantSteps != 2 {
		t.Errorf("totals %+v", c)
	}
	if o := rep.Outputs[0]; o.Bound != 1.0/1024 || o.Bits != 10 || rep.Layers[2].Bits != 10 {
		t.Errorf("output precision %+v", o)
	}
	if rep.Totals.UploadBytes != 2*8192*7*8 || rep.Totals.DownloadBytes != 2*8192*8 {
		t.Errorf("network %d up, %d down", rep.Totals.UploadBytes, rep.Totals.DownloadBytes)
	}
	if rep.Totals.PeakMemoryBytes <= keys.TotalBytes+keys.EncodedBytes {
		t.Errorf("peak memory %d", rep.Totals.PeakMemoryBytes)
	}
	// Two cores split the baby and giant steps: faster, never slower.
	rep2, err := Predict(p, counts, keys, testProfile(), Options{Ciphertexts: 1, CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Instrs[0].Seconds >= rep.Instrs[0].Seconds {
		t.Errorf("two cores: %g s, one core %g s", rep2.Instrs[0].Seconds, rep.Instrs[0].Seconds)
	}
	// Four ciphertexts on two cores: two rounds of one lane per core.
	rep4, err := Predict(p, counts, keys, testProfile(), Options{Ciphertexts: 4, CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(rep4.Totals.EvalSeconds-2*rep.Totals.LaneSeconds) > 1e-12 {
		t.Errorf("4 ciphertexts on 2 cores: %g s, want 2 lanes of %g", rep4.Totals.EvalSeconds, rep.Totals.LaneSeconds)
	}
	if _, err := Predict(p, counts[:2], keys, testProfile(), Options{}); err == nil {
		t.Error("mismatched counts accepted")
	}
}

func TestInterpolation(t *testing.T) {
	r := testProfile().Rings[0]
	for _, c := range []struct {
		level int
		want  float64
	}{{1, 2e-3}, {3, 4e-3}, {2, 3e-3}, {5, 6e-3}, {0, 1e-3}, {8, 9e-3}} {
		if got := r.at(c.level, 1).Encode; math.Abs(got-c.want) > 1e-15 {
			t.Errorf("level %d: encode %g, want %g", c.level, got, c.want)
		}
	}
	// Another ring scales by N·log N.
	prof := testProfile()
	_, f := prof.ring(14)
	if math.Abs(f-2*14.0/13) > 1e-12 {
		t.Errorf("ring factor %g", f)
	}
}

func TestAttachAndRender(t *testing.T) {
	p, counts := testProgram()
	rep, err := Predict(p, counts, Keys{}, testProfile(), Options{Magnitudes: map[string]float64{"y": 4}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outputs[0].Bits != 12 {
		t.Errorf("bits at magnitude 4: %g, want 12", rep.Outputs[0].Bits)
	}
	m := &Measurement{Instrs: []float64{0.1, 0.2, 0.3, 0.4}, EvalSeconds: 1,
		Outputs: []MeasuredOutput{{Name: "y", MaxError: 1.0 / 4096, MaxAbs: 4}}}
	m.Layers = LayerSeconds(p, m.Instrs)
	if len(m.Layers) != 3 || math.Abs(m.Layers[1].Seconds-0.5) > 1e-12 {
		t.Errorf("measured layers %+v", m.Layers)
	}
	if err := rep.Attach(m); err != nil {
		t.Fatal(err)
	}
	if got := *rep.Layers[1].MeasuredSeconds; math.Abs(got-0.5) > 1e-12 {
		t.Errorf("measured act %g", got)
	}
	if got := *rep.Outputs[0].MeasuredBits; got != 14 {
		t.Errorf("measured bits %g, want 14", got)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fc1", "act", "poly+mul", "measured", "bound holds", "total (one lane)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Layers) != 3 || back.Layers[2].MeasuredSeconds == nil || back.Totals.LaneSeconds != rep.Totals.LaneSeconds {
		t.Errorf("JSON round trip: %+v", back)
	}
	if err := rep.Attach(&Measurement{Instrs: []float64{1}}); err == nil || !strings.Contains(err.Error(), "another plan") {
		t.Errorf("measurement of another plan: %v", err)
	}
	// A measurement file round trip, and errors naming the file.
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	if err := SaveMeasurement(path, m); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMeasurement(path); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMeasurement(bad); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("corrupt measurement: %v", err)
	}
}

func TestProfileFiles(t *testing.T) {
	def := DefaultProfile()
	if len(def.Rings) == 0 || def.Machine == "" {
		t.Fatalf("bundled profile %+v", def)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "profile.json")
	if err := testProfile().Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rings[0].Levels[2].Rotate != testProfile().Rings[0].Levels[2].Rotate {
		t.Error("profile round trip changed a time")
	}
	for name, data := range map[string]string{
		"corrupt.json": `{"version": 1, "rings": [`,
		"version.json": `{"version": 99, "rings": []}`,
		"empty.json":   `{"version": 1, "rings": []}`,
		"order.json":   `{"version": 1, "rings": [{"logN": 14, "levels": [{"level": 3}, {"level": 1}]}]}`,
		"neg.json":     `{"version": 1, "rings": [{"logN": 14, "levels": [{"level": 3, "rotate": -1}]}]}`,
	} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadProfile(f); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := LoadProfile(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing profile: %v", err)
	}
	if _, src, err := LoadProfileOrDefault(path); err != nil || src != path {
		t.Errorf("explicit profile: %s, %v", src, err)
	}
}

// TestNoLattigo checks that package cost stays free of the HE library: only
// runtime/ckks may import Lattigo.
func TestNoLattigo(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".", "./costplot").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	if strings.Contains(string(out), "lattigo") {
		t.Error("package cost depends on Lattigo")
	}
}

func TestParallelEfficiency(t *testing.T) {
	prof := testProfile()
	if prof.Speedup(2) != 2 || prof.Speedup(1) != 1 {
		t.Errorf("unmeasured efficiency: speedup(2) = %g", prof.Speedup(2))
	}
	p, counts := testProgram()
	perfect, err := Predict(p, counts, Keys{}, prof, Options{CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	prof.ParallelEfficiency = 0.5
	if prof.Speedup(3) != 2 {
		t.Errorf("speedup(3) at efficiency 0.5: %g", prof.Speedup(3))
	}
	half, err := Predict(p, counts, Keys{}, prof, Options{CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if half.Instrs[0].Seconds <= perfect.Instrs[0].Seconds || half.Instrs[2].Seconds != perfect.Instrs[2].Seconds {
		t.Errorf("efficiency 0.5: linear %g (perfect %g), mul %g (perfect %g)", half.Instrs[0].Seconds, perfect.Instrs[0].Seconds,
			half.Instrs[2].Seconds, perfect.Instrs[2].Seconds)
	}
	// Two lanes on two cores at efficiency 0.5 take 2/1.5 of one lane.
	two, err := Predict(p, counts, Keys{}, prof, Options{CPUs: 2, Ciphertexts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := two.Totals.EvalSeconds, two.Totals.LaneSeconds*2/1.5; math.Abs(got-want) > 1e-12 {
		t.Errorf("two lanes: %g s, want %g", got, want)
	}
}

// TestEncodeAtUseAndLanes checks the memory plan's two effects on time:
// diagonals encoded at each use cost one encoding each at the matrix's
// level, and fewer lanes than cores run the ciphertexts in more rounds.
func TestEncodeAtUseAndLanes(t *testing.T) {
	p, counts := testProgram()
	prof := testProfile()
	kept, err := Predict(p, counts, Keys{}, prof, Options{CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	lazy := append([]OpCounts(nil), counts...)
	lazy[0].Encodes = lazy[0].Diagonals
	enc, err := Predict(p, lazy, Keys{}, prof, Options{CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	lv := newMachine(p, prof).at(counts[0].LevelIn)
	// Encoded over Q_6·P: 7 + 2 primes, as an encoding two levels up.
	lv = newMachine(p, prof).at(counts[0].LevelIn + 2)
	if got, want := enc.Instrs[0].Seconds-kept.Instrs[0].Seconds, 8*lv.Encode; lv.Encode <= 0 || math.Abs(got-want) > 1e-12 {
		t.Errorf("8 diagonals encoded at use cost %g s more, want %g", got, want)
	}
	if enc.Totals.Counts.Encodes != 8 || len(enc.Notes) <= len(kept.Notes) {
		t.Errorf("totals %+v, notes %q", enc.Totals.Counts, enc.Notes)
	}
	// Two ciphertexts, two cores, one lane: two rounds of a two-core lane.
	one, err := Predict(p, counts, Keys{}, prof, Options{CPUs: 2, Ciphertexts: 2, Lanes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := one.Totals.EvalSeconds, 2*one.Totals.LaneSeconds; math.Abs(got-want) > 1e-12 {
		t.Errorf("one lane, two ciphertexts: %g s, want %g", got, want)
	}
}
