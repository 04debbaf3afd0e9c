package compiler

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
)

// planGraph builds x[1,4] -> Dense -> Poly (x² - 0.5 on [-2, 2]) -> Dense.
func planGraph(t testing.TB) *ir.Graph {
	t.Helper()
	g := &ir.Graph{Name: "plan", Opset: 13}
	x := &ir.Value{Name: "x", DType: ir.Float32, Shape: ir.Shape{1, 4}}
	g.Inputs = []*ir.Value{x}
	konst := func(name string, shape ir.Shape) *ir.Value {
		d := make([]float64, shape.Size())
		for i := range d {
			d[i] = float64((i*5+len(name))%9)/8 - 0.5
		}
		return &ir.Value{Name: name, DType: ir.Float32, Shape: shape, Const: ir.NewFloat(shape, d)}
	}
	op := func(name, opName string, attrs ir.Attrs, ins ...*ir.Value) *ir.Value {
		n := &ir.Node{Name: name, Op: opName, Inputs: ins, Attrs: attrs}
		v := &ir.Value{Name: name + "_out", Producer: n}
		n.Outputs = []*ir.Value{v}
		g.Nodes = append(g.Nodes, n)
		return v
	}
	h := op("d1", "Dense", nil, x, konst("w1", ir.Shape{4, 3}), konst("b1", ir.Shape{3}))
	h = op("p", "Poly", ir.Attrs{
		"func": {Kind: ir.AttrString, String: "Square"}, "a": {Kind: ir.AttrFloat, Float: -2}, "b": {Kind: ir.AttrFloat, Float: 2},
		"coeffs": {Kind: ir.AttrFloats, Floats: []float64{1.5, 0, 2}},
	}, h)
	g.Outputs = []*ir.Value{op("d2", "Dense", nil, h, konst("w2", ir.Shape{3, 2}), konst("b2", ir.Shape{2}))}
	if err := passes.InferShapes(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// testPlan lowers planGraph into a plan.
func testPlan(t testing.TB) *Plan {
	t.Helper()
	g := planGraph(t)
	prog, err := passes.LowerCKKS(g, passes.LowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &Plan{ModelName: "plan", ModelSHA256: strings.Repeat("ab", 32), Graph: data, Program: prog,
		Approximations: "p: x² on [-2, 2]", Notes: []string{"a note"}}
}

// reseal returns plan-file bytes around payload with a correct checksum and
// length.
func reseal(payload []byte) []byte {
	sum := sha256.Sum256(payload)
	out := append([]byte(planMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(out[len(planMagic):], PlanFormatVersion)
	out = append(out, sum[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(payload)))
	return append(out, payload...)
}

// TestPlanRoundTrip writes a plan, reads it back and compares.
func TestPlanRoundTrip(t *testing.T) {
	p := testPlan(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.plan")
	if err := WritePlan(path, p); err != nil {
		t.Fatal(err)
	}
	// Overwriting is atomic too, and leaves no temporary files.
	if err := WritePlan(path, p); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after writing, want 1", len(entries))
	}
	got, err := ReadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	want := *p
	want.FormatVersion = PlanFormatVersion
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("plan changed on the round trip (-want +got):\n%s", diff)
	}
	if _, err := ir.UnmarshalGraph(got.Graph); err != nil {
		t.Error(err)
	}
	var a, b strings.Builder
	ckksir.Dump(&a, p.Program)
	ckksir.Dump(&b, got.Program)
	if a.String() != b.String() {
		t.Errorf("program dump changed:\n%s\n%s", a.String(), b.String())
	}
}

// TestPlanCorruption checks the one-line error of every kind of damage.
func TestPlanCorruption(t *testing.T) {
	good, err := EncodePlan(testPlan(t))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	badProgram := testPlan(t)
	badProgram.Program.BlockSize = 3
	badProgramBytes, err := EncodePlan(badProgram)
	if err != nil {
		t.Fatal(err)
	}
	badGraph := testPlan(t)
	badGraph.Graph = []byte("not a graph")
	badGraphBytes, err := EncodePlan(badGraph)
	if err != nil {
		t.Fatal(err)
	}
	lostMatrix := testPlan(t)
	lostMatrix.Program.Instrs[0].Matrices = nil
	lostMatrixBytes, err := EncodePlan(lostMatrix)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "m.plan: not a ciphercut plan (bad magic)"},
		{"onnx", []byte("\x08\x07\x12\x07pytorch"), "m.plan: not a ciphercut plan (bad magic)"},
		{"version", mutate(func(b []byte) []byte { b[len(planMagic)] = 1; return b }), "m.plan: plan format v1, this ciphercut reads v3; recompile"},
		{"truncated header", good[:len(planMagic)+10], "m.plan: truncated plan"},
		{"truncated payload", good[:len(good)-7], "m.plan: truncated plan ("},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "m.plan: corrupt plan (1 bytes after the payload)"},
		{"flipped payload byte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), "m.plan: corrupt plan (checksum mismatch)"},
		{"flipped checksum", mutate(func(b []byte) []byte { b[len(planMagic)+4] ^= 1; return b }), "m.plan: corrupt plan (checksum mismatch)"},
		{"garbage payload", reseal([]byte("garbage")), "m.plan: corrupt plan: decoding"},
		{"invalid program", badProgramBytes, "m.plan: invalid plan: ckks program"},
		{"invalid graph", badGraphBytes, "m.plan: invalid plan: reference graph"},
		{"lost matrix", lostMatrixBytes, "m.plan: invalid plan: ckks program: instruction 0 (linear, d1) has 0 matrices for 1 inputs"},
	} {
		p, err := DecodePlan(c.data, "m.plan")
		if err == nil || p != nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want %q...", c.name, err, c.want)
		}
	}
}

// TestPlanFileErrors checks the errors of the file functions.
func TestPlanFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadPlan(filepath.Join(dir, "missing.plan")); err == nil || !strings.Contains(err.Error(), "missing.plan") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "model.plan")
	if err := os.WriteFile(path, []byte("ir_version: 7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPlan(path); err == nil || err.Error() != path+": not a ciphercut plan (bad magic)" {
		t.Errorf("not a plan: %v", err)
	}
	if err := WritePlan(filepath.Join(dir, "no", "such", "dir.plan"), testPlan(t)); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	if err := WritePlan(path, &Plan{}); err == nil || !strings.Contains(err.Error(), "no program") {
		t.Errorf("empty plan: %v", err)
	}
	p := testPlan(t)
	p.FormatVersion = 7
	if err := WritePlan(path, p); err == nil || !strings.Contains(err.Error(), "format v7") {
		t.Errorf("format v7: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("failed writes left %d entries", len(entries))
	}
}

// FuzzReadPlan feeds arbitrary bytes to DecodePlan, as a file and as a
// payload under a valid header (so that the gob decoding and the checks
// behind it are reached): it must fail cleanly, never panic, and anything
// it accepts must encode again to a plan it accepts.
func FuzzReadPlan(f *testing.F) {
	good, err := EncodePlan(testPlan(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[planHeaderSize:])
	f.Add(good[:len(good)/2])
	f.Add([]byte(planMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, reseal(data)} {
			p, err := DecodePlan(b, "fuzz.plan")
			if err != nil {
				if p != nil || !strings.HasPrefix(err.Error(), "fuzz.plan: ") {
					t.Fatalf("error %v with plan %v", err, p)
				}
				continue
			}
			again, err := EncodePlan(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodePlan(again, "again"); err != nil {
				t.Fatalf("re-encoded plan refused: %v", err)
			}
			if !bytes.Equal(b[:len(planMagic)], again[:len(planMagic)]) {
				t.Fatal("magic changed")
			}
		}
	})
}
