package segment

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// weights lists the plaintext numbers of a program's instructions: the
// matrix diagonals, dense matrices, biases, vectors and polynomial
// coefficients of its layers.
func weights(p *ckksir.Program) []float64 {
	var out []float64
	for _, ins := range p.Instrs {
		for _, m := range ins.Matrices {
			for _, d := range m.Diagonals {
				out = append(out, d.Values...)
			}
		}
		for _, m := range ins.Dense {
			out = append(out, m.Data...)
		}
		out = append(append(out, ins.Bias...), ins.Vector...)
		if ins.Poly != nil {
			out = append(out, ins.Poly.Coeffs...)
		}
	}
	return out
}

// encodings returns the byte strings a float64 takes in a file: its IEEE
// bits little and big endian, and gob's encoding (the bits byte-reversed,
// then as an unsigned integer: a negated byte count and the big-endian
// bytes without leading zeros). Only values whose encodings are long enough
// to be specific are searched (at least 6 significant bytes).
func encodings(v float64) [][]byte {
	u := math.Float64bits(v)
	le, be := binary.LittleEndian.AppendUint64(nil, u), binary.BigEndian.AppendUint64(nil, u)
	r := bits.ReverseBytes64(u)
	g := binary.BigEndian.AppendUint64(nil, r)
	for len(g) > 0 && g[0] == 0 {
		g = g[1:]
	}
	if len(g) < 6 {
		return nil
	}
	return [][]byte{le, be, append([]byte{byte(-len(g))}, g...)}
}

// found counts the weights of p with an encoding present in data, and the
// weights searched.
func found(p *ckksir.Program, data []byte) (hits, searched int) {
	seen := map[float64]bool{}
	for _, w := range weights(p) {
		if seen[w] {
			continue
		}
		seen[w] = true
		enc := encodings(w)
		if enc == nil {
			continue
		}
		searched++
		for _, e := range enc {
			if bytes.Contains(data, e) {
				hits++
				break
			}
		}
	}
	return hits, searched
}

// checkNoWeights searches the data-owner plan written into dir for every
// weight of every segment (matrix diagonals, biases, polynomial
// coefficients): none may appear, while each shard (listed by the
// manifest) holds all of its own segment's (the search works); weights a
// shard shares with other segments (constants) are logged. It returns the
// data-owner plan's bytes.
func checkNoWeights(t *testing.T, dir string, m *Manifest, segs []*Segment) []byte {
	t.Helper()
	ownerBytes, err := os.ReadFile(filepath.Join(dir, OwnerPlanFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		hits, searched := found(s.Program, ownerBytes)
		t.Logf("segment %d: %d of its %d distinct weights found in the data-owner plan (%d bytes)", s.Index, hits, searched, len(ownerBytes))
		if searched == 0 {
			t.Fatalf("segment %d: no weight to search", s.Index)
		}
		if hits > 0 {
			t.Errorf("segment %d: %d weights appear in the data-owner plan", s.Index, hits)
		}
		shard, err := os.ReadFile(filepath.Join(dir, m.Shards[s.Index].File))
		if err != nil {
			t.Fatal(err)
		}
		if hits, searched := found(s.Program, shard); hits != searched {
			t.Errorf("segment %d: its shard holds %d of its %d weights, want all (the search is broken)", s.Index, hits, searched)
		}
		for _, other := range segs {
			if hits, _ := found(other.Program, shard); other != s && hits > 0 {
				t.Logf("segment %d's shard holds %d weights equal to segment %d's (shared values, e.g. constants)", s.Index, hits, other.Index)
			}
		}
	}
	return ownerBytes
}

// TestOwnerPlanHoldsNoWeights splits cancer-mlp in two, writes the split
// and searches the bytes of the data-owner plan for every weight of every
// encrypted segment (matrix diagonals, biases, polynomial coefficients):
// none may appear, while each shard holds its own segment's (the search
// works) and not the other's. The data-owner plan decodes, lists the
// shards' hashes and generates exactly the keys the segments need, and
// without reveal holds no plaintext reference.
func TestOwnerPlanHoldsNoWeights(t *testing.T) {
	plan, p, segs := cancerInTwo(t)
	dir := t.TempDir()
	sp, err := WriteSplit(dir, "plan-id", plan.ModelName, p, segs, plan.Graph, false)
	if err != nil {
		t.Fatal(err)
	}
	ownerBytes := checkNoWeights(t, dir, sp.Manifest, segs)
	op, err := DecodeOwnerPlan(ownerBytes, "owner.plan")
	if err != nil {
		t.Fatal(err)
	}
	if op.Reference != nil {
		t.Error("the data-owner plan holds the plaintext reference, not revealed")
	}
	for i, s := range op.Segments {
		if s.Shard != sp.Manifest.Shards[i].SHA256 || len(s.Program.Instrs) != 0 {
			t.Errorf("segment %d: shard hash %q (manifest %q), %d instructions", i, s.Shard, sp.Manifest.Shards[i].SHA256, len(s.Program.Instrs))
		}
		want, err := ckks.PlanKeys(segs[i].Program)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Keys.Galois) != len(want.Rotations) || s.Keys.Relinearization != want.Relinearization {
			t.Errorf("segment %d: key needs %d rotations, relinearization %v; the program needs %d, %v",
				i, len(s.Keys.Galois), s.Keys.Relinearization, len(want.Rotations), want.Relinearization)
		}
	}
	if revealed, err := NewOwnerPlan("plan-id", plan.ModelName, p, segs, plan.Graph, true); err != nil || !bytes.Equal(revealed.Reference, plan.Graph) {
		t.Errorf("revealed reference missing (%v)", err)
	}
}

