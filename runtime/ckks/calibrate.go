package ckks

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// CalibrateOptions say what Calibrate measures.
type CalibrateOptions struct {
	// Params lists the parameter sets to measure, one per ring degree (the
	// chain the compiler would pick at that ring; see ckksir.Params).
	Params []ckksir.Params
	// Levels is the number of levels measured per ring, spread evenly over
	// [1, MaxLevel] (always including both ends); 0 means 4.
	Levels int
	// Reps is how many times each operation is timed (the median is kept);
	// 0 means 5.
	Reps int
	// PolyDegrees are the polynomial degrees evaluated whole at each ring's
	// top level (those deeper than the chain are skipped); nil means 7, 15
	// and 31.
	PolyDegrees []int
	// StreamBytes is the size of the distinct diagonals the per-diagonal
	// cost is measured over, so that they come from memory as in a real
	// transformation; 0 means 512 MiB.
	StreamBytes int
	// Bootstrap also times one bootstrap (Ring.Bootstrap) on the N=2^16
	// ring, the only one the compiler bootstraps on, with the default
	// circuit (ckksir.DefaultBootParams) over a 10-level residual chain:
	// its keys and matrices take about 11 GiB and a minute or two to make.
	Bootstrap bool
}

// Calibrate measures Lattigo's CKKS primitives on this machine for every
// parameter set of opts and returns the profile (see cost.Profile for the
// fields and units). Each operation runs single-threaded, Reps times, on
// fresh encryptions of random data at each measured level; the median is
// kept. Key sizes are those of a switching key whose chain tops at the
// level (digits × 2 polynomials × N × (level+1+|P|) × 8 bytes). With
// opts.Bootstrap, a bootstrap on the N=2^16 ring is timed too (see
// CalibrateBootstrap); otherwise Ring.Bootstrap stays 0. progress (when not
// nil) is called after each measured level, polynomial and bootstrap with
// the steps done, the total and what was measured.
func Calibrate(opts CalibrateOptions, progress func(done, total int, what string)) (*cost.Profile, error) {
	if len(opts.Params) == 0 {
		return nil, fmt.Errorf("ckks: calibrate: no parameters to measure")
	}
	if opts.Levels <= 0 {
		opts.Levels = 4
	}
	if opts.Reps <= 0 {
		opts.Reps = 5
	}
	if opts.StreamBytes <= 0 {
		opts.StreamBytes = 512 << 20
	}
	if opts.PolyDegrees == nil {
		opts.PolyDegrees = []int{7, 15, 31}
	}
	prof := &cost.Profile{
		Version: cost.ProfileVersion,
		Machine: cost.ThisMachine(),
		CPUs:    runtime.NumCPU(),
		Lattigo: lattigoVersion(),
		Created: time.Now().UTC().Truncate(time.Second),
	}
	total := 0
	levelSets := make([][]int, len(opts.Params))
	for i, p := range opts.Params {
		levelSets[i] = spread(p.MaxLevel(), opts.Levels)
		total += len(levelSets[i]) + len(opts.PolyDegrees) + 1
		if opts.Bootstrap && p.LogN == 16 {
			total++
		}
	}
	done := 0
	step := func(what string) {
		done++
		if progress != nil {
			progress(done, total, what)
		}
	}
	for i, p := range opts.Params {
		ring, err := calibrateRing(p, levelSets[i], opts, step)
		if err != nil {
			return nil, fmt.Errorf("ckks: calibrate N=2^%d: %w", p.LogN, err)
		}
		if opts.Bootstrap && p.LogN == 16 {
			if ring.Bootstrap, err = CalibrateBootstrap(p, max(1, opts.Reps/3)); err != nil {
				return nil, fmt.Errorf("ckks: calibrate N=2^%d: %w", p.LogN, err)
			}
			step(fmt.Sprintf("N=2^%d bootstrap", p.LogN))
		}
		prof.Rings = append(prof.Rings, *ring)
		runtime.GC() // keys of large rings are hundreds of MiB
	}
	eff, err := parallelEfficiency(opts.Params[0], opts.Reps)
	if err != nil {
		return nil, fmt.Errorf("ckks: calibrate: %w", err)
	}
	prof.ParallelEfficiency = eff
	return prof, nil
}

