package ckksir

import (
	"fmt"
	"math"
)

// VerifyInterface checks a program's interface (see Interface): what
// Verify checks of its parameters, values, inputs and outputs, for a
// program without instructions whose outputs are taken as given.
func VerifyInterface(p *Program) error {
	if err := verifyHeader(p); err != nil {
		return err
	}
	if len(p.Instrs) != 0 {
		return fmt.Errorf("ckks program: an interface has no instructions, this one has %d", len(p.Instrs))
	}
	for _, io := range append(append([]IO(nil), p.Inputs...), p.Outputs...) {
		if io.Value < 0 || io.Value >= len(p.Values) {
			return fmt.Errorf("ckks program: %s names value v%d of %d", io.Name, io.Value, len(p.Values))
		}
	}
	return nil
}

// verifyHeader checks the parameters, packing, bootstrapping parameters
// and every value's layout and level.
func verifyHeader(p *Program) error {
	if p.Params.LogN < 10 || p.Params.LogN > 17 || len(p.Params.LogQ) == 0 {
		return fmt.Errorf("ckks program: implausible parameters %s", p.Params)
	}
	feature := p.Packing == PackFeature
	switch {
	case p.Packing > PackFeature:
		return fmt.Errorf("ckks program: unknown packing %s", p.Packing)
	case feature && (p.BlockSize != 1 || p.Batch != p.Params.Slots()):
		return fmt.Errorf("ckks program: feature packing with %d blocks of %d slots, want %d of 1", p.Batch, p.BlockSize, p.Params.Slots())
	}
	if p.BlockSize <= 0 || p.Batch <= 0 || p.BlockSize*p.Batch != p.Params.Slots() {
		return fmt.Errorf("ckks program: %d blocks of %d slots do not fill %d slots", p.Batch, p.BlockSize, p.Params.Slots())
	}
	if p.Boot != nil {
		if err := verifyBoot(p.Params, p.Boot); err != nil {
			return err
		}
	}
	for _, v := range p.Values {
		if feature && (v.Layout.Offset != 0 || v.Layout.Slots != nil || v.Layout.Size() <= 0) {
			return fmt.Errorf("ckks program: feature layout %v (want a non-empty contiguous tensor at offset 0)", v.Layout)
		}
		if !feature {
			if err := verifyLayout(v.Layout, p.BlockSize); err != nil {
				return err
			}
		}
		if v.Level < 0 || v.Level > p.Params.MaxLevel() {
			return fmt.Errorf("ckks program: level %d outside [0, %d]", v.Level, p.Params.MaxLevel())
		}
	}
	return nil
}