// TestOwnerPlanRunsLikeWhole runs the segments of a data-owner plan with a
// client built from the interfaces alone (its keys generated from the key
// needs), each evaluated from its shard's program, and checks the result
// against the whole program's.
func TestOwnerPlanRunsLikeWhole(t *testing.T) {
	m, _, p, err := smallring.Compile("../../testsuite/models/cancer-mlp", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	x := zoo.Rows(m.Inputs, 0, 4)
	whole, err := ckks.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, whole, p, []*Segment{Whole(p)}, x)
	segs, err := Split(p, 2)
	if err != nil {
		t.Fatal(err)
	}
	op, err := NewOwnerPlan("id", "cancer-mlp", p, segs, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeOwnerPlan(op)
	if err != nil {
		t.Fatal(err)
	}
	if op, err = DecodeOwnerPlan(data, "owner.plan"); err != nil {
		t.Fatal(err)
	}
	client, err := ckks.NewInterfaceClient(op.Program, &ckks.KeyNeeds{})
	if err != nil {
		t.Fatal(err)
	}
	name := op.Program.Inputs[0].Name
	cts, err := client.Encrypt(name, x)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(op.Program, op.Split(), map[string][]*ckks.Ciphertext{name: cts}, func(seg *Segment, in map[string][]*ckks.Ciphertext) (map[string][]*ckks.Ciphertext, error) {
		sc, err := client.ForInterface(seg.Program, op.Segments[seg.Index].Keys)
		if err != nil {
			return nil, err
		}
		evk, err := sc.EvaluationKeys(nil)
		if err != nil {
			return nil, err
		}
		ev, err := ckks.NewEvaluator(segs[seg.Index].Program, evk) // the worker's side: the shard's program
		if err != nil {
			return nil, err
		}
		return ev.Run(in)
	})
	if err != nil {
		t.Fatal(err)
	}
	outName := op.Program.Outputs[0].Name
	y, err := client.Decrypt(outName, out[outName], x.Shape[0])
	if err != nil {
		t.Fatal(err)
	}
	bound := p.Values[p.Outputs[0].Value].Bound
	if d := zoo.MaxAbsDiff(y, want); d > 2*bound {
		t.Errorf("max |owner plan - whole| = %.3e, bound %.3e", d, bound)
	}
}

// TestOwnerPlanRefusesCorrupt checks DecodeOwnerPlan on a flipped byte, a
// truncation and a shard file.
func TestOwnerPlanRefusesCorrupt(t *testing.T) {
	plan, p, segs := cancerInTwo(t)
	op, err := NewOwnerPlan("id", plan.ModelName, p, segs, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeOwnerPlan(op)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)-3] ^= 1
	shard, err := EncodeShard(NewShard("id", plan.ModelName, segs[0]))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"flipped": flipped, "truncated": data[:len(data)/2], "shard": shard} {
		if _, err := DecodeOwnerPlan(b, name); err == nil {
			t.Errorf("%s: decoded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeOwnerPlan feeds DecodeOwnerPlan arbitrary bytes, seeded with a
// valid plan and with garbage under a valid checksum; the checksum of a
// mutated plan is recomputed so that mutations reach the decoder and the
// checks. It must return an error or a valid plan, never panic.
func FuzzDecodeOwnerPlan(f *testing.F) {
	p := &ckksir.Program{
		Params:    ckksir.Params{LogN: 10, LogQ: []int{40, 30}, LogP: []int{40}, LogScale: 30},
		BlockSize: 512, Batch: 1,
		Values:  []ckksir.Value{{Layout: ckksir.Layout{Shape: []int{4}}, Level: 1}, {Layout: ckksir.Layout{Shape: []int{4}}, Level: 0}},
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 1}},
		Instrs:  []ckksir.Instr{{Op: ckksir.OpMulConst, In: []int{0}, Out: 1}},
	}
	op, err := NewOwnerPlan("id", "m", p, []*Segment{Whole(p)}, nil, false)
	if err != nil {
		f.Fatal(err)
	}
	good, err := EncodeOwnerPlan(op)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	garbage, err := seal(ownerPlanMagic, "data-owner plan", []int{1, 2, 3})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(garbage)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Recompute the checksum so that mutations reach gob and the checks.
		if len(data) > len(ownerPlanMagic)+32 && IsOwnerPlan(data) {
			sum := sha256.Sum256(data[len(ownerPlanMagic)+32:])
			copy(data[len(ownerPlanMagic):], sum[:])
		}
		op, err := DecodeOwnerPlan(data, "fuzz")
		if err == nil && (op.Program == nil || len(op.Segments) == 0) && !op.IsSplit() {
			t.Fatal("accepted a plan without program, segments or stages")
		}
	})
}

