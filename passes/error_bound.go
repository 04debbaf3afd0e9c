package passes

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// CKKS error model.
//
// A CKKS ciphertext at scale Δ = 2^LogScale decrypts to Δ·(m + e): m is the
// exact slot vector, e the error bounded here, in message units. Every
// operation adds fresh noise: a random polynomial whose coefficients have
// variance V gives each slot (real part) an error of standard deviation
// √(N·V/2), uncorrelated across slots. With Lattigo's defaults (uniform
// ternary secret s of density 2/3, error σ_e = 3.2) and the way
// runtime/ckks executes a program, the sources are, per slot (each was
// checked against Lattigo v5 measurements):
//
//   - rescale: e = τ0 + τ1·s with τ uniform in [-1/2, 1/2], so σ_r =
//     √(N·(1 + 2N/3)/24)·2^-LogScale (CKKSRescaleSigma; about N/6 per unit
//     of scale);
//   - fresh encryption with the secret key, as runtime/ckks encrypts:
//     σ_e·√(N/2)·2^-LogScale (public-key encryption would give about σ_r);
//   - key switching of the rotations of a linear transformation: the
//     runtime rotates the input hoisted and lazily (Lattigo's BSGS), so the
//     rounding of ModDown lands on the product, at scale Δ·q, and only the
//     key error Σ_i d_i·e_i/P of the centered digits d_i (|d_i| < Q_i/2)
//     reaches the input: σ_ks = N·σ_e·√(Σ_i (Q_i/P)²/24)·2^-LogScale over
//     the digits Q_i (groups of len(P) primes) of the level. With two P
//     primes it is negligible; with one, the base prime's digit gives about
//     2σ_r;
//   - encoding the matrix diagonals: each slot of each diagonal, zeros
//     included, is off by a rounding error that multiplies the input slot
//     it meets. The diagonals repeat with the block, so their polynomials
//     have only 2·BlockSize non-zero coefficients, and the error is σ_pt =
//     √(BlockSize/6)·2^-LogScale per unit of the input;
//   - polynomial evaluation: σ_r·(depth + Σ_k |c_k|), which covers
//     Lattigo's Chebyshev evaluator (degrees 7 to 31, coefficients up to
//     100: measured σ_r·(0.3 to 1.5)·Σ|c_k|), plus one rescale at the change
//     of variable.
//
// Errors then propagate, to first order: a linear instruction applies its
// matrix to its input's error, a polynomial multiplies it by p' (bounded by
// max |p'| over a window of the input's error around the input), a product
// x·y gives y·e_x + x·e_y plus the second-order e_x·e_y (bounded slot by
// slot), a sum adds errors.
// Sources are independent, so the error of a slot of v has a standard
// deviation σ_v that AssignErrorBounds estimates by propagating noise probes
// (a Monte Carlo run of the model, exact through the matrices), without the
// worst-case sum over every matrix row's coefficients (that triangle
// inequality, ||A||∞·b, overestimated the errors seen by 300 to 34,000
// times on three layers) or the product of operator norms along the path
// (9 orders of magnitude over 20 layers). With calibration samples the
// probes are linearized along the plaintext runs of a few of them (the
// values x, y and p' of each sample, signed), so that the first-order
// cancellations of Newton steps and the slots a ReLU zeroes count; without,
// along the worst case of each slot (its largest magnitudes, its largest
// |p'| over its calibrated range). On ResNet-20 the worst case overestimated
// the error 1.3e4 times (a ReLU's slope passed every slot's noise, 19
// times), on an attention block's LayerNorm and softmax it gave 17 where
// the encrypted run erred by 2.3e-8 (the magnitudes of x and 1/√x
// multiplied in every product).
//
// A bootstrap refreshes its input, divided by Instr.Bound into [-1, 1],
// with an error of standard deviation 2^-CKKSBootBits.
//
// The bound is Bound_v = CKKSTail·safety·σ_v. CKKSTail = 10 covers the
// largest of the N/2 slots: the noises τ·s and d_i·e_i of a slot are
// products of two random quantities, heavier-tailed than a Gaussian, and
// the largest slot error reached 4 to 12 standard deviations in the
// measurements. The safety factor (default CKKSSafety = 2) covers the
// model's simplifications. On cancer-mlp and digits-mlp run by
// runtime/ckks (N = 2^14 and 2^15) the bound was 4 to 300 times the
// largest error over every slot of a full ciphertext, tightest on the first
// layers.