// BootstrapProgram is a program of one bootstrap on the ring of p, with the
// default circuit over the first 10 primes of p's chain (the residual chain
// the compiler gives deep networks): a level-0 input of BlockSize 16
// repeated over every slot, refreshed to level 9.
func BootstrapProgram(p ckksir.Params) *ckksir.Program {
	p.LogQ = p.LogQ[:min(len(p.LogQ), 10)]
	lay := ckksir.Layout{Shape: ir.Shape{16}}
	return &ckksir.Program{
		Params:    p,
		BlockSize: 16, Batch: p.Slots() / 16,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 1}},
		Values:  []ckksir.Value{{Layout: lay, Level: 0}, {Layout: lay, Level: p.MaxLevel()}},
		Instrs:  []ckksir.Instr{{Op: ckksir.OpBootstrap, Out: 1, In: []int{0}}},
		Boot:    ckksir.DefaultBootParams(),
	}
}

// CalibrateBootstrap times one bootstrap of BootstrapProgram(p) through the
// runtime (keys, evaluator, one encrypted run per rep; the median in
// seconds). It checks the refreshed message too: a bootstrap that loses it
// is an error, not a time.
func CalibrateBootstrap(p ckksir.Params, reps int) (float64, error) {
	prog := BootstrapProgram(p)
	c, err := NewClient(prog)
	if err != nil {
		return 0, err
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		return 0, err
	}
	e, err := NewEvaluator(prog, evk)
	if err != nil {
		return 0, err
	}
	evk = nil
	rng := rand.New(rand.NewPCG(4, 5))
	x := ir.NewFloat(ir.Shape{1, 16}, nil)
	for i := range x.Float {
		x.Float[i] = 2*rng.Float64() - 1
	}
	cts, err := c.Encrypt("x", x)
	if err != nil {
		return 0, err
	}
	var runErr error
	var out []*Ciphertext
	secs := median(max(1, reps), func() {
		res, err := e.Run(map[string][]*Ciphertext{"x": cts})
		if err != nil && runErr == nil {
			runErr = err
		}
		out = res["y"]
	})
	if runErr != nil {
		return 0, runErr
	}
	y, err := c.Decrypt("y", out, 1)
	if err != nil {
		return 0, err
	}
	for i, v := range y.Floats() {
		if math.Abs(v-x.Float[i]) > 1e-3 {
			return 0, fmt.Errorf("bootstrap calibration: slot %d refreshed to %g, want %g", i, v, x.Float[i])
		}
	}
	return secs, nil
}

// parallelEfficiency times the same key switches (hoisted rotations at the
// top level, what a split linear transformation spreads over cores) on one
// goroutine and spread over all cores, and returns (speedup-1)/(cores-1)
// in [0.01, 1]: 1 for a perfect speedup (and on one core).
func parallelEfficiency(p ckksir.Params, reps int) (eff float64, err error) {
	cpus := runtime.NumCPU()
	if cpus < 2 {
		return 1, nil
	}
	err = protect("parallel calibration", func() error {
		params, err := newParams(p, 0)
		if err != nil {
			return err
		}
		kgen := rlwe.NewKeyGenerator(params)
		sk := kgen.GenSecretKeyNew()
		galEl := params.GaloisElement(1)
		ev := hefloat.NewEvaluator(params, rlwe.NewMemEvaluationKeySet(nil, kgen.GenGaloisKeyNew(galEl, sk)))
		level, levelP := params.MaxLevel(), params.MaxLevelP()
		ct, err := rlwe.NewEncryptor(params, sk).EncryptNew(hefloat.NewPlaintext(params, level))
		if err != nil {
			return err
		}
		evs := make([]*hefloat.Evaluator, cpus)
		outs := make([]*rlwe.Element[ringqp.Poly], cpus)
		for i := range evs {
			evs[i] = ev.ShallowCopy()
			outs[i] = rlwe.NewElementExtended(params, 1, level, levelP)
		}
		decomp := ev.GetBuffDecompQP()
		ev.DecomposeNTT(level, levelP, levelP+1, ct.Value[1], ct.IsNTT, decomp)
		per := 4
		var e error
		work := func(w, n int) {
			for range n {
				if err := evs[w].AutomorphismHoistedLazy(level, ct, decomp, galEl, outs[w]); err != nil && e == nil {
					e = err
				}
			}
		}
		serial := median(reps, func() { work(0, per*cpus) })
		parallel := median(reps, func() {
			var wg sync.WaitGroup
			for w := range cpus {
				wg.Add(1)
				go func() { defer wg.Done(); work(w, per) }()
			}
			wg.Wait()
		})
		if e != nil {
			return e
		}
		eff = max(0.01, min(1, (serial/parallel-1)/float64(cpus-1)))
		return nil
	})
	return eff, err
}

