package ckks

import (
	"math/bits"
	"slices"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// InstrStats counts, for every instruction of a program, the operations the
// Evaluator performs on one ciphertext lane: the full-slot diagonals,
// hoisted baby steps and giant steps of each linear transformation exactly
// as the runtime's plan splits them (the same Lattigo baby-step giant-step
// choice, ratio bsgsLogRatio), the Paterson-Stockmeyer products of each
// polynomial, rescales and additions. It generates no key and encodes
// nothing; the counts feed package cost. Every diagonal is taken to stay
// encoded between uses (InstrStatsWithin counts those encoded at each use).
func InstrStats(p *ckksir.Program) ([]cost.OpCounts, error) {
	return InstrStatsWithin(p, -1)
}

// InstrStatsWithin is InstrStats for an evaluator keeping budget bytes of
// encoded diagonals (NewEvaluatorWithBudget; -1: all of them): the
// diagonals of the matrices it encodes at each use count in
// OpCounts.Encodes.
func InstrStatsWithin(p *ckksir.Program, budget int64) ([]cost.OpCounts, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	byInstr := map[int][]matrixPlan{}
	lazy := pl.lazyMatrices(budget)
	encodes := make([]int, len(p.Instrs))
	for i, mp := range pl.matrices {
		byInstr[mp.instr] = append(byInstr[mp.instr], mp)
		if lazy[i] {
			encodes[mp.instr] += len(mp.diags)
		}
	}
	rots := rotationsByGaloisElement(pl)
	feature := p.Packing == ckksir.PackFeature
	out := make([]cost.OpCounts, len(p.Instrs))
	for i := range p.Instrs {
		ins := &p.Instrs[i]
		c := &out[i]
		c.Op, c.Layer = ins.Op.String(), ins.Layer
		c.LevelOut = p.Values[ins.Out].Level
		c.LevelIn = p.Params.MaxLevel()
		for _, a := range ins.In {
			c.LevelIn = min(c.LevelIn, p.Values[a].Level)
		}
		c.Ciphertexts = 1
		if feature {
			c.Ciphertexts = p.Values[ins.Out].Layout.Size()
		}
		switch ins.Op {
		case ckksir.OpLinear:
			c.Rescales = c.Ciphertexts
			if ins.Bias != nil {
				c.PlainAdds = c.Ciphertexts
			}
			if feature {
				for _, m := range ins.Dense {
					c.ScalarMults += m.NonZeros()
				}
				break
			}
			c.Adds = len(ins.Matrices) - 1
			for _, mp := range byInstr[i] {
				c.Matrices++
				c.Diagonals += len(mp.diags)
				c.Encodes = encodes[i]
				n1 := he.FindBestBSGSRatio(mp.diags, pl.slots, bsgsLogRatio)
				index, _, rotN2 := he.BSGSIndex(mp.diags, pl.slots, n1)
				babies := 0
				for _, r := range rotN2 {
					if r != 0 {
						babies++
					}
				}
				c.BabySteps += babies
				for _, g := range mp.galEls {
					r := rots[g]
					if r > pl.slots/2 {
						r -= pl.slots // left rotations as negative
					}
					if !slices.Contains(c.Rotations, r) {
						c.Rotations = append(c.Rotations, r)
					}
				}
				slices.Sort(c.Rotations)
				c.Temporaries = max(c.Temporaries, babies)
				for g := range index {
					if g != 0 {
						c.GiantSteps++
					}
				}
			}
		case ckksir.OpPoly:
			pol := ins.Poly
			c.PolyDegree = pol.Degree()
			if pol.A != -1 || pol.B != 1 {
				c.ScalarMults++
				c.PlainAdds++
				c.Rescales++
			}
			if pol.Degree() >= 1 {
				odd, even := false, false
				for k, v := range pol.Coeffs {
					if v != 0 {
						odd, even = odd || k%2 == 1, even || k%2 == 0
					}
				}
				ns, powers := polyProducts(pol.Degree(), odd, even)
				c.NonScalarMults = ns
				c.Rescales += ns
				c.ScalarMults += pol.Degree() + 1
				c.Temporaries = powers
			}
			c.PlainAdds++
			c.NonScalarMults *= c.Ciphertexts
			c.ScalarMults *= c.Ciphertexts
			c.Rescales *= c.Ciphertexts
			c.PlainAdds *= c.Ciphertexts
		case ckksir.OpAdd:
			c.Adds = c.Ciphertexts
		case ckksir.OpMul:
			c.NonScalarMults, c.Rescales = c.Ciphertexts, c.Ciphertexts
		case ckksir.OpAddConst:
			c.PlainAdds = c.Ciphertexts
		case ckksir.OpMulConst:
			if feature {
				c.ScalarMults = c.Ciphertexts
			} else {
				c.PlainMults = 1
			}
			c.Rescales = c.Ciphertexts
		case ckksir.OpBootstrap:
			c.Bootstraps = c.Ciphertexts
		}
	}
	return out, nil
}

// polyProducts counts the ciphertext products of Lattigo's evaluation of a
// Chebyshev polynomial of degree d (he.EvaluatePolynomial): the power basis
// (powers of two up to 2^(logDegree-1), then the baby-step powers below
// 2^logSplit of the polynomial's parity, each power T_n = 2·T_a·T_b - T_|a-b|
// one product) and the giant-step products of the Paterson-Stockmeyer
// recursion. It also returns the number of powers held.
func polyProducts(d int, odd, even bool) (products, powers int) {
	have := map[int]bool{1: true}
	var gen func(n int)
	gen = func(n int) {
		if have[n] {
			return
		}
		a, b := he.SplitDegree(n)
		gen(a)
		gen(b)
		have[n] = true
		products++
		if c := a - b; c != 0 {
			gen(max(c, -c))
		}
	}
	logDegree := bits.Len64(uint64(d))
	logSplit := bignum.OptimalSplit(logDegree)
	gen(1 << (logDegree - 1))
	for i := (1 << logSplit) - 1; i > 2; i-- {
		if !(even || odd) || (i&1 == 0 && even) || (i&1 == 1 && odd) {
			gen(i)
		}
	}
	products += giantProducts(d, d, logSplit, true)
	return products, len(have)
}

// giantProducts counts the products of the Paterson-Stockmeyer recursion
// (he's recursePS) on a polynomial of degree d.
func giantProducts(d, maxDeg, logSplit int, lead bool) int {
	if d < 1<<logSplit {
		if lead && logSplit > 1 && maxDeg > (1<<bits.Len64(uint64(maxDeg)))-(1<<(logSplit-1)) {
			ls := bignum.OptimalSplit(bits.Len64(uint64(d)))
			if ls < logSplit {
				return giantProducts(d, maxDeg, ls, lead)
			}
		}
		return 0
	}
	next := 1 << logSplit
	for next < (d>>1)+1 {
		next <<= 1
	}
	rMax := next - 1
	if maxDeg != d {
		rMax = maxDeg - (d - next + 1)
	}
	return giantProducts(d-next, maxDeg, logSplit, lead) + 1 + giantProducts(next-1, rMax, logSplit, false)
}

// rotationsByGaloisElement maps the Galois elements of the plan's matrices
// to their slot rotations, walking the powers of the generator once.
func rotationsByGaloisElement(pl *plan) map[uint64]int {
	want := map[uint64]bool{}
	for _, g := range pl.galEls {
		want[g] = true
	}
	out := map[uint64]int{}
	mod := pl.params.RingQ().NthRoot()
	gen := pl.params.GaloisElement(1)
	g := uint64(1)
	for r := 0; r < pl.slots && len(out) < len(want); r++ {
		if want[g] {
			out[g] = r
		}
		g = g * gen % mod
	}
	return out
}
