package segment

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/split"
)

// OwnerPlan is the data owner's part of a split plan: what running the
// pipeline on remote workers takes, and nothing of the workers' weights.
// It holds the CKKS parameters and the interface of the whole program and
// of every segment (inputs and outputs with their layouts, levels and error
// bounds; ckksir.Interface) with the evaluation keys each segment needs
// (ckks.KeyNeeds), but no instruction, matrix, vector or polynomial. The
// plaintext reference (the approximated model, weights included) is there
// only when the model owner chose to reveal it; without it the data owner
// cannot check the encrypted result against the model.
type OwnerPlan struct {
	// PlanID is the id of the full plan the shards come from (the workers
	// serve its segments under it); ModelName names the model.
	PlanID    string
	ModelName string
	// Program is the whole program's interface: its CKKS parameters, its
	// input and output with their layouts, levels and error bounds.
	Program *ckksir.Program
	// Segments are the encrypted segments, in order.
	Segments []OwnerSegment
	// Reference is the plaintext reference graph (ir.Graph.MarshalBinary)
	// when the model owner reveals it, else nil.
	Reference []byte
	// Stages, in the data-owner plan of a split plan (compile --cut), are
	// its stages in order, and Inputs and Outputs name the model's inputs
	// and outputs; Program and Segments are then nil: each encrypted stage
	// has its own (OwnerStage.Encrypted).
	Stages          []OwnerStage
	Inputs, Outputs []string
}

// OwnerStage is one stage of a split plan's data-owner plan. The data
// owner runs the plaintext stages (prefix, client-aided activations,
// suffix) itself; it encrypts an encrypted stage's inputs, has its
// segments evaluated on workers and decrypts its outputs, so that a
// client-aided step between two encrypted stages is a round trip: the
// worker returns the ciphertext, the data owner decrypts, applies the
// exact activation, re-encrypts and sends the next stage its input.
type OwnerStage struct {
	// Name labels the stage ("prefix", "encrypted 1", "client-aided 1",
	// "suffix", as compiler.Plan.RunStages names them); Inputs and Outputs
	// name the values it reads and gives.
	Name            string
	Inputs, Outputs []string
	// Graph is, for a plaintext stage, the exact operators the data owner
	// runs (ir.Graph.MarshalBinary), with the weights the model owner's
	// policy reveals to it (--reveal-prefix, --reveal-suffix); for an
	// encrypted stage its plaintext reference when revealed, else nil.
	Graph []byte
	// Encrypted is an encrypted stage's own data-owner plan (its program's
	// interface and its segments, numbered across the whole split plan:
	// workers serve segment k of plan PlanID), nil for a plaintext stage.
	Encrypted *OwnerPlan
}

// OwnerSegment is one segment of an OwnerPlan.
type OwnerSegment struct {
	// Index, Count, Start and End are those of the Segment.
	Index, Count, Start, End int
	// Program is the segment program's interface.
	Program *ckksir.Program
	// Keys are the evaluation keys the segment needs.
	Keys *ckks.KeyNeeds
	// Bootstraps is the number of bootstraps the segment's program runs
	// per ciphertext (reports; the interface has no instructions).
	Bootstraps int
	// Shard is the hex SHA-256 of the segment's shard file, when written.
	Shard string
}

// NewOwnerPlan derives the data-owner plan of the split segs of p (the
// program of the plan planID): p's interface and each segment's interface
// and key needs. reference (the plaintext reference) is kept only when
// revealed is set.
func NewOwnerPlan(planID, model string, p *ckksir.Program, segs []*Segment, reference []byte, revealed bool) (*OwnerPlan, error) {
	op := &OwnerPlan{PlanID: planID, ModelName: model, Program: ckksir.Interface(p)}
	if revealed {
		op.Reference = reference
	}
	for _, s := range segs {
		keys, err := ckks.KeyNeedsOf(s.Program)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", s.Index, err)
		}
		op.Segments = append(op.Segments, OwnerSegment{Index: s.Index, Count: s.Count, Start: s.Start, End: s.End,
			Program: ckksir.Interface(s.Program), Keys: keys, Bootstraps: s.Program.Bootstraps()})
	}
	return op, nil
}