// Feature packing (ckksir.PackFeature) changes only the linear
// instructions: each output ciphertext is Σ_k round(A[j][k]·q)·x_k over the
// input ciphertexts, then one rescale by q (≈ 2^LogScale). No rotation, so
// no key-switching noise; each non-zero coefficient's rounding (uniform in
// [-1/2, 1/2] over q) multiplies its input, σ² = Σ_k |x_k|²·2^-2LogScale/12
// over the row's non-zero coefficients; the rescale adds σ_r and the bias's
// rounding 2^-LogScale/√12. The gains r and o come from the dense matrix as
// in the slot packing.

// CKKSSafety is the default safety factor on the predicted errors.
const CKKSSafety = 2.0

// CKKSTail is the number of standard deviations the bound allows the
// largest slot error of a value.
const CKKSTail = 10.0

// ckksSigmaE is the standard deviation of Lattigo's error distribution.
const ckksSigmaE = 3.2

// ckksLipschitzMargin covers maxima of |p'| between the grid points.
const ckksLipschitzMargin = 1.05

// CKKSRescaleSigma is σ_r = √(N·(1 + 2N/3)/24)·2^-LogScale, the standard
// deviation of the slot error one rescale adds, in message units, with a
// dense ternary secret.
func CKKSRescaleSigma(p ckksir.Params) float64 {
	n := math.Ldexp(1, p.LogN)
	return math.Sqrt(n*(1+2*n/3)/24) * math.Ldexp(1, -p.LogScale)
}

// ckksEncodeSigma is σ_pt = √(blockSize/6)·2^-LogScale, the absolute slot
// error of a plaintext vector that repeats every blockSize slots, encoded
// at scale 2^LogScale.
func ckksEncodeSigma(p ckksir.Params, blockSize int) float64 {
	return math.Sqrt(float64(blockSize)/6) * math.Ldexp(1, -p.LogScale)
}

// ckksFreshSigma is the slot error of a fresh secret-key encryption:
// σ_e·√(N/2)·2^-LogScale, plus the rounding of the encoding.
func ckksFreshSigma(p ckksir.Params) float64 {
	n := math.Ldexp(1, p.LogN)
	return math.Sqrt(n/2*(ckksSigmaE*ckksSigmaE+1.0/12)) * math.Ldexp(1, -p.LogScale)
}

// ckksKeySwitchSigma is σ_ks for a hoisted, lazy key switch at the given
// level: the key error of the digits, groups of len(P) Q primes (the
// rounding by P lands on the product and is negligible).
func ckksKeySwitchSigma(p ckksir.Params, level int) float64 {
	n := math.Ldexp(1, p.LogN)
	logP := 0
	for _, b := range p.LogP {
		logP += b
	}
	alpha := max(1, len(p.LogP))
	ratio2 := 0.0
	for start := 0; start <= level && start < len(p.LogQ); start += alpha {
		bits := 0
		for i := start; i < start+alpha && i <= level && i < len(p.LogQ); i++ {
			bits += p.LogQ[i]
		}
		ratio2 += math.Ldexp(1, 2*(bits-logP))
	}
	return n * ckksSigmaE * math.Sqrt(ratio2/24) * math.Ldexp(1, -p.LogScale)
}

// CKKSBootBits sets the standard deviation 2^-CKKSBootBits of the slot
// error of a bootstrap on messages within [-1, 1]. Lattigo's default
// circuit measured a max error of 2.6e-8 over 1024 uniform messages at
// N=2^16 (BENCHMARKS.md: σ about 2^-27) and 4.6e-6 after seven bootstraps
// of a depth-57 network at N=2^13; but ResNet-20's run at N=2^16 (every
// slot full, messages up to ±1) erred by 7.3e-5 after 18 bootstraps, about
// 2.6 times the σ this model gives it with 2^-22 (an eighth of its bound),
// where the bootstrap noise dominates: a deep pipeline's bootstraps err
// well beyond the standalone measurement, and a smaller σ would leave that
// run too little margin. The former 2^-20 made the bound 8 times looser.
const CKKSBootBits = 22

// ckksProbes is the number of noise probes AssignErrorBounds propagates
// without reference samples.
const ckksProbes = 16

// ckksRefSamples is the number of calibration samples the probes are
// linearized at when the lowering has calibration samples, and
// ckksRefProbes the number of probes per sample.
const (
	ckksRefSamples = 4
	ckksRefProbes  = 8
)

// ckksNoise is a value's noise probes: vectors over its layout, each a
// sample of the first-order error the model's sources leave there. The
// probes come in equal groups, one per reference sample (one group
// without references).
type ckksNoise [][]float64

func newCKKSNoise(probes, size int) ckksNoise {
	n := make(ckksNoise, probes)
	for k := range n {
		n[k] = make([]float64, size)
	}
	return n
}

// scaled is c·n.
func (n ckksNoise) scaled(c float64) ckksNoise {
	out := newCKKSNoise(len(n), len(n[0]))
	out.addScaled(c, n)
	return out
}

