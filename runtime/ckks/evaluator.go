package ckks

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// Evaluator is the worker's side: it runs one program on ciphertexts with
// the program's public evaluation keys only. Its plaintexts (matrix
// diagonals, biases, constant vectors) are encoded once, by NewEvaluator.
// Run may be called concurrently; SetProgress may not race with Run.
type Evaluator struct {
	plan *plan
	evk  *rlwe.MemEvaluationKeySet
	base *hefloat.Evaluator
	boot *bootstrapping.Evaluator // nil unless the program bootstraps; lanes use copies
	// bootSpare is boot until a lane takes it as its own: the first lane
	// needs no copy (at N=2^16 a copy's buffers are most of a GB).
	bootSpare *bootstrapping.Evaluator
	instrs    []compiled
	scales    []rlwe.Scale // planned scale of every value after its instruction
	lastUse   []int        // last instruction reading each value; len(Instrs) for outputs
	progress  func(Step)
	trace     func(instr int, d time.Duration)
	cpus      int // cores to use; 0 is runtime.NumCPU() (tests set it)
	lanes     int // ciphertexts evaluated at once; 0 is one per core

	mu   sync.Mutex
	idle []*laneState // lane states kept between runs
}

// compiled is one instruction with its pre-encoded plaintexts.
type compiled struct {
	ins      *ckksir.Instr
	where    string
	outLevel int
	outScale rlwe.Scale

	lts      []*linTrans     // linear: one per input
	midScale rlwe.Scale      // linear: scale of the sum before the rescale
	pt       *rlwe.Plaintext // linear/add-const bias, mul-const vector; nil when absent

	// poly: x' = cvScale*x + cvOffset when the interval is not [-1, 1]
	changeVar bool
	cvInt     bool // cvScale is an integer: the product does not rescale
	cvScale   *big.Float
	cvOffset  *big.Float
	hasOdd    bool // some odd-degree coefficient is non-zero
	hasEven   bool // some even-degree coefficient is non-zero
}

// linTrans is one encoded matrix with what the split evaluation needs.
type linTrans struct {
	lt     he.LinearTransformation
	level  int
	babies []int         // non-zero baby-step rotations (pre-rotated once)
	giants []int         // giant-step rotations, sorted
	groups map[int][]int // giant step -> its baby steps

	// lazy: the diagonals are not kept encoded (lt.Vec is nil); each
	// application encodes one giant step's diagonals at a time with
	// encode, trading encoding time for memory.
	lazy   bool
	encode func(ecd *slotEncoder, buf []float64, k, g int, poly ringqp.Poly) error

	mu    sync.Mutex
	parts map[int][]he.LinearTransformation // by number of parts
}

// NewEvaluator verifies the program, checks that evk holds every key it
// needs, and encodes every linear transformation (at the level it runs, with
// the scale that brings its output back exactly to the default scale after
// the rescale) and every bias and constant vector. Encoding runs on all
// cores. When the program bootstraps, evk must hold the bootstrapping keys,
// and the bootstrapping circuit's matrices are encoded too.
func NewEvaluator(p *ckksir.Program, evk *EvaluationKeys) (*Evaluator, error) {
	return NewEvaluatorWithBudget(p, evk, -1)
}