// NewSplitOwnerPlan derives the data-owner plan of a split plan from its
// stages (as compiler.Plan.RunStages gives them) and the model's input and
// output names: the plaintext stages whole, and each encrypted stage as one
// segment (segment k is the k-th encrypted stage) with its interface and
// key needs, its plaintext reference only when revealed (reference, the
// whole model's, likewise). It also returns the segments, for the shards.
func NewSplitOwnerPlan(planID, model string, stages []split.Stage, inputs, outputs []string, reference []byte, revealed bool) (*OwnerPlan, []*Segment, error) {
	op := &OwnerPlan{PlanID: planID, ModelName: model, Inputs: inputs, Outputs: outputs}
	if revealed {
		op.Reference = reference
	}
	count := 0
	for _, st := range stages {
		if st.Program != nil {
			count++
		}
	}
	var segs []*Segment
	for _, st := range stages {
		stage := OwnerStage{Name: st.Name, Inputs: st.Inputs, Outputs: st.Outputs}
		if st.Program == nil || revealed {
			if st.Graph == nil {
				return nil, nil, fmt.Errorf("stage %s: no graph", st.Name)
			}
			g, err := st.Graph.MarshalBinary()
			if err != nil {
				return nil, nil, fmt.Errorf("stage %s: %w", st.Name, err)
			}
			stage.Graph = g
		}
		if st.Program != nil {
			seg := Whole(st.Program)
			seg.Index, seg.Count = len(segs), count
			sub, err := NewOwnerPlan(planID, model, st.Program, []*Segment{seg}, nil, false)
			if err != nil {
				return nil, nil, fmt.Errorf("stage %s: %w", st.Name, err)
			}
			stage.Encrypted = sub
			segs = append(segs, seg)
		}
		op.Stages = append(op.Stages, stage)
	}
	return op, segs, nil
}

// IsSplit reports whether op is the data-owner plan of a split plan
// (stages).
func (op *OwnerPlan) IsSplit() bool { return len(op.Stages) > 0 }

// RunStages returns a split data-owner plan's stages for runtime/split:
// the plaintext stages with their graphs, the encrypted ones with their
// program's interface (and plaintext reference when revealed).
func (op *OwnerPlan) RunStages() ([]split.Stage, error) {
	out := make([]split.Stage, len(op.Stages))
	for i, st := range op.Stages {
		out[i] = split.Stage{Name: st.Name, Inputs: st.Inputs, Outputs: st.Outputs}
		if st.Graph != nil {
			g, err := ir.UnmarshalGraph(st.Graph)
			if err != nil {
				return nil, fmt.Errorf("stage %s: %w", st.Name, err)
			}
			out[i].Graph = g
		}
		if st.Encrypted != nil {
			out[i].Program = st.Encrypted.Program
			for _, seg := range st.Encrypted.Segments {
				out[i].Bootstraps += seg.Bootstraps
			}
		}
	}
	return out, nil
}

// AllSegments lists the plan's segments in order: Segments, or for a
// split plan those of its encrypted stages.
func (op *OwnerPlan) AllSegments() []*OwnerSegment {
	var out []*OwnerSegment
	for i := range op.Segments {
		out = append(out, &op.Segments[i])
	}
	for _, st := range op.Stages {
		if st.Encrypted != nil {
			out = append(out, st.Encrypted.AllSegments()...)
		}
	}
	return out
}

// Split returns the plan's segments as the pipeline runs them: each with
// its interface as its Program (segment.Run and remote.Owner read nothing
// more).
func (op *OwnerPlan) Split() []*Segment {
	segs := make([]*Segment, len(op.Segments))
	for i, s := range op.Segments {
		segs[i] = &Segment{Index: s.Index, Count: s.Count, Start: s.Start, End: s.End, Program: s.Program}
	}
	return segs
}

// Cuts are the instruction indices the program is cut before.
// For a split plan, whose segments are encrypted stages of their own, they
// are the segments' starts after the first (0 each), as WriteShards lists
// them.
func (op *OwnerPlan) Cuts() []int {
	var cuts []int
	for _, s := range op.AllSegments()[1:] {
		cuts = append(cuts, s.Start)
	}
	return cuts
}

// ownerPlanMagic opens a data-owner plan file, followed by the SHA-256 of
// the payload and the payload, gob(OwnerPlan).
const ownerPlanMagic = "CIPHERCUT-OWNER-PLAN\x01\n"