// addScaled adds c·m to n.
func (n ckksNoise) addScaled(c float64, m ckksNoise) {
	for k := range n {
		for j, x := range m[k] {
			n[k][j] += c * x
		}
	}
}

// addScaledGroups adds m to n, slot j of a probe of group g multiplied by
// c[g][j] (c[0] for every group when c has one vector).
func (n ckksNoise) addScaledGroups(c [][]float64, m ckksNoise, groups int) {
	per := len(n) / groups
	for k := range n {
		ck := c[0]
		if len(c) > 1 {
			ck = c[k/per]
		}
		for j, x := range m[k] {
			n[k][j] += ck[j] * x
		}
	}
}

// addFresh adds an independent source of standard deviation sigma to
// every slot of every probe.
func (n ckksNoise) addFresh(r *rand.Rand, sigma float64) {
	if sigma == 0 {
		return
	}
	for k := range n {
		for j := range n[k] {
			n[k][j] += sigma * r.NormFloat64()
		}
	}
}

// addProduct adds a·m to n (a maps m's layout to n's).
func (n ckksNoise) addProduct(a *ckksSparse, m ckksNoise) {
	for k := range n {
		out, in := n[k], m[k]
		for e, v := range a.v {
			out[a.r[e]] += v * in[a.c[e]]
		}
	}
}

// slotSigmas is each slot's standard deviation in each group: the root
// mean square over the group's probes (out[g][j]).
func (n ckksNoise) slotSigmas(groups int) [][]float64 {
	per := len(n) / groups
	out := make([][]float64, groups)
	for g := range groups {
		o := make([]float64, len(n[0]))
		for j := range o {
			s2 := 0.0
			for k := g * per; k < (g+1)*per; k++ {
				s2 += n[k][j] * n[k][j]
			}
			o[j] = math.Sqrt(s2 / float64(per))
		}
		out[g] = o
	}
	return out
}

// addFreshSlots adds an independent source to every slot of every probe,
// of standard deviation sigma[g][j] in slot j of the probes of group g.
func (n ckksNoise) addFreshSlots(r *rand.Rand, sigma [][]float64) {
	per := len(n) / len(sigma)
	for k := range n {
		for j, s := range sigma[k/per] {
			if s != 0 {
				n[k][j] += s * r.NormFloat64()
			}
		}
	}
}

// sigma is the largest per-slot standard deviation: the root mean square
// over a group's probes, maximized over the slots and the groups.
func (n ckksNoise) sigma(groups int) float64 {
	worst := 0.0
	for _, g := range n.slotSigmas(groups) {
		worst = max(worst, lowerMaxAbs(g))
	}
	return worst
}

// AssignErrorBounds sets Values[i].Bound for every value of p: the predicted
// bound on the absolute slot error of an encrypted execution against the
// plaintext execution of the same program, following the model described
// above. mags[i] holds, for each slot of value i's layout, the largest
// magnitude it takes (from calibration, or a bound on it); safety <= 0 means
// CKKSSafety.
//
// The linear maps from the sources to each value are followed by Monte
// Carlo rather than bounded by norms: ckksProbes noise vectors, each
// source drawn as independent Gaussians of its standard deviation, go
// through the program's matrices exactly (a polynomial multiplies them by
// its Lipschitz constant, a product by the other factor's largest
// magnitude in that slot), and σ_v is the largest per-slot root mean square over the
// probes. That is the standard deviation the model gives each slot, up to
// sampling (which, maximized over slots, errs high); norm bounds (||A||₂
// of every layer multiplied along the path) grow geometrically with depth
// and overestimated a 20-layer network's error by 9 orders of magnitude.
// The probes are seeded: the same program gets the same bounds.
func AssignErrorBounds(p *ckksir.Program, mags [][]float64, safety float64) error {
	return assignErrorBounds(p, mags, nil, nil, nil, safety)
}