// Verify checks a program's invariants: values defined once before use,
// inputs of every instruction at a level that can pay for it, layouts inside
// a block, matrix and vector sizes matching the block, batch blocks filling
// the ciphertext. A corrupt or hand-edited plan fails here, not in Lattigo.
func Verify(p *Program) error {
	if err := verifyHeader(p); err != nil {
		return err
	}
	feature := p.Packing == PackFeature
	defined := make([]bool, len(p.Values))
	check := func(id int, what string) error {
		if id < 0 || id >= len(p.Values) {
			return fmt.Errorf("ckks program: %s names value v%d of %d", what, id, len(p.Values))
		}
		return nil
	}
	for _, in := range p.Inputs {
		if err := check(in.Value, "input "+in.Name); err != nil {
			return err
		}
		defined[in.Value] = true
	}
	for i, ins := range p.Instrs {
		where := fmt.Sprintf("instruction %d (%s, %s)", i, ins.Op, ins.Layer)
		if err := check(ins.Out, where); err != nil {
			return err
		}
		if defined[ins.Out] {
			return fmt.Errorf("ckks program: %s redefines v%d", where, ins.Out)
		}
		minIn := p.Params.MaxLevel()
		for _, a := range ins.In {
			if err := check(a, where); err != nil {
				return err
			}
			if !defined[a] {
				return fmt.Errorf("ckks program: %s reads v%d before it is defined", where, a)
			}
			minIn = min(minIn, p.Values[a].Level)
		}
		cost := 0
		switch ins.Op {
		case OpLinear:
			if feature {
				if len(ins.Dense) != len(ins.In) || len(ins.In) == 0 || ins.Matrices != nil {
					return fmt.Errorf("ckks program: %s has %d dense matrices for %d inputs", where, len(ins.Dense), len(ins.In))
				}
				rows := p.Values[ins.Out].Layout.Size()
				for k, m := range ins.Dense {
					if m == nil || m.Rows != rows || m.Cols != p.Values[ins.In[k]].Layout.Size() || len(m.Data) != m.Rows*m.Cols {
						return fmt.Errorf("ckks program: %s has a malformed dense matrix %d", where, k)
					}
				}
				cost = 1
				break
			}
			if len(ins.Matrices) != len(ins.In) || len(ins.In) == 0 || ins.Dense != nil {
				return fmt.Errorf("ckks program: %s has %d matrices for %d inputs", where, len(ins.Matrices), len(ins.In))
			}
			for _, m := range ins.Matrices {
				if m == nil {
					return fmt.Errorf("ckks program: %s has a nil matrix", where)
				}
				for d, diag := range m.Diagonals {
					if d <= -p.BlockSize || d >= p.BlockSize {
						return fmt.Errorf("ckks program: %s has a malformed diagonal %d: outside the block", where, d)
					}
					if err := diag.check(p.BlockSize); err != nil {
						return fmt.Errorf("ckks program: %s has a malformed diagonal %d: %v", where, d, err)
					}
				}
			}
			cost = 1
		case OpPoly:
			if ins.Poly == nil || len(ins.Poly.Coeffs) == 0 || len(ins.In) != 1 {
				return fmt.Errorf("ckks program: %s lacks its polynomial", where)
			}
			cost = ins.Poly.Depth()
		case OpMul, OpMulConst:
			cost = 1
		case OpBootstrap:
			if p.Boot == nil {
				return fmt.Errorf("ckks program: %s bootstraps, but the program has no bootstrapping parameters", where)
			}
			if len(ins.In) != 1 {
				return fmt.Errorf("ckks program: %s has %d inputs, want 1", where, len(ins.In))
			}
			if frac, _ := math.Frexp(ins.Bound); ins.Bound != 0 && (ins.Bound < 1 || math.IsInf(ins.Bound, 0) || frac != 0.5) {
				return fmt.Errorf("ckks program: %s has the message bound %g; want 0 or a power of two of at least 1", where, ins.Bound)
			}
			if l := p.Values[ins.Out].Level; l != p.BootstrapLevel() {
				return fmt.Errorf("ckks program: %s outputs level %d, a bootstrap outputs level %d", where, l, p.BootstrapLevel())
			}
			if !p.Values[ins.In[0]].Layout.Equal(p.Values[ins.Out].Layout) {
				return fmt.Errorf("ckks program: %s maps layout %v to %v; a bootstrap keeps the layout", where,
					p.Values[ins.In[0]].Layout, p.Values[ins.Out].Layout)
			}
		case OpAdd, OpAddConst:
		default:
			return fmt.Errorf("ckks program: %s has an unknown op", where)
		}
		want := p.BlockSize
		if feature {
			want = p.Values[ins.Out].Layout.Size()
		}
		for _, vec := range [][]float64{ins.Bias, ins.Vector} {
			if vec != nil && len(vec) != want {
				return fmt.Errorf("ckks program: %s has a vector of %d values, want %d", where, len(vec), want)
			}
		}
		if feature && (ins.Op == OpAdd || ins.Op == OpMul) && len(ins.In) == 2 && (p.Values[ins.In[0]].Layout.Size() != p.Values[ins.Out].Layout.Size() ||
			p.Values[ins.In[1]].Layout.Size() != p.Values[ins.Out].Layout.Size()) ||
			feature && (ins.Op == OpPoly || ins.Op == OpAddConst || ins.Op == OpMulConst) && len(ins.In) == 1 &&
				p.Values[ins.In[0]].Layout.Size() != p.Values[ins.Out].Layout.Size() {
			return fmt.Errorf("ckks program: %s maps ciphertext counts that differ", where)
		}
		if !feature && ins.Op != OpLinear {
			// Slotwise instructions keep every element in its slot.
			for _, a := range ins.In {
				if !p.Values[a].Layout.SameSlots(p.Values[ins.Out].Layout) {
					return fmt.Errorf("ckks program: %s maps layout %v to %v; a slotwise instruction keeps the layout", where,
						p.Values[a].Layout, p.Values[ins.Out].Layout)
				}
			}
		}
		if ins.Op != OpBootstrap && p.Values[ins.Out].Level != minIn-cost {
			return fmt.Errorf("ckks program: %s outputs level %d, want %d", where, p.Values[ins.Out].Level, minIn-cost)
		}
		defined[ins.Out] = true
	}
	for _, out := range p.Outputs {
		if err := check(out.Value, "output "+out.Name); err != nil {
			return err
		}
		if !defined[out.Value] {
			return fmt.Errorf("ckks program: output %q is never computed", out.Name)
		}
	}
	return nil
}