// OwnerPlanFile is the data-owner plan's name in a split directory.
const OwnerPlanFile = "owner.plan"

// EncodeOwnerPlan returns the bytes of a data-owner plan file.
func EncodeOwnerPlan(op *OwnerPlan) ([]byte, error) {
	return seal(ownerPlanMagic, "data-owner plan", op)
}

// IsOwnerPlan reports whether data (a file's first bytes suffice) opens a
// data-owner plan.
func IsOwnerPlan(data []byte) bool { return bytes.HasPrefix(data, []byte(ownerPlanMagic)) }

// DecodeOwnerPlan decodes and checks a data-owner plan file's bytes; name
// heads errors. The interfaces pass ckksir.VerifyInterface, the segments
// are consecutive, and each segment's inputs are the program's inputs or
// outputs of earlier segments; a split plan's stages read only values
// given before them and their graphs decode (verifyStages).
func DecodeOwnerPlan(data []byte, name string) (op *OwnerPlan, err error) {
	defer func() {
		if r := recover(); r != nil {
			op, err = nil, fmt.Errorf("%s: invalid data-owner plan: %v", name, r)
		}
	}()
	op = new(OwnerPlan)
	if err := unseal(data, ownerPlanMagic, "data-owner plan", name, op); err != nil {
		return nil, err
	}
	if op.IsSplit() {
		err = op.verifyStages()
	} else {
		err = op.verifyEncrypted(0, len(op.Segments))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: invalid data-owner plan: %w", name, err)
	}
	return op, nil
}

// verifyEncrypted checks an encrypted program's interface and its
// segments, numbered from first of total: their interfaces, that they
// follow each other, and that each input is a program input or an output
// of an earlier segment.
func (op *OwnerPlan) verifyEncrypted(first, total int) error {
	if op.Program == nil || len(op.Segments) == 0 || op.IsSplit() {
		return fmt.Errorf("no program or no segment")
	}
	if err := ckksir.VerifyInterface(op.Program); err != nil {
		return err
	}
	known := map[string]bool{}
	for _, io := range op.Program.Inputs {
		known[io.Name] = true
	}
	end := 0
	for i, s := range op.Segments {
		if s.Index != first+i || s.Count != total || s.Start != end || s.End <= s.Start || s.Program == nil || s.Keys == nil {
			return fmt.Errorf("segment %d of %d (instructions [%d, %d)) does not follow the one before", s.Index, s.Count, s.Start, s.End)
		}
		if err := ckksir.VerifyInterface(s.Program); err != nil {
			return fmt.Errorf("segment %d: %v", s.Index, err)
		}
		if s.Bootstraps < 0 || s.Bootstraps > s.End-s.Start || s.Bootstraps > 0 && s.Program.Boot == nil {
			return fmt.Errorf("segment %d: %d bootstraps in %d instructions, bootstrapping parameters set: %v", s.Index, s.Bootstraps, s.End-s.Start, s.Program.Boot != nil)
		}
		a, b := s.Program.Params, op.Program.Params
		if a.String() != b.String() || s.Program.Packing != op.Program.Packing || s.Program.Batch != op.Program.Batch {
			return fmt.Errorf("segment %d: parameters %s differ from the program's %s", s.Index, a, b)
		}
		for _, io := range s.Program.Inputs {
			if !known[io.Name] {
				return fmt.Errorf("segment %d reads %s, which no earlier segment computes", s.Index, io.Name)
			}
		}
		for _, io := range s.Program.Outputs {
			known[io.Name] = true
		}
		end = s.End
	}
	for _, io := range op.Program.Outputs {
		if !known[io.Name] {
			return fmt.Errorf("no segment computes the output %s", io.Name)
		}
	}
	return nil
}