// assignErrorBounds is AssignErrorBounds with, when lo and hi are set, the
// calibrated range [lo[i][j], hi[i][j]] of slot j of value i (nil where
// unknown): a polynomial then multiplies each slot's noise by max |p'| over
// that slot's range, widened by lowerCalibMargin and by the input's own
// error (see ckksLocalLipschitz), instead of over its whole interval. The
// inverses of softmax and layer normalization (DecomposeTransformer) start
// with polynomials on intervals widened well beyond most rows' data, steep
// at their low ends: over the whole interval their Lipschitz constants were
// tens of times what the rows meet, and compounded through a transformer's
// blocks.
//
// With refs, calibration samples of the program's inputs (per input name,
// each sample a vector over the input's layout), the probes are instead
// linearized along the plaintext runs of the program on those samples
// (ckksRefProbes probes per sample, σ_v maximized over the samples): a
// product multiplies each factor's noise by the other factor's signed value
// in that sample, a polynomial by the sign of p' at the sample's point
// times max |p'| over a window of that slot's error in that sample
// around it (see ckksSampleLipschitz). That is the first-order error of
// each sample: it keeps the cancellations of a Newton step (y(2 - xy) is flat in y at the
// fixed point, while magnitudes multiply its factors' noises by |x|·|y|
// each step, a 1e8-fold overestimate across a transformer) and of a ReLU
// (slots with negative inputs pass no noise, where the worst case over the
// calibrated range passed the slope of every slot, compounding across
// ResNet-20's 19 activations).
func assignErrorBounds(p *ckksir.Program, mags, lo, hi [][]float64, refs map[string][][]float64, safety float64) error {
	if len(mags) != len(p.Values) {
		return fmt.Errorf("error bounds: %d magnitudes for %d values", len(mags), len(p.Values))
	}
	for i, m := range mags {
		if len(m) != p.Values[i].Layout.Size() {
			return fmt.Errorf("error bounds: %d magnitudes for v%d of %d slots", len(m), i, p.Values[i].Layout.Size())
		}
	}
	if safety <= 0 {
		safety = CKKSSafety
	}
	garbage, err := ckksGarbage(p)
	if err != nil {
		return err
	}
	// ref[v][g] is value v in reference sample g (nil without references).
	ref := make([][][]float64, len(p.Values))
	groups, probes := 1, ckksProbes
	if refs != nil {
		if groups = ckksRefInputs(p, refs, ref); groups > 0 {
			probes = groups * ckksRefProbes
		} else {
			groups = 1
		}
	}
	sampled := ref != nil && len(p.Inputs) > 0 && ref[p.Inputs[0].Value] != nil
	sigR := CKKSRescaleSigma(p.Params)
	sigPt := ckksEncodeSigma(p.Params, p.BlockSize)
	r := rand.New(rand.NewPCG(3, 17))
	noise := make([]ckksNoise, len(p.Values))
	last := make([]int, len(p.Values))
	for i, ins := range p.Instrs {
		for _, a := range ins.In {
			last[a] = i
		}
	}
	finish := func(v int, n ckksNoise) {
		noise[v] = n
		p.Values[v].Bound = CKKSTail * safety * n.sigma(groups)
		if math.IsNaN(p.Values[v].Bound) {
			// Bounds overflowed upstream (Inf times a zero magnitude):
			// unbounded, not undefined.
			p.Values[v].Bound = math.Inf(1)
		}
	}
	for _, in := range p.Inputs {
		n := newCKKSNoise(probes, p.Values[in.Value].Layout.Size())
		n.addFresh(r, ckksFreshSigma(p.Params))
		finish(in.Value, n)
	}
	for i, ins := range p.Instrs {
		in := func(k int) ckksNoise { return noise[ins.In[k]] }
		outLay := p.Values[ins.Out].Layout
		if sampled {
			ref[ins.Out] = ckksRefRun(p, &ins, ref)
		}
		n := newCKKSNoise(probes, outLay.Size())
		switch ins.Op {
		case ckksir.OpLinear:
			enc2 := make([]float64, outLay.Size())
			for k := range ins.In {
				a := ckksLinearEntries(p, &ins, k)
				x := in(k)
				if p.Packing == ckksir.PackFeature {
					n.addProduct(a, x)
					for e := range a.v {
						m := mags[ins.In[k]][a.c[e]]
						enc2[a.r[e]] += m * m
					}
					continue
				}
				m := ins.Matrices[k]
				rotates := false
				for d := range m.Diagonals {
					rotates = rotates || d != 0
				}
				if rotates { // the key-switching noise lands on the rotated input
					x = x.scaled(1)
					x.addFresh(r, ckksKeySwitchSigma(p.Params, p.Values[ins.In[k]].Level))
				}
				n.addProduct(a, x)
				ckksEncodingNoise(p, m, ins.In[k], ins.Out, mags, garbage, enc2)
			}
			if p.Packing == ckksir.PackFeature {
				ulp := math.Ldexp(1, -p.Params.LogScale) / math.Sqrt(12)
				n.addFresh(r, ulp*math.Sqrt(lowerMaxAbs(enc2)))
				n.addFresh(r, math.Hypot(sigR, ulp))
				break
			}
			n.addFresh(r, sigPt*math.Sqrt(lowerMaxAbs(enc2)))
			n.addFresh(r, math.Hypot(sigR, sigPt))
		case ckksir.OpPoly:
			x := ins.In[0]
			var local [][]float64
			switch {
			case sampled:
				// Each slot's window is its own error bound in that sample.
				// The largest bound over all slots, set by rows far from
				// this one, widened a steep inverse's window over its whole
				// low end, and that compounded through a softmax's rounds.
				win := in(0).slotSigmas(groups)
				for _, w := range win {
					for j := range w {
						w[j] *= CKKSTail * safety
					}
				}
				local = ckksSampleLipschitz(ins.Poly, ref[x], win)
			case lo != nil && lo[x] != nil && hi[x] != nil:
				local = [][]float64{ckksLocalLipschitz(ins.Poly, lo[x], hi[x], p.Values[x].Bound)}
			default:
				lip, _ := ckksPolyLipschitz(ins.Poly)
				local = [][]float64{lowerFill(outLay.Size(), lip)}
			}
			n.addScaledGroups(local, in(0), groups)
			lip := 0.0
			for _, l := range local {
				lip = max(lip, lowerMaxAbs(l))
			}
			if ins.Poly.A != -1 || ins.Poly.B != 1 {
				n.addFresh(r, sigR*lip*(ins.Poly.B-ins.Poly.A)/2)
			}
			n.addFresh(r, sigR*ckksPolyNoiseFactor(ins.Poly))
		case ckksir.OpMul:
			// Each factor's noise times the other factor in that slot: its
			// value in each reference sample, or its largest magnitude.
			x, y := [][]float64{mags[ins.In[0]]}, [][]float64{mags[ins.In[1]]}
			if sampled {
				x, y = ref[ins.In[0]], ref[ins.In[1]]
			}
			n.addScaledGroups(y, in(0), groups)
			n.addScaledGroups(x, in(1), groups)
			// The second-order e_x·e_y, slot by slot: bounded by the
			// product of the two slots' bounds (not of the values' largest
			// bounds, which pairs slots that never meet, as a softmax's
			// largest exponentials and its smallest rows' inverses).
			second := in(0).slotSigmas(groups)
			sy := in(1).slotSigmas(groups)
			for g, sx := range second {
				for j := range sx {
					sx[j] = math.Hypot(sigR, CKKSTail*safety*sx[j]*sy[g][j])
				}
			}
			n.addFreshSlots(r, second)
		case ckksir.OpAdd:
			n.addScaled(1, in(0))
			n.addScaled(1, in(1))
		case ckksir.OpAddConst:
			n.addScaled(1, in(0))
			if ins.Bias != nil {
				n.addFresh(r, sigPt)
			}
		case ckksir.OpMulConst:
			n.addScaledGroups([][]float64{ckksSlotVector(p, ins.Vector, outLay)}, in(0), groups)
			n.addFresh(r, math.Hypot(sigR, sigPt*lowerMaxAbs(mags[ins.In[0]])))
		case ckksir.OpBootstrap:
			// The input, divided by Bound, is refreshed with an error of
			// standard deviation 2^-CKKSBootBits on [-1, 1].
			inv := 1.0
			if ins.Bound > 1 {
				inv = 1 / ins.Bound
			}
			n.addScaled(inv, in(0))
			n.addFresh(r, math.Ldexp(1, -CKKSBootBits))
		default:
			return fmt.Errorf("error bounds: unknown op %v", ins.Op)
		}
		finish(ins.Out, n)
		for _, a := range ins.In {
			if last[a] == i {
				noise[a], ref[a] = nil, nil
			}
		}
	}
	return nil
}