// spread returns n levels spread evenly over [1, top] (fewer when top is
// small).
func spread(top, n int) []int {
	if top < 1 {
		return []int{0}
	}
	var out []int
	for i := 0; i < n; i++ {
		l := 1
		if n > 1 {
			l = 1 + (top-1)*i/(n-1)
		}
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return out
}

// calibrateRing measures one parameter set.
func calibrateRing(p ckksir.Params, levels []int, opts CalibrateOptions, step func(string)) (ring *cost.Ring, err error) {
	err = protect("calibration", func() error {
		params, err := newParams(p, 0)
		if err != nil {
			return err
		}
		kgen := rlwe.NewKeyGenerator(params)
		sk := kgen.GenSecretKeyNew()
		galEl := params.GaloisElement(1)
		evk := rlwe.NewMemEvaluationKeySet(kgen.GenRelinearizationKeyNew(sk), kgen.GenGaloisKeyNew(galEl, sk))
		ecd := hefloat.NewEncoder(params)
		enc := rlwe.NewEncryptor(params, sk)
		dec := rlwe.NewDecryptor(params, sk)
		ev := hefloat.NewEvaluator(params, evk)
		rng := rand.New(rand.NewPCG(1, 2))
		values := make([]float64, params.MaxSlots())
		for i := range values {
			values[i] = 2*rng.Float64() - 1
		}
		ring = &cost.Ring{LogN: p.LogN, LogScale: p.LogScale, LogP: slices.Clone(p.LogP), MaxLevel: p.MaxLevel()}
		reps := opts.Reps
		levelP := params.MaxLevelP()
		for _, level := range levels {
			pt := hefloat.NewPlaintext(params, level)
			if err := ecd.Encode(values, pt); err != nil {
				return err
			}
			ct, err := enc.EncryptNew(pt)
			if err != nil {
				return err
			}
			ct2 := ct.CopyNew()
			out := hefloat.NewCiphertext(params, 1, level)
			buf := make([]float64, params.MaxSlots())
			decomp := ev.GetBuffDecompQP()
			elQP := rlwe.NewElementExtended(params, 1, level, levelP)
			rQP := params.RingQP().AtLevel(level, levelP)
			accQP := ringqp.Poly{Q: params.RingQ().AtLevel(level).NewPoly(), P: params.RingP().AtLevel(levelP).NewPoly()}
			accQP2 := *accQP.CopyNew()
			l := cost.Level{Level: level}
			var e error
			keep := func(err error) {
				if err != nil && e == nil {
					e = err
				}
			}
			l.Encode = median(reps, func() { keep(ecd.Encode(values, pt)) })
			l.Encrypt = median(reps, func() { keep(enc.Encrypt(pt, out)) })
			l.Decrypt = median(reps, func() {
				dec.Decrypt(ct, pt)
				keep(ecd.Decode(pt, buf))
			})
			if err := ecd.Encode(values, pt); err != nil {
				return err
			}
			l.Add = median(reps, func() { keep(ev.Add(ct, ct2, out)) })
			l.AddPlain = median(reps, func() { keep(ev.Add(ct, pt, out)) })
			l.MulPlain = median(reps, func() { keep(ev.Mul(ct, pt, out)) })
			l.MulScalar = median(reps, func() { keep(ev.MulThenAdd(ct, 0.37, out)) })
			l.MulRelin = median(reps, func() { keep(ev.MulRelin(ct, ct2, out)) })
			if level >= 1 {
				res := hefloat.NewCiphertext(params, 1, level)
				l.Rescale = median(reps, func() { keep(ev.Rescale(ct, res)) })
			}
			l.Rotate = median(reps, func() { keep(ev.Rotate(ct, 1, out)) })
			l.Decompose = median(reps, func() {
				ev.DecomposeNTT(level, levelP, levelP+1, ct.Value[1], ct.IsNTT, decomp)
			})
			l.HoistedRotate = median(reps, func() { keep(ev.AutomorphismHoistedLazy(level, ct, decomp, galEl, elQP)) })
			// A diagonal of the baby-step giant-step product: a pre-rotated
			// ciphertext (both components) times the diagonal, accumulated
			// over Q and P (MultiplyByDiagMatrixBSGS's inner loop). A real
			// transformation reads every diagonal once and cycles through
			// its pre-rotated baby steps, from memory rather than cache: the
			// diagonals here are distinct polynomials, StreamBytes in all, and
			// eight pre-rotated ciphertexts take turns.
			polyBytes := 2 * params.N() * (level + 1 + levelP + 1) * 8 / 2
			diags := make([]ringqp.Poly, max(16, opts.StreamBytes/polyBytes))
			for i := range diags {
				diags[i] = *accQP.CopyNew()
			}
			babies := make([]*rlwe.Element[ringqp.Poly], 8)
			for i := range babies {
				babies[i] = elQP.CopyNew()
			}
			l.Diagonal = median(reps, func() {
				for i := range diags {
					b := babies[i%len(babies)]
					rQP.MulCoeffsMontgomeryLazyThenAddLazy(diags[i], b.Value[0], accQP)
					rQP.MulCoeffsMontgomeryLazyThenAddLazy(diags[i], b.Value[1], accQP2)
				}
			}) / float64(len(diags))
			diags, babies = nil, nil
			l.ModDown = median(reps, func() { ev.ModDownQPtoQNTT(level, levelP, accQP.Q, accQP.P, out.Value[0]) })
			if e != nil {
				return e
			}
			l.CiphertextBytes = int64(ct.BinarySize())
			l.KeyBytes = int64(params.BaseRNSDecompositionVectorSize(level, levelP)) * 2 * int64(params.N()) * int64(level+1+levelP+1) * 8
			ring.Levels = append(ring.Levels, l)
			step(fmt.Sprintf("N=2^%d level %d", p.LogN, level))
		}
		// Whole linear transformations (32 consecutive diagonals, split
		// as the runtime splits them) at the top and a middle level.
		if err := calibrateLinear(params, kgen, sk, ecd, enc, ev, values, levels, reps, ring); err != nil {
			return err
		}
		step(fmt.Sprintf("N=2^%d linear transformations", p.LogN))
		// Whole polynomial evaluations at the top level.
		top := params.MaxLevel()
		pt := hefloat.NewPlaintext(params, top)
		if err := ecd.Encode(values, pt); err != nil {
			return err
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			return err
		}
		pev := hefloat.NewPolynomialEvaluator(params, ev)
		for _, d := range opts.PolyDegrees {
			pol := &ckksir.Poly{A: -1, B: 1, Coeffs: make([]float64, d+1)}
			for k := range pol.Coeffs {
				pol.Coeffs[k] = 1 / float64(k+1)
			}
			if pol.Depth() > top {
				step(fmt.Sprintf("N=2^%d polynomial of degree %d (too deep, skipped)", p.LogN, d))
				continue
			}
			bp := bignum.NewPolynomial(bignum.Chebyshev, pol.Coeffs, [2]float64{-1, 1})
			var e error
			secs := median(max(1, reps/2), func() {
				if _, err := pev.Evaluate(ct, bp, params.DefaultScale()); err != nil && e == nil {
					e = err
				}
			})
			if e != nil {
				return e
			}
			ns, _ := polyProducts(d, true, true)
			ring.Poly = append(ring.Poly, cost.PolyTime{Degree: d, Level: top, NonScalar: ns, Seconds: secs})
			step(fmt.Sprintf("N=2^%d polynomial of degree %d", p.LogN, d))
		}
		return nil
	})
	return ring, err
}

// median times f reps times and returns the median in seconds.
func median(reps int, f func()) float64 {
	ts := make([]float64, reps)
	for i := range ts {
		start := time.Now()
		f()
		ts[i] = time.Since(start).Seconds()
	}
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// lattigoVersion is the Lattigo module version this binary was built with.
func lattigoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if strings.HasPrefix(m.Path, "github.com/tuneinsight/lattigo/") {
				return m.Path + " " + m.Version
			}
		}
	}
	return "github.com/tuneinsight/lattigo/v5"
}