// verifyStages checks a split data-owner plan: every stage reads values
// the model inputs or earlier stages give, a plaintext stage's graph
// decodes, an encrypted stage's plan (of this plan id) passes
// verifyEncrypted with its segments numbered across the stages and its
// program reads and gives the stage's values, and the model outputs are
// given.
func (op *OwnerPlan) verifyStages() error {
	if op.Program != nil || len(op.Segments) > 0 || len(op.Inputs) == 0 || len(op.Outputs) == 0 {
		return fmt.Errorf("a split plan has stages, model inputs and outputs, and no program or segments of its own")
	}
	total := 0
	for _, st := range op.Stages {
		if st.Encrypted != nil {
			total += len(st.Encrypted.Segments)
		}
	}
	given := map[string]bool{}
	for _, in := range op.Inputs {
		given[in] = true
	}
	next := 0
	for i, st := range op.Stages {
		for _, in := range st.Inputs {
			if !given[in] {
				return fmt.Errorf("stage %d (%s) reads %q, which no earlier stage gives", i, st.Name, in)
			}
		}
		if st.Graph != nil {
			if _, err := ir.UnmarshalGraph(st.Graph); err != nil {
				return fmt.Errorf("stage %d (%s): graph: %v", i, st.Name, err)
			}
		}
		if e := st.Encrypted; e != nil {
			if e.PlanID != op.PlanID {
				return fmt.Errorf("stage %d (%s) is of plan %.12s, not %.12s", i, st.Name, e.PlanID, op.PlanID)
			}
			if err := e.verifyEncrypted(next, total); err != nil {
				return fmt.Errorf("stage %d (%s): %v", i, st.Name, err)
			}
			if !sameNames(e.Program.Inputs, st.Inputs) || !sameNames(e.Program.Outputs, st.Outputs) {
				return fmt.Errorf("stage %d (%s): its program's inputs and outputs are not the stage's", i, st.Name)
			}
			next += len(e.Segments)
		} else if st.Graph == nil {
			return fmt.Errorf("stage %d (%s): a plaintext stage without a graph", i, st.Name)
		}
		for _, o := range st.Outputs {
			given[o] = true
		}
	}
	for _, o := range op.Outputs {
		if !given[o] {
			return fmt.Errorf("no stage gives the model output %q", o)
		}
	}
	return nil
}

func sameNames(ios []ckksir.IO, names []string) bool {
	if len(ios) != len(names) {
		return false
	}
	for i, io := range ios {
		if io.Name != names[i] {
			return false
		}
	}
	return true
}

// ReadOwnerPlan reads a data-owner plan file.
func ReadOwnerPlan(path string) (*OwnerPlan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading data-owner plan: %w", err)
	}
	return DecodeOwnerPlan(data, path)
}

// SplitFiles is what WriteSplit wrote.
type SplitFiles struct {
	Manifest *Manifest
	Owner    *OwnerPlan
}

// WriteSplit writes a split plan into dir, creating it: one worker shard
// per segment (shard-<k>.bin, that segment's program and weights only),
// the manifest (manifest.json: plan id, cuts, shard hashes) and the
// data-owner plan (owner.plan, see OwnerPlan; reference kept only when
// revealed).
func WriteSplit(dir, planID, model string, p *ckksir.Program, segs []*Segment, reference []byte, revealed bool) (*SplitFiles, error) {
	op, err := NewOwnerPlan(planID, model, p, segs, reference, revealed)
	if err != nil {
		return nil, err
	}
	return WriteOwnerSplit(dir, op, segs)
}

// WriteOwnerSplit writes the data-owner plan op (whole or split) and one
// shard per segment of segs (its segments, in order) into dir, creating
// it, with the manifest; op records the shards' hashes.
func WriteOwnerSplit(dir string, op *OwnerPlan, segs []*Segment) (*SplitFiles, error) {
	m, err := WriteShards(dir, op.PlanID, op.ModelName, segs)
	if err != nil {
		return nil, err
	}
	own := op.AllSegments()
	if len(own) != len(m.Shards) {
		return nil, fmt.Errorf("the data-owner plan has %d segments, %d shards written", len(own), len(m.Shards))
	}
	for i, s := range own {
		s.Shard = m.Shards[i].SHA256
	}
	data, err := EncodeOwnerPlan(op)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(dir, OwnerPlanFile), data); err != nil {
		return nil, err
	}
	return &SplitFiles{Manifest: m, Owner: op}, nil
}

// ShardSum is the hex SHA-256 of a shard file's bytes, as manifests and
// data-owner plans list it.
func ShardSum(data []byte) string { return fmt.Sprintf("%x", sha256.Sum256(data)) }