// ckksSlotVector is vec (BlockSize values, or one per element in feature
// packing) over the elements of lay; nil means zero.
func ckksSlotVector(p *ckksir.Program, vec []float64, lay ckksir.Layout) []float64 {
	out := make([]float64, lay.Size())
	if vec == nil {
		return out
	}
	for j := range out {
		k := j
		if p.Packing != ckksir.PackFeature {
			k = lay.Slot(j)
		}
		if k >= 0 && k < len(vec) {
			out[j] = vec[k]
		}
	}
	return out
}

// ckksRefInputs fills ref for p's inputs from refs (samples over each
// input's layout) and returns the number of reference samples, 0 when refs
// do not cover every input with the same number of samples of the right
// size.
func ckksRefInputs(p *ckksir.Program, refs map[string][][]float64, ref [][][]float64) int {
	n := -1
	for _, in := range p.Inputs {
		xs := refs[in.Name]
		if len(xs) == 0 || (n >= 0 && len(xs) != n) {
			return 0
		}
		n = len(xs)
		for _, x := range xs {
			if len(x) != p.Values[in.Value].Layout.Size() {
				return 0
			}
		}
	}
	if n <= 0 {
		return 0
	}
	for _, in := range p.Inputs {
		ref[in.Value] = refs[in.Name]
	}
	return n
}