// NewEvaluatorWithBudget is NewEvaluator keeping at most budget bytes of
// encoded matrix diagonals in memory (a negative budget: no limit): the
// largest matrices beyond it are encoded again at each use, one giant step
// at a time (see LazyMatrices).
func NewEvaluatorWithBudget(p *ckksir.Program, evk *EvaluationKeys, budget int64) (*Evaluator, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	if evk == nil || evk.set == nil {
		return nil, fmt.Errorf("ckks: nil evaluation keys")
	}
	params := pl.params
	if err := checkKeys(pl, evk.set); err != nil {
		return nil, err
	}
	e := &Evaluator{plan: pl, evk: evk.set}
	if pl.needBoot {
		if e.boot, err = newBootEvaluator(pl, evk.boot); err != nil {
			return nil, err
		}
	}
	if err := protect("evaluator", func() error {
		e.base = hefloat.NewEvaluator(params, evk.set)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := e.planScales(); err != nil {
		return nil, err
	}
	e.bootSpare = e.boot // planScales was its last use outside a lane
	e.lastUse = make([]int, len(p.Values))
	for i := range e.lastUse {
		e.lastUse[i] = -1
	}
	for i, ins := range p.Instrs {
		for _, a := range ins.In {
			e.lastUse[a] = i
		}
	}
	for _, o := range p.Outputs {
		e.lastUse[o.Value] = len(p.Instrs)
	}

	// Encoding jobs: every matrix diagonal, every vector.
	lazy := pl.lazyMatrices(budget)
	e.instrs = make([]compiled, len(p.Instrs))
	var jobs []encodeJob
	mi := 0
	for i := range p.Instrs {
		ins := &p.Instrs[i]
		c := &e.instrs[i]
		c.ins, c.where = ins, where(p, i)
		c.outLevel = p.Values[ins.Out].Level
		c.outScale = e.scales[ins.Out]
		if p.Packing == ckksir.PackFeature {
			switch ins.Op {
			case ckksir.OpLinear, ckksir.OpMulConst:
				// Scalars are scaled at run time so that the sum lands on
				// outScale·q after one rescale by q.
				c.midScale = c.outScale.Mul(rlwe.NewScale(params.Q()[c.outLevel+1]))
				continue
			case ckksir.OpAddConst:
				continue
			}
		}
		switch ins.Op {
		case ckksir.OpLinear:
			level := c.outLevel + 1
			q := rlwe.NewScale(params.Q()[level])
			c.midScale = c.outScale.Mul(q)
			c.lts = make([]*linTrans, len(ins.Matrices))
			for k := range ins.Matrices {
				mp := pl.matrices[mi]
				mi++
				lt, ltJobs, err := allocMatrix(pl, ins.Matrices[k], mp, c.midScale.Div(e.scales[ins.In[k]]), lazy[mi-1])
				if err != nil {
					return nil, fmt.Errorf("ckks: %s: matrix %d: %w", c.where, k, err)
				}
				c.lts[k] = lt
				jobs = append(jobs, ltJobs...)
			}
			if ins.Bias != nil {
				jobs = append(jobs, e.vectorJob(c, ins.Bias, c.outLevel, c.outScale))
			}
		case ckksir.OpAddConst:
			if ins.Bias != nil {
				in := ins.In[0]
				jobs = append(jobs, e.vectorJob(c, ins.Bias, p.Values[in].Level, e.scales[in]))
			}
		case ckksir.OpMulConst:
			in := ins.In[0]
			level := p.Values[in].Level
			ptScale := c.outScale.Mul(rlwe.NewScale(params.Q()[level])).Div(e.scales[in])
			jobs = append(jobs, e.vectorJob(c, ins.Vector, level, ptScale))
		case ckksir.OpPoly:
			for k, v := range ins.Poly.Coeffs {
				if v != 0 {
					c.hasOdd = c.hasOdd || k%2 == 1
					c.hasEven = c.hasEven || k%2 == 0
				}
			}
			bp := bignum.NewPolynomial(bignum.Chebyshev, ins.Poly.Coeffs, [2]float64{ins.Poly.A, ins.Poly.B})
			if ins.Poly.A != -1 || ins.Poly.B != 1 {
				if !(ins.Poly.B > ins.Poly.A) || math.IsInf(ins.Poly.B-ins.Poly.A, 0) {
					return nil, fmt.Errorf("ckks: %s: empty or infinite interval [%g, %g]", c.where, ins.Poly.A, ins.Poly.B)
				}
				c.changeVar = true
				c.cvScale, c.cvOffset = bp.ChangeOfBasis()
				c.cvInt = c.cvScale.IsInt()
			}
		}
	}
	if err := runJobs(pl, jobs); err != nil {
		return nil, err
	}
	return e, nil
}

// encodeJob encodes one plaintext with a worker's encoder and buffer.
type encodeJob func(ecd *slotEncoder, buf []float64) error

// runJobs runs the encoding jobs on all cores.
func runJobs(pl *plan, jobs []encodeJob) error {
	type scratch struct {
		ecd *slotEncoder
		buf []float64
	}
	err := parallelFor(len(jobs), "encoding the program's plaintexts",
		func() scratch { return scratch{newSlotEncoder(pl.params), make([]float64, 2*pl.slots)} },
		func(s scratch, j int) error { return jobs[j](s.ecd, s.buf) })
	if err != nil {
		return fmt.Errorf("ckks: %w", err)
	}
	return nil
}

// parallelFor runs f(state, i) for i in [0, n) on all cores, each worker
// with its own state from newState, taking the next i as it finishes one;
// a panic becomes an error naming what (see protect).
func parallelFor[S any](n int, what string, newState func() S, f func(s S, i int) error) error {
	workers := min(runtime.NumCPU(), max(1, n))
	errs := make([]error, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			errs[w] = protect(what, func() error {
				s := newState()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return nil
					}
					if err := f(s, i); err != nil {
						return err
					}
				}
			})
		}(w)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkKeys verifies that the key set matches the parameters and holds
// every key the program needs.
func checkKeys(pl *plan, set *rlwe.MemEvaluationKeySet) error {
	for _, mp := range pl.matrices {
		for _, g := range mp.galEls {
			if _, err := set.GetGaloisKey(g); err != nil {
				return fmt.Errorf("ckks: %s: the evaluation keys lack the Galois key %d (rotation by %d)",
					where(pl.prog, mp.instr), g, rotationOf(pl.params, g))
			}
		}
	}
	if err := checkKeySet(pl.keySpec(), set); err != nil {
		return fmt.Errorf("ckks: %w", err)
	}
	return nil
}

// checkKeySet verifies that a key set holds every key of spec, each of the
// shape spec's parameters give it at its level.
func checkKeySet(spec keySetSpec, set *rlwe.MemEvaluationKeySet) error {
	params := spec.params
	if spec.relin {
		rlk, err := set.GetRelinearizationKey()
		if err != nil {
			return fmt.Errorf("the evaluation keys lack the %srelinearization key the program needs", spec.what)
		}
		if !keyMatches(params, &rlk.EvaluationKey, spec.level(0)) {
			return fmt.Errorf("the %srelinearization key does not match the program's parameters", spec.what)
		}
	}
	nthRoot := params.RingQ().NthRoot()
	for _, g := range spec.galEls {
		gk, err := set.GetGaloisKey(g)
		if err != nil {
			return fmt.Errorf("the evaluation keys lack the %sGalois key %d (rotation by %d)", spec.what, g, rotationOf(params, g))
		}
		if gk.NthRoot != nthRoot || gk.GaloisElement != g || !keyMatches(params, &gk.EvaluationKey, spec.level(g)) {
			return fmt.Errorf("the %sGalois key %d does not match the program's parameters", spec.what, g)
		}
	}
	return nil
}

// keyMatches reports whether a switching key has the shape of a key
// generated over params at levelQ and every P prime, without base-two
// decomposition.
func keyMatches(params hefloat.Parameters, k *rlwe.EvaluationKey, levelQ int) bool {
	if k == nil || len(k.Value) == 0 || len(k.Value[0]) == 0 || len(k.Value[0][0]) == 0 {
		return false
	}
	return k.BaseTwoDecomposition == 0 && k.LevelQ() == levelQ && k.LevelP() == params.MaxLevelP() &&
		k.Value[0][0][0].Q.N() == params.N()
}

// rotationOf returns the slot rotation of a Galois element (for messages).
func rotationOf(params hefloat.Parameters, g uint64) int {
	for r := 0; r < params.MaxSlots(); r++ {
		if params.GaloisElement(r) == g {
			return r
		}
	}
	return -1
}

// planScales fixes the scale of every value. Instructions with a plaintext
// operand (linear, mul-const) choose its scale so that their output is
// exactly the default scale after the rescale; polynomials target the
// default scale; a bootstrap's output has the default scale corrected by
// the rounding of its scale-down (see bootScale); add-const keeps its
// input's scale; add takes the larger scale (Lattigo's rule); a ciphertext
// product has the product of its inputs' scales divided by the prime it
// rescales away.
func (e *Evaluator) planScales() error {
	p, params := e.plan.prog, e.plan.params
	def := params.DefaultScale()
	e.scales = make([]rlwe.Scale, len(p.Values))
	for i := range e.scales {
		e.scales[i] = def
	}
	for i, ins := range p.Instrs {
		switch ins.Op {
		case ckksir.OpAdd:
			e.scales[ins.Out] = e.scales[ins.In[0]].Max(e.scales[ins.In[1]])
		case ckksir.OpAddConst:
			e.scales[ins.Out] = e.scales[ins.In[0]]
		case ckksir.OpMul:
			level := min(p.Values[ins.In[0]].Level, p.Values[ins.In[1]].Level)
			e.scales[ins.Out] = e.scales[ins.In[0]].Mul(e.scales[ins.In[1]]).Div(rlwe.NewScale(params.Q()[level]))
		case ckksir.OpBootstrap:
			s, err := e.bootScale(p.Values[ins.In[0]].Level, e.scales[ins.In[0]])
			if err != nil {
				return fmt.Errorf("ckks: %s: %w", where(p, i), err)
			}
			e.scales[ins.Out] = s
		default:
			e.scales[ins.Out] = def
		}
	}
	return nil
}

// vectorJob encodes a block vector, replicated in every block, at a level
// and scale into the instruction's plaintext.
func (e *Evaluator) vectorJob(c *compiled, v []float64, level int, scale rlwe.Scale) encodeJob {
	pl := e.plan
	return func(ecd *slotEncoder, _ []float64) error {
		pt := hefloat.NewPlaintext(pl.params, level)
		pt.Scale = scale
		if err := ecd.Encode(replicate(v, pl.prog.BlockSize, pl.prog.Batch), pt); err != nil {
			return fmt.Errorf("%s: encoding its vector: %w", c.where, err)
		}
		c.pt = pt
		return nil
	}
}

// allocMatrix allocates the baby-step giant-step form of a block matrix at
// the level it runs and returns the jobs that encode its diagonals, one
// diagonal at a time (what hefloat.EncodeLinearTransformation does, without
// expanding the whole matrix to full slots at once): diagonal g+b, for giant
// step g and baby step b, is stored rotated by -g.
func allocMatrix(pl *plan, m *ckksir.Matrix, mp matrixPlan, scale rlwe.Scale, lazy bool) (*linTrans, []encodeJob, error) {
	params := pl.params
	var hlt he.LinearTransformation
	if err := protect("allocating a linear transformation", func() error {
		ltp := hefloat.LinearTransformationParameters{
			DiagonalsIndexList:       mp.diags,
			Level:                    mp.level,
			Scale:                    scale,
			LogDimensions:            params.LogMaxDimensions(),
			LogBabyStepGianStepRatio: bsgsLogRatio,
		}
		if !lazy {
			hlt = he.LinearTransformation(hefloat.NewLinearTransformation(params, ltp))
			return nil
		}
		// The same transformation without its diagonals' memory.
		hlt = he.LinearTransformation{
			MetaData: &rlwe.MetaData{
				PlaintextMetaData:  rlwe.PlaintextMetaData{LogDimensions: ltp.LogDimensions, Scale: scale, IsBatched: true},
				CiphertextMetaData: rlwe.CiphertextMetaData{IsNTT: true, IsMontgomery: true},
			},
			LogBabyStepGianStepRatio: bsgsLogRatio,
			N1:                       he.FindBestBSGSRatio(mp.diags, pl.slots, bsgsLogRatio),
			Level:                    mp.level,
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if hlt.N1 == 0 {
		return nil, nil, fmt.Errorf("linear transformation without baby-step giant-step split")
	}
	index, _, rotN2 := he.BSGSIndex(mp.diags, pl.slots, hlt.N1)
	t := &linTrans{lt: hlt, level: mp.level, groups: index, parts: map[int][]he.LinearTransformation{}, lazy: lazy}
	for _, r := range rotN2 {
		if r != 0 {
			t.babies = append(t.babies, r)
		}
	}
	for g := range index {
		t.giants = append(t.giants, g)
	}
	sort.Ints(t.giants)

	bs, batch, slots := pl.prog.BlockSize, pl.prog.Batch, pl.slots
	byDiag := blockEntries(m, bs, slots)
	t.encode = func(ecd *slotEncoder, buf []float64, k, g int, poly ringqp.Poly) error {
		diag, rotated := buf[:slots], buf[slots:2*slots]
		expandDiagonal(byDiag[k], bs, batch, diag)
		utils.RotateSliceAllocFree(diag, -g&(slots-1), rotated)
		return ecd.Embed(rotated, hlt.MetaData, poly)
	}
	if lazy {
		return t, nil, nil
	}
	var jobs []encodeJob
	for _, g := range t.giants {
		for _, b := range index[g] {
			g, k := g, g+b
			poly, ok := hlt.Vec[k]
			if !ok {
				return nil, nil, fmt.Errorf("diagonal %d not allocated", k)
			}
			jobs = append(jobs, func(ecd *slotEncoder, buf []float64) error {
				return t.encode(ecd, buf, k, g, poly)
			})
		}
	}
	return t, jobs, nil
}

// partsFor splits the transformation into at most k transformations over
// disjoint sets of giant steps, balanced by their number of diagonals; their
// sum is the transformation. The split is cached.
func (t *linTrans) partsFor(k int) []he.LinearTransformation {
	k = min(k, len(t.giants))
	if k <= 1 {
		return []he.LinearTransformation{t.lt}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if parts, ok := t.parts[k]; ok {
		return parts
	}
	total := 0
	for _, g := range t.giants {
		total += len(t.groups[g])
	}
	parts := make([]he.LinearTransformation, 0, k)
	vec := map[int]ringqp.Poly{}
	acc, left := 0, total
	for gi, g := range t.giants {
		for _, b := range t.groups[g] {
			vec[g+b] = t.lt.Vec[g+b]
		}
		acc += len(t.groups[g])
		open := k - len(parts)               // parts still to fill, this one included
		giantsLeft := len(t.giants) - gi - 1 // giant steps not yet assigned
		if open > 1 && giantsLeft >= open-1 && (acc*open >= left || giantsLeft == open-1) {
			sub := t.lt
			sub.Vec = vec
			parts = append(parts, sub)
			vec, left, acc = map[int]ringqp.Poly{}, left-acc, 0
		}
	}
	sub := t.lt
	sub.Vec = vec
	parts = append(parts, sub)
	t.parts[k] = parts
	return parts
}

// laneState is what one goroutine needs to run the program on one
// ciphertext: its evaluators (several when the lane may split linear
// transformations), pre-rotation buffers and a pool of ciphertexts.
type laneState struct {
	evals  []*hefloat.Evaluator // evals[:active] serve the current run
	active int
	poly   *hefloat.PolynomialEvaluator
	prerot []*rlwe.Element[ringqp.Poly]
	rotMap map[int]*rlwe.Element[ringqp.Poly]
	pool   []*rlwe.Ciphertext
	// poolCap bounds the pool (plan.laneCiphertexts): ciphertexts that
	// Lattigo allocates (bootstrap and polynomial outputs) join it when
	// their values die, and an unbounded pool grew by about 1 GiB over
	// ResNet-20's 18 bootstraps.
	poolCap  int
	maxLimbs int                      // the program's top level plus one
	lazy     []*lazyBuffers           // per evaluator, for lazily encoded matrices
	boot     *bootstrapping.Evaluator // the lane's copy, made on first use
}

// state returns an idle lane state with at least n evaluators.
func (e *Evaluator) state(n int) *laneState {
	e.mu.Lock()
	var st *laneState
	if k := len(e.idle); k > 0 {
		st = e.idle[k-1]
		e.idle = e.idle[:k-1]
	}
	e.mu.Unlock()
	if st == nil {
		st = &laneState{evals: []*hefloat.Evaluator{e.base.ShallowCopy()}, rotMap: map[int]*rlwe.Element[ringqp.Poly]{},
			poolCap: e.plan.laneCiphertexts(), maxLimbs: e.plan.params.MaxLevel() + 1}
		st.poly = hefloat.NewPolynomialEvaluator(e.plan.params, st.evals[0])
	}
	for len(st.evals) < n {
		st.evals = append(st.evals, e.base.ShallowCopy())
	}
	for len(st.lazy) < n { // grown here, before the workers share st
		st.lazy = append(st.lazy, nil)
	}
	st.active = n
	return st
}

func (e *Evaluator) release(st *laneState) {
	e.mu.Lock()
	e.idle = append(e.idle, st)
	e.mu.Unlock()
}

// get returns a degree-1 ciphertext at level, from the pool when one has the
// capacity.
func (st *laneState) get(params hefloat.Parameters, level int) *rlwe.Ciphertext {
	for i := len(st.pool) - 1; i >= 0; i-- {
		ct := st.pool[i]
		if reslice(ct, level) {
			st.pool[i] = st.pool[len(st.pool)-1]
			st.pool = st.pool[:len(st.pool)-1]
			ct.Scale = params.DefaultScale()
			return ct
		}
	}
	ct := hefloat.NewCiphertext(params, 1, params.MaxLevel())
	reslice(ct, level)
	return ct
}

// reslice sets a pooled ciphertext's level without allocating, when its
// polynomials have the capacity; it reports whether it could.
func reslice(ct *rlwe.Ciphertext, level int) bool {
	if len(ct.Value) != 2 {
		return false
	}
	for _, p := range ct.Value {
		c := p.Coeffs[:cap(p.Coeffs)]
		if len(c) < level+1 {
			return false
		}
		for _, limb := range c[:level+1] {
			if len(limb) != len(c[0]) {
				return false
			}
		}
	}
	for i := range ct.Value {
		ct.Value[i].Coeffs = ct.Value[i].Coeffs[:level+1]
	}
	return true
}

// put returns ct to the pool, unless the pool is full or ct holds more
// limbs than the program's top level (a ciphertext of the bootstrapping
// circuit's longer chain); the collector then reclaims it.
func (st *laneState) put(ct *rlwe.Ciphertext) {
	if ct == nil || len(st.pool) >= st.poolCap || len(ct.Value) != 2 || cap(ct.Value[0].Coeffs) > st.maxLimbs {
		return
	}
	st.pool = append(st.pool, ct)
}

// preRotated returns the map of pre-rotation buffers for the baby steps.
func (st *laneState) preRotated(params hefloat.Parameters, babies []int) map[int]*rlwe.Element[ringqp.Poly] {
	for len(st.prerot) < len(babies) {
		st.prerot = append(st.prerot, rlwe.NewElementExtended(params, 1, params.MaxLevelQ(), params.MaxLevelP()))
	}
	clear(st.rotMap)
	for i, r := range babies {
		st.rotMap[r] = st.prerot[i]
	}
	return st.rotMap
}

// Step is one instruction executed on one ciphertext, as progress
// callbacks see it.
type Step struct {
	// Done counts the executions finished so far in the current Run; Total
	// is len(Instrs) times the number of ciphertexts.
	Done, Total int
	// Instr is the index of the instruction just executed, Op its
	// operation and Layer the model layer it belongs to.
	Instr int
	Op    ckksir.Op
	Layer string
}

// SetProgress installs a callback called after each instruction executed on
// each ciphertext. Calls are serialized.
func (e *Evaluator) SetProgress(f func(Step)) { e.progress = f }

// SetCores sets the number of cores Run uses (0, the default, is
// runtime.NumCPU()): fewer cores take less working memory, since each core
// a lane spreads a linear transformation over has its own scratch. It may
// not race with Run.
func (e *Evaluator) SetCores(n int) { e.cpus = max(n, 0) }

// SetLanes caps the number of ciphertexts Run evaluates at once (each
// lane has its own working memory, KeyPlan.LaneBytes); the cores are shared
// among the lanes. 0, the default, is one lane per core. It may not race
// with Run.
func (e *Evaluator) SetLanes(n int) { e.lanes = max(n, 0) }

// SetTrace installs a callback receiving the wall time of every
// instruction: in slot packing once per instruction per ciphertext lane
// (the time that lane spent on it, with the cores the lane had; lanes run in
// parallel, so calls may come from several goroutines at once), in feature
// packing once per instruction (the wall time of all its ciphertexts, spread
// over all cores). Like SetProgress, it may not race with Run.
func (e *Evaluator) SetTrace(f func(instr int, d time.Duration)) { e.trace = f }

// Run executes the program on the inputs' ciphertexts (every input with the
// same number of ciphertexts, as Client.Encrypt returns them) and returns
// the outputs' ciphertexts. Independent ciphertexts run in parallel on all
// cores; when there are fewer ciphertexts than cores, each linear
// transformation also splits its rotations across the spare cores. The
// inputs are not modified. After each instruction the output's level is
// checked against the program. In feature packing each input holds
// batches·K ciphertexts, batch-major (ciphertext b·K+k is element k of
// batch b, as Client.Encrypt returns them), and so does each output.
func (e *Evaluator) Run(inputs map[string][]*Ciphertext) (map[string][]*Ciphertext, error) {
	p, pl := e.plan.prog, e.plan
	if p.Packing == ckksir.PackFeature {
		return e.runFeature(inputs)
	}
	n := -1
	for _, in := range p.Inputs {
		cts, ok := inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("ckks: missing input %q", in.Name)
		}
		if n >= 0 && len(cts) != n {
			return nil, fmt.Errorf("ckks: input %q has %d ciphertexts, other inputs %d", in.Name, len(cts), n)
		}
		n = len(cts)
		v := p.Values[in.Value]
		for k, ct := range cts {
			if ct == nil || ct.ct == nil {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d is nil", in.Name, k)
			}
			if err := pl.checkCiphertext(ct.ct); err != nil {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d: %w", in.Name, k, err)
			}
			if ct.ct.Level() != v.Level {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d is at level %d, the program expects %d", in.Name, k, ct.ct.Level(), v.Level)
			}
			if d := relDiff(ct.ct.Scale, e.scales[in.Value]); d > 1e-9 {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d has scale 2^%.4f, the program expects 2^%.4f", in.Name, k,
					math.Log2(ct.ct.Scale.Float64()), math.Log2(e.scales[in.Value].Float64()))
			}
		}
	}
	for name := range inputs {
		if _, err := findIO(p.Inputs, name, "input"); err != nil {
			return nil, err
		}
	}
	if n < 0 {
		n = 1 // a program without inputs still runs once
	}
	outs := make(map[string][]*Ciphertext, len(p.Outputs))
	for _, o := range p.Outputs {
		outs[o.Name] = make([]*Ciphertext, n)
	}
	if n == 0 {
		return outs, nil
	}

	cpus := e.cpus
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	workers := min(cpus, n)
	if e.lanes > 0 {
		workers = min(workers, e.lanes)
	}
	inner := max(1, cpus/workers)
	total := n * len(p.Instrs)
	var (
		progMu sync.Mutex
		done   int
		failed atomic.Bool
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	tick := func(i int) {
		if e.progress == nil {
			return
		}
		progMu.Lock()
		done++
		e.progress(e.step(done, total, i))
		progMu.Unlock()
	}
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := e.state(inner)
			defer e.release(st)
			for !failed.Load() {
				lane := int(next.Add(1)) - 1
				if lane >= n {
					return
				}
				vals, err := e.runLane(st, inputs, lane, tick, &failed)
				if err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
				for _, o := range p.Outputs {
					outs[o.Name][lane] = &Ciphertext{ct: vals[o.Value]}
				}
			}
		}(w)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return outs, nil
}

// runLane runs every instruction on the lane-th ciphertext of the inputs.
func (e *Evaluator) runLane(st *laneState, inputs map[string][]*Ciphertext, lane int, tick func(instr int), failed *atomic.Bool) ([]*rlwe.Ciphertext, error) {
	p := e.plan.prog
	vals := make([]*rlwe.Ciphertext, len(p.Values))
	owned := make([]bool, len(p.Values))
	for _, in := range p.Inputs {
		vals[in.Value] = inputs[in.Name][lane].ct
	}
	for i := range e.instrs {
		if failed.Load() {
			return nil, errors.New("ckks: run abandoned")
		}
		c := &e.instrs[i]
		var out *rlwe.Ciphertext
		start := time.Now()
		err := recovered(func() error {
			var err error
			out, err = e.exec(st, c, vals)
			return err
		})
		if e.trace != nil && err == nil {
			e.trace(i, time.Since(start))
		}
		if err != nil {
			if errors.Is(err, errPlan) {
				return nil, err
			}
			return nil, fmt.Errorf("ckks: %s: %w", c.where, err)
		}
		if out.Level() != c.outLevel {
			return nil, fmt.Errorf("ckks: %s: output at level %d, the program expects %d", c.where, out.Level(), c.outLevel)
		}
		if err := snapScale(out, c.outScale); err != nil {
			return nil, fmt.Errorf("ckks: %s: %w", c.where, err)
		}
		vals[c.ins.Out], owned[c.ins.Out] = out, true
		for _, a := range c.ins.In {
			if e.lastUse[a] == i && owned[a] && vals[a] != nil {
				st.put(vals[a])
				vals[a] = nil
			}
		}
		tick(i)
	}
	return vals, nil
}

// step describes execution done of total, instruction i.
func (e *Evaluator) step(done, total, i int) Step {
	ins := e.instrs[i].ins
	return Step{Done: done, Total: total, Instr: i, Op: ins.Op, Layer: ins.Layer}
}

// errPlan marks errors that already name their instruction.
var errPlan = errors.New("ckks")

// exec executes one instruction.
func (e *Evaluator) exec(st *laneState, c *compiled, vals []*rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	params := e.plan.params
	ev := st.evals[0]
	ins := c.ins
	in := func(k int) *rlwe.Ciphertext { return vals[ins.In[k]] }
	switch ins.Op {
	case ckksir.OpLinear:
		level := c.outLevel + 1
		acc := st.get(params, level)
		for k, lt := range c.lts {
			dst := acc
			if k > 0 {
				dst = st.get(params, level)
			}
			if err := e.applyMatrix(st, lt, in(k), dst); err != nil {
				return nil, err
			}
			if err := snapScale(dst, c.midScale); err != nil {
				return nil, err
			}
			if k > 0 {
				rq := params.RingQ().AtLevel(level)
				rq.Add(acc.Value[0], dst.Value[0], acc.Value[0])
				rq.Add(acc.Value[1], dst.Value[1], acc.Value[1])
				st.put(dst)
			}
		}
		if err := ev.Rescale(acc, acc); err != nil {
			return nil, err
		}
		if err := snapScale(acc, c.outScale); err != nil {
			return nil, err
		}
		if c.pt != nil {
			if err := ev.Add(acc, c.pt, acc); err != nil {
				return nil, err
			}
		}
		return acc, nil
	case ckksir.OpAdd:
		out := st.get(params, min(in(0).Level(), in(1).Level()))
		return out, ev.Add(in(0), in(1), out)
	case ckksir.OpMul:
		out := st.get(params, min(in(0).Level(), in(1).Level()))
		if err := ev.MulRelin(in(0), in(1), out); err != nil {
			return nil, err
		}
		return out, ev.Rescale(out, out)
	case ckksir.OpAddConst:
		out := st.get(params, in(0).Level())
		if c.pt == nil {
			out.Copy(in(0))
			return out, nil
		}
		return out, ev.Add(in(0), c.pt, out)
	case ckksir.OpMulConst:
		out := st.get(params, in(0).Level())
		if err := ev.Mul(in(0), c.pt, out); err != nil { // a nil vector was encoded as zeros
			return nil, err
		}
		return out, ev.Rescale(out, out)
	case ckksir.OpPoly:
		return e.poly(st, c, in(0))
	case ckksir.OpBootstrap:
		return e.bootstrap(st, c, in(0))
	}
	return nil, fmt.Errorf("unknown op %s", ins.Op)
}

// poly evaluates a Chebyshev polynomial: the change of variable to [-1, 1]
// (one level) when the interval is not [-1, 1], then Lattigo's
// Paterson-Stockmeyer evaluation targeting the default scale. The levels
// consumed must be Poly.Depth(); fewer are dropped to match, more are an
// error (the compiler's accounting would be wrong).
func (e *Evaluator) poly(st *laneState, c *compiled, x *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	params := e.plan.params
	ev := st.evals[0]
	pol := c.ins.Poly
	want := pol.Depth()
	start := x.Level()
	if pol.Degree() == 0 {
		out := st.get(params, start-want)
		for i := range out.Value {
			out.Value[i].Zero()
		}
		out.Scale = c.outScale
		out.IsNTT, out.IsBatched, out.LogDimensions = true, true, params.LogMaxDimensions()
		return out, ev.Add(out, pol.Coeffs[0], out)
	}
	var tmp *rlwe.Ciphertext
	if c.changeVar {
		tmp = st.get(params, start)
		if err := ev.Mul(x, c.cvScale, tmp); err != nil {
			return nil, err
		}
		if err := ev.Add(tmp, c.cvOffset, tmp); err != nil {
			return nil, err
		}
		if c.cvInt {
			ev.DropLevel(tmp, 1)
		} else if err := ev.Rescale(tmp, tmp); err != nil {
			return nil, err
		}
		x = tmp
	}
	bp := bignum.NewPolynomial(bignum.Chebyshev, pol.Coeffs, [2]float64{pol.A, pol.B})
	if c.hasOdd || c.hasEven {
		// An odd (or even) polynomial skips the powers of the other parity.
		bp.IsOdd, bp.IsEven = c.hasOdd, c.hasEven
	}
	out, err := st.poly.Evaluate(x, bp, e.plan.params.DefaultScale())
	st.put(tmp)
	if err != nil {
		return nil, err
	}
	got := start - out.Level()
	switch {
	case got > want:
		return nil, fmt.Errorf("%w: %s: Lattigo's polynomial evaluation of degree %d on [%g, %g] consumed %d levels, the program accounts %d",
			errPlan, c.where, pol.Degree(), pol.A, pol.B, got, want)
	case got < want:
		ev.DropLevel(out, want-got)
	}
	return out, nil
}

// applyMatrix computes out = M(ct) (not rescaled) by the hoisted baby-step
// giant-step method: one decomposition of ct, the baby-step rotations spread
// over the lane's evaluators, then the giant steps split into as many
// partial transformations as the lane has evaluators, summed.
func (e *Evaluator) applyMatrix(st *laneState, t *linTrans, ct, out *rlwe.Ciphertext) error {
	params := e.plan.params
	level := t.level
	ev0 := st.evals[0]
	decomp := ev0.GetBuffDecompQP()
	ev0.DecomposeNTT(level, params.MaxLevelP(), params.PCount(), ct.Value[1], ct.IsNTT, decomp)
	rot := st.preRotated(params, t.babies)
	if err := fanOut(min(st.active, len(t.babies)), func(w, n int) error {
		for i := w; i < len(t.babies); i += n {
			r := t.babies[i]
			if err := st.evals[w].AutomorphismHoistedLazy(level, ct, decomp, params.GaloisElement(r), rot[r]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if t.lazy {
		return e.applyLazy(st, t, ct, rot, out)
	}
	parts := t.partsFor(st.active)
	outs := make([]*rlwe.Ciphertext, len(parts))
	outs[0] = out
	for w := 1; w < len(parts); w++ {
		outs[w] = st.get(params, level)
	}
	if err := fanOut(len(parts), func(w, _ int) error {
		return he.MultiplyByDiagMatrixBSGS(st.evals[w], ct, parts[w], rot, outs[w])
	}); err != nil {
		return err
	}
	rq := params.RingQ().AtLevel(level)
	for w := 1; w < len(parts); w++ {
		rq.Add(out.Value[0], outs[w].Value[0], out.Value[0])
		rq.Add(out.Value[1], outs[w].Value[1], out.Value[1])
		st.put(outs[w])
	}
	return nil
}

// fanOut runs f(w, n) for w in [0, n), in parallel when n > 1, recovering
// panics in every goroutine.
func fanOut(n int, f func(w, n int) error) error {
	if n <= 1 {
		if n == 1 {
			return f(0, 1)
		}
		return nil
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			errs[w] = recovered(func() error { return f(w, n) })
		}(w)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// relDiff is |a/b - 1|.
func relDiff(a, b rlwe.Scale) float64 {
	return math.Abs(a.Div(b).Float64() - 1)
}

// snapScale sets ct's scale to the planned one when they differ only by
// big-float rounding, and reports a real drift as an error.
func snapScale(ct *rlwe.Ciphertext, want rlwe.Scale) error {
	if d := relDiff(ct.Scale, want); d > 1e-12 {
		return fmt.Errorf("scale 2^%.6f, the plan expects 2^%.6f", math.Log2(ct.Scale.Float64()), math.Log2(want.Float64()))
	}
	ct.Scale = want
	return nil
}

// applyLazy applies a matrix whose diagonals are not kept encoded: the
// lane's workers share the giant steps, and each encodes one giant step's
// diagonals into its own buffers, multiplies, and accumulates.
func (e *Evaluator) applyLazy(st *laneState, t *linTrans, ct *rlwe.Ciphertext, rot map[int]*rlwe.Element[ringqp.Poly], out *rlwe.Ciphertext) error {
	params := e.plan.params
	level := t.level
	n := min(st.active, len(t.giants))
	outs := make([]*rlwe.Ciphertext, n)
	outs[0] = out
	for w := 1; w < n; w++ {
		outs[w] = st.get(params, level)
	}
	rq := params.RingQ().AtLevel(level)
	if err := fanOut(n, func(w, n int) error {
		lz := st.lazyBuffers(params, w, level)
		first := true
		for gi := w; gi < len(t.giants); gi += n {
			g := t.giants[gi]
			sub := t.lt
			sub.Vec = make(map[int]ringqp.Poly, len(t.groups[g]))
			for i, b := range t.groups[g] {
				poly := lz.poly(params, i, level)
				if err := t.encode(lz.ecd, lz.buf, g+b, g, poly); err != nil {
					return err
				}
				sub.Vec[g+b] = poly
			}
			dst := outs[w]
			if !first {
				dst = lz.tmp
				reslice(dst, level)
			}
			if err := he.MultiplyByDiagMatrixBSGS(st.evals[w], ct, sub, rot, dst); err != nil {
				return err
			}
			if !first {
				rq.Add(outs[w].Value[0], dst.Value[0], outs[w].Value[0])
				rq.Add(outs[w].Value[1], dst.Value[1], outs[w].Value[1])
			}
			first = false
		}
		return nil
	}); err != nil {
		return err
	}
	for w := 1; w < n; w++ {
		rq.Add(out.Value[0], outs[w].Value[0], out.Value[0])
		rq.Add(out.Value[1], outs[w].Value[1], out.Value[1])
		st.put(outs[w])
	}
	return nil
}

// lazyBuffers is one worker's scratch for lazily encoded matrices: an
// encoder, a slot buffer, diagonal polynomials and a partial result.
type lazyBuffers struct {
	ecd   *slotEncoder
	buf   []float64
	polys []ringqp.Poly // at the parameters' top level, resliced
	tmp   *rlwe.Ciphertext
}

// lazyBuffers returns worker w's scratch, allocated on first use. The
// workers of a lane call it concurrently, each with its own w < st.active:
// state sized st.lazy beforehand, so each only touches its own entry.
func (st *laneState) lazyBuffers(params hefloat.Parameters, w, level int) *lazyBuffers {
	if st.lazy[w] == nil {
		st.lazy[w] = &lazyBuffers{
			ecd: newSlotEncoder(params),
			buf: make([]float64, 2*params.MaxSlots()),
			tmp: hefloat.NewCiphertext(params, 1, params.MaxLevel()),
		}
	}
	return st.lazy[w]
}

// poly returns the i-th diagonal buffer at level (and every P prime).
func (lz *lazyBuffers) poly(params hefloat.Parameters, i, level int) ringqp.Poly {
	for len(lz.polys) <= i {
		lz.polys = append(lz.polys, params.RingQP().NewPoly())
	}
	p := lz.polys[i]
	p.Q.Coeffs = p.Q.Coeffs[:level+1]
	return p
}
