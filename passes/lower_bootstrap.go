package passes

import (
	"errors"
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

// Lowering with bootstrapping.
//
// When LowerOptions.Boot is set and no modulus chain holds the circuit's
// depth, LowerCKKS lowers onto a residual chain that leaves room for the
// bootstrapping circuit under the 128-bit bound of the sparse secret
// bootstrapping needs (MaxLogQPSparse128), and PlaceBootstraps decides
// where the bootstraps go. Each bootstrap divides its input by a power of
// two above the value's calibrated magnitude (bootstrapping is accurate on
// [-1, 1]) and a constant product restores it one level below the top.

// MaxLogQPSparse128 is the largest log2(QP) of a 128-bit ring with the
// sparse ternary secret of Hamming weight 192 that ckksir.DefaultBootParams
// uses, by log2 N: the moduli of Lattigo's 128-bit bootstrapping parameter
// sets for that secret (N16QP1546H192H32, N15QP768H192H32).
var MaxLogQPSparse128 = map[int]int{15: 768, 16: 1546}

// lowerBootstrapped chooses the residual parameters, places the bootstraps
// and rewrites the program; mags are the magnitudes of the program's values,
// extended here to the values it adds.
func (lw *lowerer) lowerBootstrapped(mags [][]float64) ([][]float64, error) {
	boot := lw.opts.Boot
	maxCost := 0
	for i := range lw.prog.Instrs {
		maxCost = max(maxCost, lowerCost(&lw.prog.Instrs[i]))
	}
	params, err := chooseResidualParams(maxCost+1, lw.blockSize, boot, lw.opts)
	if err != nil {
		return nil, fmt.Errorf("lowering %q: %w", lw.g.Name, err)
	}
	p := lw.prog
	p.Params, p.Boot = params, boot
	p.Batch = params.Slots() / lw.blockSize
	bounds := make([]float64, len(p.Values))
	for i, m := range mags {
		bounds[i] = lowerMaxAbs(m)
	}
	top := params.MaxLevel()
	popts := PlaceOptions{InputLevel: top, BootLevel: top - 1, Bounds: bounds, Naive: lw.opts.NaivePlacement}
	pl, err := PlaceBootstraps(p, popts)
	if err != nil {
		return nil, fmt.Errorf("lowering %q: %w", lw.g.Name, err)
	}
	if lw.opts.Log != nil && pl.Pruned > 0 {
		fmt.Fprintf(lw.opts.Log, "bootstrap placement: %d steps kept only their %d cheapest states (too many values live at once); a cheaper placement may exist\n",
			pl.Pruned, PlacementBeam)
	}
	if lw.opts.Log != nil {
		popts.Naive = !popts.Naive
		if other, err := PlaceBootstraps(p, popts); err == nil {
			best, naive := pl, other
			if lw.opts.NaivePlacement {
				best, naive = other, pl
			}
			fmt.Fprintf(lw.opts.Log, "bootstrap placement: %d bootstraps, predicted cost %.4g; naive (bootstrap when out of levels): %d bootstraps, %.4g\n",
				best.Bootstraps, best.Cost, naive.Bootstraps, naive.Cost)
		}
	}
	q := pl.Program
	// The added values, in order: a bootstrap's holds its input divided by
	// its bound, the restoring product's the bootstrap's input again.
	refreshed := map[int]int{} // bootstrap output -> its input
	for _, ins := range q.Instrs {
		if ins.Out < len(mags) {
			continue
		}
		if ins.Op == ckksir.OpBootstrap {
			in := ins.In[0]
			m := make([]float64, len(mags[in]))
			for j, x := range mags[in] {
				m[j] = x / max(1, ins.Bound)
			}
			mags = append(mags, m)
			lw.vals = append(lw.vals, lowerValue{})
			refreshed[ins.Out] = in
			continue
		}
		in := refreshed[ins.In[0]]
		mags = append(mags, append([]float64(nil), mags[in]...))
		lw.vals = append(lw.vals, lw.vals[in])
	}
	lw.prog = q
	return mags, nil
}

// chooseResidualParams picks, on the largest ring opts allow, the residual
// chain for bootstrapping: the largest scale (40, 35, 30) whose chain of at
// least minLevels levels, the program's own key-switching primes and the
// bootstrapping circuit's primes fit the sparse secret's 128-bit bound,
// with as many levels as fit.
func chooseResidualParams(minLevels, blockSize int, boot *ckksir.BootParams, opts LowerOptions) (ckksir.Params, error) {
	logN := opts.MaxLogN
	bound, ok := MaxLogQPSparse128[logN]
	if !ok {
		return ckksir.Params{}, &ir.UnsupportedError{Reason: fmt.Sprintf("bootstrapping at 128-bit security needs a ring of N=2^15 or 2^16; --max-logn is %d", logN)}
	}
	if need := blockSize * opts.Batch; need > 1<<(logN-1) {
		return ckksir.Params{}, beyondCapacity("blocks of %d slots times %d samples need %d slots, but the ring N=2^%d has %d", blockSize, opts.Batch, need, logN, 1<<(logN-1))
	}
	var errs []error
	for _, s := range ckksScaleCandidates(opts) {
		q0 := min(ckksMaxQ0Bits, s+ckksQ0Margin)
		if q0-s < boot.LogMessageRatio {
			continue
		}
		extra, err := ckks.BootstrapExtraLogQP(ckksir.Params{LogN: logN, LogScale: s, LogQ: []int{q0}}, boot)
		if err != nil {
			return ckksir.Params{}, err
		}
		levels := (bound - extra - q0) / s
		if levels < minLevels {
			errs = append(errs, fmt.Errorf("scale 2^%d: %d levels", s, max(0, levels)))
			continue
		}
		// The program's own keys: as many P primes as fit beside Q.
		for nP := min(ckksMaxPPrimes, levels+1); nP >= 1; nP-- {
			p := ckksChainWithP(logN, levels, s, nP, min(ckksMaxPBits, q0+1))
			if p.LogQP() <= bound {
				p.SecurityBits = 128
				return p, nil
			}
		}
	}
	return ckksir.Params{}, beyondCapacity("bootstrapping: the ring N=2^%d holds no residual chain of %d levels beside the bootstrapping circuit within the %d-bit bound of its sparse secret (%v)",
		logN, minLevels, bound, errors.Join(errs...))
}