// ckksRefRun computes the output of ins in every reference sample, from
// its inputs' (a plaintext run of the program over the layouts).
func ckksRefRun(p *ckksir.Program, ins *ckksir.Instr, ref [][][]float64) [][]float64 {
	lay := p.Values[ins.Out].Layout
	x := ref[ins.In[0]]
	var entries []*ckksSparse
	if ins.Op == ckksir.OpLinear {
		for k := range ins.In {
			entries = append(entries, ckksLinearEntries(p, ins, k))
		}
	}
	out := make([][]float64, len(x))
	for g := range out {
		o := make([]float64, lay.Size())
		switch ins.Op {
		case ckksir.OpLinear:
			copy(o, ckksSlotVector(p, ins.Bias, lay))
			for k, a := range entries {
				in := ref[ins.In[k]][g]
				for e, v := range a.v {
					o[a.r[e]] += v * in[a.c[e]]
				}
			}
		case ckksir.OpPoly:
			a, b := ins.Poly.A, ins.Poly.B
			for j, v := range x[g] {
				o[j] = plain.Chebyshev(ins.Poly.Coeffs, (2*v-a-b)/(b-a))
			}
		case ckksir.OpMul, ckksir.OpAdd:
			y := ref[ins.In[1]][g]
			for j, v := range x[g] {
				if ins.Op == ckksir.OpMul {
					o[j] = v * y[j]
				} else {
					o[j] = v + y[j]
				}
			}
		case ckksir.OpAddConst, ckksir.OpMulConst:
			if ins.Op == ckksir.OpAddConst {
				copy(o, ckksSlotVector(p, ins.Bias, lay))
				for j, v := range x[g] {
					o[j] += v
				}
			} else {
				c := ckksSlotVector(p, ins.Vector, lay)
				for j, v := range x[g] {
					o[j] = v * c[j]
				}
			}
		case ckksir.OpBootstrap:
			for j, v := range x[g] {
				o[j] = v / max(1, ins.Bound)
			}
		}
		out[g] = o
	}
	return out
}

// ckksEncodingNoise adds to enc2[j], for each slot j of the output of a
// linear instruction, the sum of the squared magnitudes of the input slots
// that matrix m's diagonals meet at j: each diagonal's encoding error, zero
// entries included, multiplies them. A diagonal may reach into the
// neighbouring block, which holds the same tensor for another sample; slots
// outside the tensor hold the value's garbage.
func ckksEncodingNoise(p *ckksir.Program, m *ckksir.Matrix, in, out int, mags [][]float64, garbage []float64, enc2 []float64) {
	inLay, outLay := p.Values[in].Layout, p.Values[out].Layout
	bs := p.BlockSize
	inEl := inLay.Elements(bs)
	for d := range m.Diagonals {
		for j := range enc2 {
			c := inEl[((outLay.Slot(j)+d)%bs+bs)%bs]
			x := garbage[in]
			if c >= 0 {
				x = mags[in][c]
			}
			enc2[j] += x * x
		}
	}
}

// ckksGarbage returns, for every value, the magnitude of the slots of its
// blocks outside its tensor, assuming the runtime encrypts inputs with zeros
// there: linear instructions write zeros (their rows and bias vanish
// outside the output), a polynomial maps the garbage of its input, products
// and sums combine them. In feature packing every slot holds a sample's
// element: there is no garbage.
func ckksGarbage(p *ckksir.Program) ([]float64, error) {
	g := make([]float64, len(p.Values))
	if p.Packing == ckksir.PackFeature {
		return g, nil
	}
	for _, ins := range p.Instrs {
		switch ins.Op {
		case ckksir.OpPoly:
			a, b := ins.Poly.A, ins.Poly.B
			x := g[ins.In[0]]
			// The garbage of the input is known only in magnitude: take the
			// worse sign.
			g[ins.Out] = max(math.Abs(plain.Chebyshev(ins.Poly.Coeffs, (2*x-a-b)/(b-a))),
				math.Abs(plain.Chebyshev(ins.Poly.Coeffs, (-2*x-a-b)/(b-a))))
		case ckksir.OpMul:
			g[ins.Out] = g[ins.In[0]] * g[ins.In[1]]
		case ckksir.OpBootstrap:
			g[ins.Out] = g[ins.In[0]]
			if ins.Bound > 1 {
				g[ins.Out] /= ins.Bound
			}
		case ckksir.OpAdd:
			g[ins.Out] = g[ins.In[0]] + g[ins.In[1]]
		case ckksir.OpAddConst, ckksir.OpMulConst:
			g[ins.Out] = g[ins.In[0]]
			vec := ins.Bias
			if ins.Op == ckksir.OpMulConst {
				vec = ins.Vector
			}
			el := p.Values[ins.Out].Layout.Elements(p.BlockSize)
			for j, v := range vec {
				if v != 0 && el[j] < 0 {
					return nil, fmt.Errorf("error bounds: v%d has a constant outside its tensor", ins.Out)
				}
			}
		}
	}
	return g, nil
}

