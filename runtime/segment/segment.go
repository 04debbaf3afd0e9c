// Package segment splits a CKKS program into consecutive segments that
// different workers can run in turn, and reads and writes the shard files a
// worker serves.
//
// A segment is the instructions [Start, End) of a program. Its inputs are
// the values defined before Start (program inputs or earlier instructions)
// that it reads; its outputs are the values it defines that a later segment
// reads or that are program outputs. Each segment is a complete
// ckksir.Program of its own (values renumbered, the same parameters,
// packing and batch) that passes ckksir.Verify: its inputs keep the levels
// they have in the whole program, so a ciphertext produced by one segment is
// what the next one expects.
//
// # Scales
//
// The evaluator plans every value's scale from the default scale of its
// inputs (see runtime/ckks): a ciphertext product leaves a value slightly
// off the default scale, and a segment whose input had such a scale would
// refuse the ciphertext (the evaluator checks input scales). Rather than
// carrying scales in the segment programs, Split cuts only where every value
// crossing the cut is at the default scale: it is defined by an instruction
// other than mul, or by an add or add-const of default-scale values. Every
// linear, mul-const and polynomial instruction resets the scale, so real
// models offer many such cuts.
package segment

import (
	"errors"
	"fmt"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// Segment is one piece of a split program.
type Segment struct {
	// Index is the segment's position, from 0; Count the number of segments.
	Index, Count int
	// Start and End delimit the instructions [Start, End) of the whole
	// program it runs.
	Start, End int
	// Program is the segment as a program of its own.
	Program *ckksir.Program
	// Inputs and Outputs are the whole program's value ids of the segment
	// program's inputs and outputs, in order.
	Inputs, Outputs []int
}

// ValueName is the name a value of p carries across segments: the name of
// the program input or output it is bound to, or "%v<id>" for an
// intermediate value (a name no ONNX tensor takes).
func ValueName(p *ckksir.Program, id int) string {
	for _, io := range p.Inputs {
		if io.Value == id {
			return io.Name
		}
	}
	for _, io := range p.Outputs {
		if io.Value == id {
			return io.Name
		}
	}
	return fmt.Sprintf("%%v%d", id)
}

// defaultScale reports, for every value of p, whether the evaluator plans it
// at the default scale (see the package comment).
func defaultScale(p *ckksir.Program) []bool {
	def := make([]bool, len(p.Values))
	for i := range def {
		def[i] = true
	}
	for _, ins := range p.Instrs {
		switch ins.Op {
		case ckksir.OpMul:
			def[ins.Out] = false
		case ckksir.OpAdd, ckksir.OpAddConst:
			ok := true
			for _, a := range ins.In {
				ok = ok && def[a]
			}
			def[ins.Out] = ok
		default:
			def[ins.Out] = true
		}
	}
	return def
}

// crossing returns the values alive across a cut before instruction c:
// defined before c (inputs included) and read at or after c or bound to a
// program output, in increasing id order.
func crossing(p *ckksir.Program, c int) []int {
	definedBefore := make([]bool, len(p.Values))
	for _, io := range p.Inputs {
		definedBefore[io.Value] = true
	}
	for _, ins := range p.Instrs[:c] {
		definedBefore[ins.Out] = true
	}
	live := make([]bool, len(p.Values))
	for _, ins := range p.Instrs[c:] {
		for _, a := range ins.In {
			live[a] = live[a] || definedBefore[a]
		}
	}
	var out []int
	for id := range p.Values {
		if live[id] {
			out = append(out, id)
		}
	}
	return out
}

// Cuts returns the instruction indices in (0, len(Instrs)) before which p
// can be cut: every value crossing the cut is at the default scale.
func Cuts(p *ckksir.Program) []int {
	def := defaultScale(p)
	var cuts []int
	for c := 1; c < len(p.Instrs); c++ {
		ok := true
		for _, id := range crossing(p, c) {
			ok = ok && def[id]
		}
		if ok {
			cuts = append(cuts, c)
		}
	}
	return cuts
}

// Split cuts p into n segments of about as many instructions each, at the
// valid cut nearest to each even share. n = 1 gives the whole program as
// one segment.
func Split(p *ckksir.Program, n int) ([]*Segment, error) {
	if p == nil {
		return nil, errNoProgram
	}
	if err := ckksir.Verify(p); err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	if n < 1 {
		return nil, fmt.Errorf("segment: %d segments; want at least 1", n)
	}
	valid := Cuts(p)
	if len(valid) < n-1 {
		return nil, fmt.Errorf("segment: the program of %d instructions has %d places to cut (where every live value is at the default scale), %d segments need %d",
			len(p.Instrs), len(valid), n, n-1)
	}
	// Greedy: the k-th cut is the valid one nearest to k/n of the program
	// that leaves enough valid cuts after it.
	var cuts []int
	next := 0 // first index into valid still available
	for k := 1; k < n; k++ {
		target := k * len(p.Instrs) / n
		last := len(valid) - (n - 1 - k) // keep n-1-k cuts for later
		best := next
		for i := next; i < last; i++ {
			if abs(valid[i]-target) < abs(valid[best]-target) {
				best = i
			}
		}
		cuts = append(cuts, valid[best])
		next = best + 1
	}
	return SplitAt(p, cuts)
}

// errNoProgram answers a plan without a single program: a split plan
// (compile --cut or --client-aided) holds one per encrypted stage.
var errNoProgram = errors.New("segment: the plan has no single program (a split plan, compiled with --cut or --client-aided, runs in process only for now)")

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// SplitAt cuts p before each of the instruction indices cuts (strictly
// increasing, inside (0, len(Instrs))), giving len(cuts)+1 segments. It
// refuses a cut where a live value is off the default scale.
func SplitAt(p *ckksir.Program, cuts []int) ([]*Segment, error) {
	if p == nil {
		return nil, errNoProgram
	}
	if err := ckksir.Verify(p); err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	def := defaultScale(p)
	bounds := append(append([]int{0}, cuts...), len(p.Instrs))
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			return nil, fmt.Errorf("segment: cuts %v are not strictly increasing inside (0, %d)", cuts, len(p.Instrs))
		}
	}
	for _, c := range cuts {
		for _, id := range crossing(p, c) {
			if !def[id] {
				return nil, fmt.Errorf("segment: cannot cut before instruction %d: value v%d crosses it off the default scale (a ciphertext product)", c, id)
			}
		}
	}
	isOutput := make([]bool, len(p.Values))
	for _, io := range p.Outputs {
		isOutput[io.Value] = true
	}
	segs := make([]*Segment, len(bounds)-1)
	for k := range segs {
		start, end := bounds[k], bounds[k+1]
		seg := &Segment{Index: k, Count: len(segs), Start: start, End: end, Inputs: crossing(p, start)}
		if start == 0 {
			// The first segment takes the program inputs even when unread.
			seg.Inputs = nil
			for _, io := range p.Inputs {
				seg.Inputs = append(seg.Inputs, io.Value)
			}
		}
		readLater := make([]bool, len(p.Values))
		for _, id := range crossing(p, end) {
			readLater[id] = true
		}
		for _, ins := range p.Instrs[start:end] {
			if readLater[ins.Out] || isOutput[ins.Out] {
				seg.Outputs = append(seg.Outputs, ins.Out)
			}
		}
		seg.Program = subProgram(p, start, end, seg.Inputs, seg.Outputs)
		if err := ckksir.Verify(seg.Program); err != nil {
			return nil, fmt.Errorf("segment %d (instructions [%d, %d)): %w", k, start, end, err)
		}
		segs[k] = seg
	}
	return segs, nil
}

