package ckks

import (
	"fmt"
	"os"
	"runtime/debug"
	"sort"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// bsgsLogRatio is the log2 of the baby-step / giant-step ratio of every
// linear transformation (Lattigo's LogBabyStepGianStepRatio): the split
// N1 is the largest power of two for which the number of baby steps stays
// within twice the number of giant steps. Baby steps are hoisted (one
// decomposition shared by all), giant steps each pay a full key switch, so
// leaning towards baby steps is cheaper at a modest cost in Galois keys. The
// client derives the Galois keys from the same constant, so the two always
// agree.
const bsgsLogRatio = 1

// matrixPlan is one matrix of one linear instruction, as the runtime applies
// it: to the ciphertext of value input, at level level, by its full-slot
// diagonals diags (sorted indices in [0, Slots)).
type matrixPlan struct {
	instr  int
	input  int
	level  int
	diags  []int
	galEls []uint64
}

// plan is what both sides derive from a program: the Lattigo parameters, the
// full-slot diagonals of every matrix and the evaluation keys they need.
type plan struct {
	prog      *ckksir.Program
	params    hefloat.Parameters
	slots     int
	matrices  []matrixPlan
	galEls    []uint64 // sorted union over all matrices, identity excluded
	needRelin bool
	// galLevel is, per Galois element, the highest level a ciphertext has
	// when the program rotates it by that element; relinLevel the same for
	// relinearization. Keys are generated at exactly these levels (a key
	// over fewer primes is smaller and switches faster), which rotations
	// used only deep in the circuit make much cheaper.
	galLevel   map[uint64]int
	relinLevel int

	// boot is the bootstrapping parameters (nil when the program has no
	// Boot); needBoot is set when the program bootstraps, bootGalEls are
	// the Galois elements of the bootstrapping keys, sorted, and
	// bootGalLevel the level each of their keys is generated at.
	boot         *bootstrapping.Parameters
	needBoot     bool
	bootGalEls   []uint64
	bootGalLevel map[uint64]int
}

// where names instruction i for error messages.
func where(p *ckksir.Program, i int) string {
	ins := &p.Instrs[i]
	if ins.Layer != "" {
		return fmt.Sprintf("instruction %d (%s, layer %s)", i, ins.Op, ins.Layer)
	}
	return fmt.Sprintf("instruction %d (%s)", i, ins.Op)
}

// newParams converts the program's parameters into Lattigo's, on the
// standard ring (N/2 complex slots, real values encoded with a zero
// imaginary part) with the uniform ternary secret, or the ternary secret of
// Hamming weight secretWeight when it is positive.
func newParams(p ckksir.Params, secretWeight int) (params hefloat.Parameters, err error) {
	err = protect("parameters", func() error {
		var e error
		params, e = hefloat.NewParametersFromLiteral(hefloat.ParametersLiteral{
			LogN:            p.LogN,
			LogQ:            p.LogQ,
			LogP:            p.LogP,
			Xs:              secretDistribution(secretWeight),
			LogDefaultScale: p.LogScale,
			RingType:        ring.Standard,
		})
		return e
	})
	if err != nil {
		return params, fmt.Errorf("ckks: Lattigo refuses the parameters %s: %w", p, err)
	}
	if params.MaxSlots() != p.Slots() {
		return params, fmt.Errorf("ckks: Lattigo gives %d slots for %s, the program expects %d", params.MaxSlots(), p, p.Slots())
	}
	if params.MaxLevel() != p.MaxLevel() {
		return params, fmt.Errorf("ckks: Lattigo gives max level %d for %s, the program expects %d", params.MaxLevel(), p, p.MaxLevel())
	}
	return params, nil
}

// newPlan verifies the program and derives its plan.
func newPlan(p *ckksir.Program) (*plan, error) {
	if p == nil {
		return nil, fmt.Errorf("ckks: nil program")
	}
	if err := ckksir.Verify(p); err != nil {
		return nil, fmt.Errorf("ckks: %w", err)
	}
	weight := 0
	if p.Boot != nil {
		weight = p.Boot.SecretWeight
	}
	params, err := newParams(p.Params, weight)
	if err != nil {
		return nil, err
	}
	pl := &plan{prog: p, params: params, slots: p.Params.Slots(), galLevel: map[uint64]int{}}
	if err := pl.planBoot(); err != nil {
		return nil, err
	}
	union := map[uint64]bool{}
	identity := params.GaloisElement(0)
	for i := range p.Instrs {
		ins := &p.Instrs[i]
		switch ins.Op {
		case ckksir.OpLinear:
			if p.Packing == ckksir.PackFeature {
				continue // scalar multiply-accumulates: no rotation
			}
			level := p.Values[ins.Out].Level + 1
			for k, m := range ins.Matrices {
				mp := matrixPlan{instr: i, input: ins.In[k], level: level}
				mp.diags = fullDiagonalIndices(m, p.BlockSize, pl.slots)
				err := protect(where(p, i), func() error {
					for _, g := range hefloat.GaloisElementsForLinearTransformation(params, hefloat.LinearTransformationParameters{
						DiagonalsIndexList:       mp.diags,
						Level:                    level,
						LogDimensions:            params.LogMaxDimensions(),
						LogBabyStepGianStepRatio: bsgsLogRatio,
					}) {
						if g != identity {
							mp.galEls = append(mp.galEls, g)
						}
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
				sort.Slice(mp.galEls, func(a, b int) bool { return mp.galEls[a] < mp.galEls[b] })
				for _, g := range mp.galEls {
					union[g] = true
					pl.galLevel[g] = max(pl.galLevel[g], level)
				}
				pl.matrices = append(pl.matrices, mp)
			}
		case ckksir.OpMul:
			pl.needRelin = true
			for _, a := range ins.In {
				pl.relinLevel = max(pl.relinLevel, p.Values[a].Level)
			}
		case ckksir.OpPoly:
			if ins.Poly.Degree() >= 2 {
				pl.needRelin = true
				pl.relinLevel = max(pl.relinLevel, p.Values[ins.In[0]].Level)
			}
		}
	}
	for g := range union {
		pl.galEls = append(pl.galEls, g)
	}
	sort.Slice(pl.galEls, func(a, b int) bool { return pl.galEls[a] < pl.galEls[b] })
	return pl, nil
}

// entryRotation is the rotation, within a block of size bs, that brings
// input slot (j+d) mod bs to output slot j: a value in (-bs, bs). For the
// entries ckksir allows (j+d inside the block) it is d; an entry that wraps
// inside its block is honoured with the matching rotation rather than
// silently read from the neighbouring block.
func entryRotation(d, j, bs int) int {
	src := (j + d) % bs
	if src < 0 {
		src += bs
	}
	return src - j
}

// fullIndex maps an in-block rotation to Lattigo's full-slot diagonal index.
func fullIndex(r, slots int) int {
	r %= slots
	if r < 0 {
		r += slots
	}
	return r
}

// entry is one non-zero coefficient of a block matrix: output slot j of
// every block, times v.
type entry struct {
	j int
	v float64
}

// blockEntries regroups the non-zero entries of a block matrix by the
// full-slot diagonal that carries them: position j of diagonal k is the
// coefficient of input slot j+k in output slot j of every block. The
// diagonals are stored compactly (the evaluator keeps them to encode at
// each use).
func blockEntries(m *ckksir.Matrix, bs, slots int) map[int]ckksir.Diagonal {
	byDiag := map[int][]entry{}
	for d, diag := range m.Diagonals {
		diag.Each(func(j int, v float64) {
			if v != 0 {
				k := fullIndex(entryRotation(d, j, bs), slots)
				byDiag[k] = append(byDiag[k], entry{j, v})
			}
		})
	}
	out := make(map[int]ckksir.Diagonal, len(byDiag))
	dense := make([]float64, bs)
	for k, es := range byDiag {
		clear(dense)
		for _, e := range es {
			dense[e.j] += e.v
		}
		out[k] = ckksir.NewDiagonal(dense)
	}
	return out
}

// fullDiagonalIndices lists, sorted, the full-slot diagonals with a
// non-zero entry; a matrix without any non-zero entry keeps diagonal 0.
func fullDiagonalIndices(m *ckksir.Matrix, bs, slots int) []int {
	byDiag := blockEntries(m, bs, slots)
	if len(byDiag) == 0 {
		return []int{0}
	}
	idx := make([]int, 0, len(byDiag))
	for k := range byDiag {
		idx = append(idx, k)
	}
	sort.Ints(idx)
	return idx
}

// expandDiagonal writes into out (Slots values) a full-slot diagonal of a
// block matrix applied identically in every one of the batch blocks:
// out[b*bs+j] is the coefficient of input slot b*bs+j+r in output slot
// b*bs+j, r the diagonal's rotation.
func expandDiagonal(diag ckksir.Diagonal, bs, batch int, out []float64) {
	clear(out)
	diag.Runs(func(start int, vals []float64) {
		for b := 0; b < batch; b++ {
			copy(out[b*bs+start:], vals)
		}
	})
}

// expandMatrix returns every full-slot diagonal of a block matrix (the
// reference form Lattigo's own encoder takes; the evaluator encodes one
// diagonal at a time instead).
func expandMatrix(m *ckksir.Matrix, bs, batch, slots int) map[int][]float64 {
	full := map[int][]float64{}
	for k, diag := range blockEntries(m, bs, slots) {
		full[k] = make([]float64, slots)
		expandDiagonal(diag, bs, batch, full[k])
	}
	if len(full) == 0 {
		full[0] = make([]float64, slots)
	}
	return full
}

// replicate repeats a block vector (nil: zeros) in every block.
func replicate(v []float64, bs, batch int) []float64 {
	out := make([]float64, bs*batch)
	if v == nil {
		return out
	}
	for b := 0; b < batch; b++ {
		copy(out[b*bs:(b+1)*bs], v)
	}
	return out
}

// recovered runs f, turning a panic (Lattigo reports many misuses by
// panicking) into an error. With CIPHERCUT_PANIC_STACK set in the
// environment it also prints the panic's stack to stderr (for debugging).
func recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Lattigo panicked: %v", r)
			if os.Getenv("CIPHERCUT_PANIC_STACK") != "" {
				debug.PrintStack()
			}
		}
	}()
	return f()
}

// protect is recovered with the error of a panic naming what was being
// done; f's own errors pass through unchanged.
func protect(what string, f func() error) (err error) {
	panicked := true
	err = recovered(func() error {
		e := f()
		panicked = false
		return e
	})
	if err != nil && panicked {
		return fmt.Errorf("ckks: %s: %w", what, err)
	}
	return err
}

// keyLevel is the level the key for Galois element g (0: the
// relinearization key) is generated at.
func (pl *plan) keyLevel(g uint64) int {
	if g == 0 {
		return pl.relinLevel
	}
	return pl.galLevel[g]
}

// keyBytes is the size of a switching key at levelQ over the parameters'
// P primes: a gadget ciphertext of ceil((levelQ+1)/|P|) RNS digits, each
// two polynomials over the levelQ+1 Q primes and the P primes, N
// coefficients of 8 bytes each (headers are negligible).
func keyBytes(params hefloat.Parameters, levelQ int) int64 {
	levelP := params.MaxLevelP()
	digits := int64(params.BaseRNSDecompositionVectorSize(levelQ, levelP))
	return digits * 2 * int64(params.N()) * int64(levelQ+1+levelP+1) * 8
}

// encodedBytes is the memory matrix mp takes pre-encoded: one plaintext per
// diagonal over the Q primes of its level and the P primes.
func (pl *plan) encodedBytes(mp matrixPlan) int64 {
	return int64(len(mp.diags)) * int64(pl.params.N()) * int64(mp.level+1+pl.params.MaxLevelP()+1) * 8
}

// lazyMatrices chooses which matrices (indexed as pl.matrices) are encoded
// at each use rather than kept encoded, so that the kept ones take at most
// budget bytes (a negative budget keeps all): the largest go first, since
// encoding costs about the same per diagonal whatever the matrix while the
// memory it saves grows with it.
func (pl *plan) lazyMatrices(budget int64) []bool {
	lazy := make([]bool, len(pl.matrices))
	if budget < 0 {
		return lazy
	}
	order := make([]int, len(pl.matrices))
	total := int64(0)
	for i, mp := range pl.matrices {
		order[i] = i
		total += pl.encodedBytes(mp)
	}
	sort.SliceStable(order, func(a, b int) bool {
		return pl.encodedBytes(pl.matrices[order[a]]) > pl.encodedBytes(pl.matrices[order[b]])
	})
	for _, i := range order {
		if total <= budget {
			break
		}
		lazy[i] = true
		total -= pl.encodedBytes(pl.matrices[i])
	}
	return lazy
}

// laneBytes estimates one evaluation lane's working memory (see
// KeyPlan.LaneBytes).
func (pl *plan) laneBytes() int64 {
	qp := pl.qpBytes()
	babies, group := pl.widestBSGS()
	cts := int64(pl.laneCiphertexts())
	// Two evaluators' buffers: the lane's own, and the evaluator's base
	// one (counted once per lane: over by one per extra lane).
	return int64(babies)*2*qp + int64(group)*qp + cts*2*qp + 2*pl.evaluatorBytes()
}

// evaluatorBytes is the memory of one Lattigo evaluator's buffers
// (rlwe.NewEvaluatorBuffers and ckks's own, v5.0.7): six polynomials over
// QP, one over QP per Q prime for the key-switching decomposition (it is
// sized for a P basis of one prime), a degree-2 ciphertext and four more
// polynomials over Q, about three over QP for the basis extender and the
// decomposer, and the encoder's tables (2N complex numbers). At N=2^16 with 29 Q and 8 P primes that is about
// 0.7 GiB, measured in a heap profile of tiny-gpt's block 1 attention;
// counting "about 8 polynomials" instead left the live heap 1.6 GB above
// the plan, at the collector's limit.
func (pl *plan) evaluatorBytes() int64 {
	q := int64(pl.params.N()) * int64(pl.params.MaxLevelQ()+1) * 8
	return int64(9+pl.params.MaxLevelQ()+1)*pl.qpBytes() + 7*q + 32*int64(pl.params.N())
}

// laneCiphertexts is the number of ciphertexts a lane holds at most: the
// values alive at once plus 8 pooled temporaries. The lane's pool keeps no
// more (laneBytes counts this many).
func (pl *plan) laneCiphertexts() int {
	live, maxLive := map[int]bool{}, 0
	last := make([]int, len(pl.prog.Values))
	for i, ins := range pl.prog.Instrs {
		for _, a := range ins.In {
			last[a] = i
		}
	}
	for _, o := range pl.prog.Outputs {
		last[o.Value] = len(pl.prog.Instrs)
	}
	for _, in := range pl.prog.Inputs {
		live[in.Value] = true
	}
	for i, ins := range pl.prog.Instrs {
		live[ins.Out] = true
		maxLive = max(maxLive, len(live))
		for v := range live {
			if last[v] <= i {
				delete(live, v)
			}
		}
	}
	return maxLive + 8
}

// workerBytes estimates the memory each core beyond the first adds to a
// lane (see KeyPlan.WorkerBytes): its evaluator's buffers
// (evaluatorBytes) and its scratch for diagonals encoded at use (one giant
// step's worth).
func (pl *plan) workerBytes() int64 {
	_, group := pl.widestBSGS()
	return int64(group)*pl.qpBytes() + pl.evaluatorBytes()
}

// qpBytes is the size of one polynomial over every Q and P prime.
func (pl *plan) qpBytes() int64 {
	return int64(pl.params.N()) * int64(pl.params.MaxLevelQ()+1+pl.params.MaxLevelP()+1) * 8
}

// widestBSGS is the most baby steps of any matrix's baby-step giant-step
// split and the most diagonals any of its giant steps groups.
func (pl *plan) widestBSGS() (babies, group int) {
	for _, mp := range pl.matrices {
		n1 := he.FindBestBSGSRatio(mp.diags, pl.slots, bsgsLogRatio)
		index, _, rot := he.BSGSIndex(mp.diags, pl.slots, n1)
		babies = max(babies, len(rot))
		for _, g := range index {
			group = max(group, len(g))
		}
	}
	return babies, group
}