// ckksSparse is a matrix as a list of entries (output row, input column,
// coefficient), rows and columns relative to the layouts.
type ckksSparse struct {
	rows, cols int
	r, c       []int32
	v          []float64
}

// ckksEntries lists the entries of m between the given layouts. Entries
// outside the layouts (which read or write garbage) are dropped.
func ckksEntries(p *ckksir.Program, m *ckksir.Matrix, in, out ckksir.Layout) *ckksSparse {
	a := &ckksSparse{rows: out.Size(), cols: in.Size()}
	bs := p.BlockSize
	inEl := in.Elements(bs)
	diag := make([]float64, bs)
	for _, d := range m.Indices() {
		dd := m.Diagonals[d]
		dd.Expand(diag)
		for r := range out.Size() {
			j := out.Slot(r)
			if diag[j] == 0 || j+d < 0 || j+d >= bs {
				continue
			}
			c := inEl[j+d]
			if c < 0 {
				continue
			}
			a.r = append(a.r, int32(r))
			a.c = append(a.c, int32(c))
			a.v = append(a.v, diag[j])
		}
	}
	return a
}

// ckksLinearEntries lists the entries of the i-th matrix of a linear
// instruction between its input's and output's layouts, whatever the
// packing.
func ckksLinearEntries(p *ckksir.Program, ins *ckksir.Instr, i int) *ckksSparse {
	in, out := p.Values[ins.In[i]].Layout, p.Values[ins.Out].Layout
	if ins.Dense == nil {
		return ckksEntries(p, ins.Matrices[i], in, out)
	}
	m := ins.Dense[i]
	a := &ckksSparse{rows: m.Rows, cols: m.Cols}
	for r := 0; r < m.Rows; r++ {
		for c := 0; c < m.Cols; c++ {
			if v := m.At(r, c); v != 0 {
				a.r = append(a.r, int32(r))
				a.c = append(a.c, int32(c))
				a.v = append(a.v, v)
			}
		}
	}
	return a
}

// ckksPolyNoiseFactor is depth + Σ_k |c_k|: the standard deviation of the
// noise a polynomial evaluation adds, in units of σ_r (see the model
// above).
func ckksPolyNoiseFactor(p *ckksir.Poly) float64 {
	f := float64(p.Depth())
	for _, c := range p.Coeffs {
		f += math.Abs(c)
	}
	return f
}

// ckksPolyGrid is the number of grid intervals on which ckksPolyLipschitz
// samples p and p'.
const ckksPolyGrid = 4096

// ckksPolyLipschitz returns L = max |p'(x)| over [A, B] (with the change of
// variable's factor 2/(B-A) and a 5% margin for maxima between grid points)
// and max |p(x)| over [A, B], both sampled on a uniform grid and on the
// Chebyshev points (denser at the ends, where Chebyshev series move
// fastest).
func ckksPolyLipschitz(p *ckksir.Poly) (lip, maxAbs float64) {
	d := ckksChebDerivative(p.Coeffs)
	for i := 0; i <= ckksPolyGrid; i++ {
		for _, t := range []float64{math.Cos(math.Pi * float64(i) / ckksPolyGrid), -1 + 2*float64(i)/ckksPolyGrid} {
			lip = max(lip, math.Abs(plain.Chebyshev(d, t)))
			maxAbs = max(maxAbs, math.Abs(plain.Chebyshev(p.Coeffs, t)))
		}
	}
	return lip * 2 / (p.B - p.A) * ckksLipschitzMargin, maxAbs
}

// ckksChebDerivative returns the Chebyshev coefficients of the derivative
// in t of the series c: d_{k-1} = d_{k+1} + 2k·c_k, with d_0 halved.
func ckksChebDerivative(c []float64) []float64 {
	n := len(c)
	d := make([]float64, n+1)
	for k := n - 1; k >= 1; k-- {
		d[k-1] = d[k+1] + 2*float64(k)*c[k]
	}
	d[0] /= 2
	return d[:max(1, n-1)]
}

// ckksLocalGrid is the number of grid intervals on which
// ckksLocalLipschitz samples p' over a slot's range.
const ckksLocalGrid = 64

// ckksLocalSlack widens a slot's range, in units of the polynomial's
// variable t in [-1, 1], beyond lowerCalibMargin and the input's error:
// samples beyond the calibration set.
const ckksLocalSlack = 0.02