// subProgram builds the program of instructions [start, end) with the given
// inputs and outputs (whole-program value ids), renumbering values in order
// of appearance, with p's bootstrapping parameters when it bootstraps.
// Instructions share their matrices and vectors with p.
func subProgram(p *ckksir.Program, start, end int, inputs, outputs []int) *ckksir.Program {
	sub := &ckksir.Program{Params: p.Params, Packing: p.Packing, BlockSize: p.BlockSize, Batch: p.Batch}
	ids := map[int]int{}
	id := func(v int) int {
		if n, ok := ids[v]; ok {
			return n
		}
		ids[v] = len(sub.Values)
		sub.Values = append(sub.Values, p.Values[v])
		return ids[v]
	}
	for _, v := range inputs {
		sub.Inputs = append(sub.Inputs, ckksir.IO{Name: ValueName(p, v), Value: id(v)})
	}
	for _, ins := range p.Instrs[start:end] {
		c := ins
		c.In = make([]int, len(ins.In))
		for i, a := range ins.In {
			c.In[i] = id(a)
		}
		c.Out = id(ins.Out)
		sub.Instrs = append(sub.Instrs, c)
		if ins.Op == ckksir.OpBootstrap {
			// Only a segment that bootstraps carries the parameters (and
			// so needs bootstrapping keys).
			sub.Boot = p.Boot
		}
	}
	for _, v := range outputs {
		sub.Outputs = append(sub.Outputs, ckksir.IO{Name: ValueName(p, v), Value: id(v)})
	}
	return sub
}