// calibrateLinear times Lattigo's hoisted baby-step giant-step evaluation of
// a 32-diagonal transformation (what Evaluator.applyMatrix does on one
// core) at the top measured level and a middle one.
func calibrateLinear(params hefloat.Parameters, kgen *rlwe.KeyGenerator, sk *rlwe.SecretKey, ecd *hefloat.Encoder,
	enc *rlwe.Encryptor, ev *hefloat.Evaluator, values []float64, levels []int, reps int, ring *cost.Ring) error {
	idx := make([]int, 32)
	diags := hefloat.Diagonals[float64]{}
	for i := range idx {
		idx[i] = i
		diags[i] = values
	}
	slots := params.MaxSlots()
	n1 := he.FindBestBSGSRatio(idx, slots, bsgsLogRatio)
	index, _, rotN2 := he.BSGSIndex(idx, slots, n1)
	babies, giants := 0, 0
	for _, r := range rotN2 {
		if r != 0 {
			babies++
		}
	}
	for g := range index {
		if g != 0 {
			giants++
		}
	}
	ltp := func(level int) hefloat.LinearTransformationParameters {
		return hefloat.LinearTransformationParameters{DiagonalsIndexList: idx, Level: level,
			Scale: rlwe.NewScale(params.Q()[level]), LogDimensions: params.LogMaxDimensions(), LogBabyStepGianStepRatio: bsgsLogRatio}
	}
	gks := kgen.GenGaloisKeysNew(hefloat.GaloisElementsForLinearTransformation(params, ltp(params.MaxLevel())), sk)
	ltev := hefloat.NewLinearTransformationEvaluator(ev.WithKey(rlwe.NewMemEvaluationKeySet(nil, gks...)))
	chosen := []int{levels[len(levels)-1]}
	if len(levels) > 2 {
		chosen = append(chosen, levels[len(levels)/2])
	}
	for _, level := range chosen {
		lt := hefloat.NewLinearTransformation(params, ltp(level))
		if err := hefloat.EncodeLinearTransformation(ecd, diags, lt); err != nil {
			return err
		}
		pt := hefloat.NewPlaintext(params, level)
		if err := ecd.Encode(values, pt); err != nil {
			return err
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			return err
		}
		out := hefloat.NewCiphertext(params, 1, level)
		var e error
		secs := median(reps, func() {
			if err := ltev.Evaluate(ct, lt, out); err != nil && e == nil {
				e = err
			}
		})
		if e != nil {
			return e
		}
		ring.Linear = append(ring.Linear, cost.LinearTime{Level: level, Diagonals: len(idx), BabySteps: babies, GiantSteps: giants, Seconds: secs})
	}
	return nil
}
