package segment

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

// Runner evaluates one segment: its program's inputs by name in, its
// outputs by name out. A local evaluator, a remote worker or several of
// them comparing results all fit.
type Runner func(seg *Segment, inputs map[string][]*ckks.Ciphertext) (map[string][]*ckks.Ciphertext, error)

// Run evaluates the segments of p in order on the program's encrypted
// inputs (by input name) and returns its outputs (by output name). Each
// segment gets the ciphertexts of its program's inputs, by name (see
// ValueName), from the program inputs or the outputs of the segments before
// it; a segment's inputs are kept until its outputs arrive, so a Runner may
// retry the segment elsewhere. Only the names of p's inputs and outputs and
// of the segment programs' are read: p and the segment programs may be
// interfaces (ckksir.Interface), as in a data-owner plan.
func Run(p *ckksir.Program, segs []*Segment, inputs map[string][]*ckks.Ciphertext, run Runner) (map[string][]*ckks.Ciphertext, error) {
	pool := map[string][]*ckks.Ciphertext{}
	for _, io := range p.Inputs {
		cts, ok := inputs[io.Name]
		if !ok {
			return nil, fmt.Errorf("segment: missing input %q", io.Name)
		}
		pool[io.Name] = cts
	}
	for _, seg := range segs {
		in := make(map[string][]*ckks.Ciphertext, len(seg.Program.Inputs))
		for _, io := range seg.Program.Inputs {
			cts, ok := pool[io.Name]
			if !ok {
				return nil, fmt.Errorf("segment %d: input %s is computed by no earlier segment", seg.Index, io.Name)
			}
			in[io.Name] = cts
		}
		out, err := run(seg, in)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", seg.Index, err)
		}
		for _, io := range seg.Program.Outputs {
			cts, ok := out[io.Name]
			if !ok {
				return nil, fmt.Errorf("segment %d: no ciphertexts for its output %s", seg.Index, io.Name)
			}
			pool[io.Name] = cts
		}
	}
	outs := make(map[string][]*ckks.Ciphertext, len(p.Outputs))
	for _, io := range p.Outputs {
		cts, ok := pool[io.Name]
		if !ok {
			return nil, fmt.Errorf("segment: output %q is computed by no segment", io.Name)
		}
		outs[io.Name] = cts
	}
	return outs, nil
}

// Whole is p as a single segment.
func Whole(p *ckksir.Program) *Segment {
	s := &Segment{Count: 1, End: len(p.Instrs), Program: p}
	for _, io := range p.Inputs {
		s.Inputs = append(s.Inputs, io.Value)
	}
	for _, io := range p.Outputs {
		s.Outputs = append(s.Outputs, io.Value)
	}
	return s
}