// TestSplitOwnerPlanHoldsNoWeights derives the data-owner plan of a split
// digits-cnn plan (smallring.DigitsCNNSplit: plaintext prefix, encrypted
// stages, client-aided step, suffix) and writes it with one shard per
// encrypted stage: the data-owner plan holds the plaintext stages' graphs
// (the weights the policy reveals) and none of the encrypted stages'
// weights, while each shard holds its own; it decodes to the same stages,
// and a plan whose stage reads a value nothing gives is refused, naming
// the stage.
func TestSplitOwnerPlanHoldsNoWeights(t *testing.T) {
	m, plan, stages, err := smallring.CompileSplit("../../testsuite/models/digits-cnn", 3, 13, smallring.DigitsCNNSplit())
	if err != nil {
		t.Fatal(err)
	}
	op, segs, err := NewSplitOwnerPlan("plan-id", plan.ModelName, stages, []string{m.Graph.Inputs[0].Name}, []string{m.Graph.Outputs[0].Name}, plan.Graph, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp, err := WriteOwnerSplit(dir, op, segs)
	if err != nil {
		t.Fatal(err)
	}
	ownerBytes := checkNoWeights(t, dir, sp.Manifest, segs)
	got, err := DecodeOwnerPlan(ownerBytes, "owner.plan")
	if err != nil {
		t.Fatal(err)
	}
	if got.Reference != nil || len(got.Stages) != len(stages) || len(got.AllSegments()) != len(segs) {
		t.Fatalf("decoded %d stages, %d segments, reference %v; want %d, %d, none", len(got.Stages), len(got.AllSegments()), got.Reference != nil, len(stages), len(segs))
	}
	for i, st := range got.Stages {
		if (st.Encrypted != nil) != (stages[i].Program != nil) || (st.Graph != nil) == (st.Encrypted != nil) {
			t.Errorf("stage %s: encrypted %v, graph %v", st.Name, st.Encrypted != nil, st.Graph != nil)
		}
		if st.Encrypted != nil && st.Encrypted.Segments[0].Shard != sp.Manifest.Shards[st.Encrypted.Segments[0].Index].SHA256 {
			t.Errorf("stage %s: shard hash not recorded", st.Name)
		}
	}
	bad := *got
	bad.Stages = append([]OwnerStage(nil), got.Stages...)
	bad.Stages[len(bad.Stages)-1].Inputs = []string{"nope"}
	data, err := EncodeOwnerPlan(&bad)
	if err != nil {
		t.Fatal(err)
	}
	last := bad.Stages[len(bad.Stages)-1].Name
	if _, err := DecodeOwnerPlan(data, "bad.plan"); err == nil || !strings.Contains(err.Error(), "bad.plan") || !strings.Contains(err.Error(), last) {
		t.Errorf("a stage reading an unknown value: %v, want an error naming the file and stage %s", err, last)
	}
}

// cancerInTwo compiles cancer-mlp on a test-only small ring and splits its
// program into two segments.
func cancerInTwo(t *testing.T) (*compiler.Plan, *ckksir.Program, []*Segment) {
	t.Helper()
	_, plan, p, err := smallring.Compile("../../testsuite/models/cancer-mlp", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := Split(p, 2)
	if err != nil {
		t.Fatal(err)
	}
	return plan, p, segs
}