// verifyLayout checks that a slot-packed layout lies inside a block of
// blockSize slots and, when scattered, has one distinct slot per element.
func verifyLayout(l Layout, blockSize int) error {
	n := l.Size()
	if l.Slots == nil {
		if l.Offset < 0 || n < 0 || l.Offset+n > blockSize {
			return fmt.Errorf("ckks program: layout %v outside a block of %d", l, blockSize)
		}
		return nil
	}
	if len(l.Slots) != n {
		return fmt.Errorf("ckks program: scattered layout of shape %v has %d slots, want %d", l.Shape, len(l.Slots), n)
	}
	used := make(map[int]bool, n)
	for k, s := range l.Slots {
		if s < 0 || s >= blockSize {
			return fmt.Errorf("ckks program: layout of shape %v puts element %d at slot %d, outside a block of %d", l.Shape, k, s, blockSize)
		}
		if used[s] {
			return fmt.Errorf("ckks program: layout of shape %v puts two elements at slot %d", l.Shape, s)
		}
		used[s] = true
	}
	return nil
}

// verifyBoot checks that bootstrapping parameters are complete and
// plausible for the program's parameters; Lattigo checks the rest when the
// runtime instantiates them.
func verifyBoot(params Params, b *BootParams) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ckks program: bootstrapping parameters %s: %s", b, fmt.Sprintf(format, args...))
	}
	primes := func(what string, logQ []int, lo, hi int) error {
		for _, q := range logQ {
			if q < lo || q > hi {
				return bad("a %s prime of %d bits (want %d to %d)", what, q, lo, hi)
			}
		}
		return nil
	}
	switch {
	case b.SecretWeight < 0 || b.SecretWeight > 1<<params.LogN:
		return bad("secret Hamming weight %d outside [0, N]", b.SecretWeight)
	case b.EphemeralWeight < 0 || b.EphemeralWeight > 1<<params.LogN:
		return bad("ephemeral Hamming weight %d outside [0, N]", b.EphemeralWeight)
	case len(b.CoeffsToSlotsLogQ) == 0 || len(b.CoeffsToSlotsLogQ) > params.LogN-1:
		return bad("%d CoeffsToSlots levels (want 1 to LogN-1 = %d)", len(b.CoeffsToSlotsLogQ), params.LogN-1)
	case len(b.SlotsToCoeffsLogQ) == 0 || len(b.SlotsToCoeffsLogQ) > params.LogN-1:
		return bad("%d SlotsToCoeffs levels (want 1 to LogN-1 = %d)", len(b.SlotsToCoeffsLogQ), params.LogN-1)
	case len(b.LogP) == 0:
		return bad("no key-switching prime")
	case b.K < 1 || b.Mod1Degree < 2*(b.K-1) || b.Mod1Degree > 1<<10 || b.DoubleAngle < 0 || b.DoubleAngle > 16 ||
		b.Mod1InvDegree < 0 || b.Mod1InvDegree > 1<<10:
		return bad("modular reduction K=%d degree %d double angle %d inverse degree %d (want K >= 1, 2K-2 <= degree <= 1024)",
			b.K, b.Mod1Degree, b.DoubleAngle, b.Mod1InvDegree)
	case b.LogMessageRatio < 1 || len(params.LogQ) == 0 || params.LogQ[0]-params.LogScale < b.LogMessageRatio:
		return bad("message ratio 2^%d does not fit between the scale 2^%d and Q[0] (want 1 <= ratio <= LogQ[0]-LogScale)",
			b.LogMessageRatio, params.LogScale)
	}
	if err := primes("CoeffsToSlots", b.CoeffsToSlotsLogQ, 20, 61); err != nil {
		return err
	}
	if err := primes("SlotsToCoeffs", b.SlotsToCoeffsLogQ, 20, 61); err != nil {
		return err
	}
	if err := primes("modular reduction", []int{b.EvalModLogScale}, 20, 61); err != nil {
		return err
	}
	return primes("key-switching", b.LogP, 20, 61)
}

// Interface returns p's interface: its parameters, packing, batch and
// bootstrapping parameters, and its inputs and outputs with their values
// (layout, level, error bound), renumbered in that order; no instruction
// and no other value. It is what encrypting p's inputs and decrypting its
// outputs take, and reveals nothing of p's weights (matrices, vectors,
// polynomial coefficients).
func Interface(p *Program) *Program {
	q := &Program{Params: p.Params, Packing: p.Packing, BlockSize: p.BlockSize, Batch: p.Batch, Boot: p.Boot}
	ids := map[int]int{}
	id := func(v int) int {
		if n, ok := ids[v]; ok {
			return n
		}
		ids[v] = len(q.Values)
		q.Values = append(q.Values, p.Values[v])
		return ids[v]
	}
	for _, io := range p.Inputs {
		q.Inputs = append(q.Inputs, IO{Name: io.Name, Value: id(io.Value)})
	}
	for _, io := range p.Outputs {
		q.Outputs = append(q.Outputs, IO{Name: io.Name, Value: id(io.Value)})
	}
	return q
}
