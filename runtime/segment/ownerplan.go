package segment

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
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
}

// OwnerSegment is one segment of an OwnerPlan.
type OwnerSegment struct {
	// Index, Count, Start and End are those of the Segment.
	Index, Count, Start, End int
	// Program is the segment program's interface.
	Program *ckksir.Program
	// Keys are the evaluation keys the segment needs.
	Keys *ckks.KeyNeeds
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
			Program: ckksir.Interface(s.Program), Keys: keys})
	}
	return op, nil
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
func (op *OwnerPlan) Cuts() []int {
	var cuts []int
	for _, s := range op.Segments[1:] {
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
// outputs of earlier segments.
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
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%s: invalid data-owner plan: %s", name, fmt.Sprintf(format, args...))
	}
	if op.Program == nil || len(op.Segments) == 0 {
		return nil, invalid("no program or no segment")
	}
	if err := ckksir.VerifyInterface(op.Program); err != nil {
		return nil, invalid("%v", err)
	}
	known := map[string]bool{}
	for _, io := range op.Program.Inputs {
		known[io.Name] = true
	}
	end := 0
	for i, s := range op.Segments {
		if s.Index != i || s.Count != len(op.Segments) || s.Start != end || s.End <= s.Start || s.Program == nil || s.Keys == nil {
			return nil, invalid("segment %d of %d (instructions [%d, %d)) does not follow the one before", s.Index, s.Count, s.Start, s.End)
		}
		if err := ckksir.VerifyInterface(s.Program); err != nil {
			return nil, invalid("segment %d: %v", i, err)
		}
		a, b := s.Program.Params, op.Program.Params
		if a.String() != b.String() || s.Program.Packing != op.Program.Packing || s.Program.Batch != op.Program.Batch {
			return nil, invalid("segment %d: parameters %s differ from the program's %s", i, a, b)
		}
		for _, io := range s.Program.Inputs {
			if !known[io.Name] {
				return nil, invalid("segment %d reads %s, which no earlier segment computes", i, io.Name)
			}
		}
		for _, io := range s.Program.Outputs {
			known[io.Name] = true
		}
		end = s.End
	}
	for _, io := range op.Program.Outputs {
		if !known[io.Name] {
			return nil, invalid("no segment computes the output %s", io.Name)
		}
	}
	return op, nil
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
	m, err := WriteShards(dir, planID, model, segs)
	if err != nil {
		return nil, err
	}
	for i := range op.Segments {
		op.Segments[i].Shard = m.Shards[i].SHA256
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