// ckksLocalLipschitz returns, for each slot j, max |p'| (with the change
// of variable's factor and ckksLipschitzMargin) over the slot's range
// [lo[j], hi[j]], its half-width widened by lowerCalibMargin, ckksLocalSlack
// and the input's error bound inErr, clipped to [A, B]: |p(x+e) - p(x)| is
// at most |e| times max |p'| between x and x+e.
func ckksLocalLipschitz(p *ckksir.Poly, lo, hi []float64, inErr float64) []float64 {
	d := ckksChebDerivative(p.Coeffs)
	scale := 2 / (p.B - p.A) * ckksLipschitzMargin
	out := make([]float64, len(lo))
	seen := map[[2]float64]float64{}
	for j := range lo {
		key := [2]float64{lo[j], hi[j]}
		if l, ok := seen[key]; ok {
			out[j] = l
			continue
		}
		tl, th := (2*lo[j]-p.A-p.B)/(p.B-p.A), (2*hi[j]-p.A-p.B)/(p.B-p.A)
		c, w := (tl+th)/2, math.Abs(th-tl)/2*lowerCalibMargin+ckksLocalSlack+inErr*2/(p.B-p.A)
		a, b := max(-1, c-w), min(1, c+w)
		lip := 0.0
		for i := 0; i <= ckksLocalGrid && a <= b; i++ {
			lip = max(lip, math.Abs(plain.Chebyshev(d, a+(b-a)*float64(i)/ckksLocalGrid)))
		}
		out[j] = lip * scale
		seen[key] = out[j]
	}
	return out
}

// ckksSampleSlack widens the window of ckksSampleLipschitz around a
// reference sample's point, in units of t, for samples near it: a steep
// polynomial (an inverse square root's start near its interval's low end)
// otherwise takes the slope of inputs no sample reaches.
const ckksSampleSlack = 0.005

// ckksSampleGrid is the number of grid intervals over [-1, 1] on which
// ckksSampleLipschitz tabulates |p'|.
const ckksSampleGrid = 1 << 13

// ckksSampleLipschitz returns, for each reference sample g and slot j of
// the polynomial's input x (x[g][j]), the factor its noise is multiplied
// by: the sign of p' at the point times max |p'| (with the change of
// variable's factor and ckksLipschitzMargin) within ckksSampleSlack plus
// the slot's error bound inErr[g][j] of it, in t, clipped to [-1, 1]. The sign
// keeps the first-order cancellations between paths; the window covers the
// input's error (|p(x+e) - p(x)| <= |e|·max |p'| between x and x+e) and
// samples near the reference ones.
func ckksSampleLipschitz(p *ckksir.Poly, x, inErr [][]float64) [][]float64 {
	d := ckksChebDerivative(p.Coeffs)
	scale := 2 / (p.B - p.A) * ckksLipschitzMargin
	// table[k][i] = max |p'| over grid points i .. i+2^k.
	table := [][]float64{make([]float64, ckksSampleGrid+1)}
	for i := range table[0] {
		table[0][i] = math.Abs(plain.Chebyshev(d, -1+2*float64(i)/ckksSampleGrid))
	}
	for k := 1; 1<<k <= ckksSampleGrid; k++ {
		prev, h := table[k-1], 1<<(k-1)
		row := make([]float64, len(prev)-h)
		for i := range row {
			row[i] = max(prev[i], prev[i+h])
		}
		table = append(table, row)
	}
	rangeMax := func(a, b int) float64 { // over grid points a..b
		k := 0
		for 2<<k <= b-a+1 {
			k++
		}
		return max(table[k][a], table[k][b-(1<<k)+1])
	}
	out := make([][]float64, len(x))
	for g, xs := range x {
		o := make([]float64, len(xs))
		for j, v := range xs {
			w := ckksSampleSlack + inErr[g][j]*2/(p.B-p.A)
			if math.IsNaN(w) {
				w = math.Inf(1)
			}
			t := (2*v - p.A - p.B) / (p.B - p.A)
			lo := int(math.Floor((max(-1, t-w) + 1) / 2 * ckksSampleGrid))
			hi := int(math.Ceil((min(1, t+w) + 1) / 2 * ckksSampleGrid))
			lo, hi = max(0, min(lo, ckksSampleGrid)), max(0, min(hi, ckksSampleGrid))
			if hi < lo || math.IsNaN(t) {
				lo, hi = 0, ckksSampleGrid
			}
			l := rangeMax(lo, hi) * scale
			if plain.Chebyshev(d, max(-1, min(1, t))) < 0 {
				l = -l
			}
			o[j] = l
		}
		out[g] = o
	}
	return out
}
