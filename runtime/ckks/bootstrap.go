package ckks

// Bootstrapping (ckksir.OpBootstrap) with Lattigo's hefloat/bootstrapping.
//
// The program's parameters are the residual parameters: bootstrapping
// derives from them its own parameters on the same ring, whose Q chain is
// the program's followed by the primes of the bootstrapping circuit and
// whose P primes are ckksir.BootParams.LogP. Since the ring degrees match,
// the bootstrapping keys are generated under the program's own secret key,
// extended to the larger modulus (what Lattigo's GenEvaluationKeys does for
// equal ring degrees), plus an ephemeral sparse secret for the
// encapsulation keys. A bootstrap takes a ciphertext at any level of the
// residual chain and returns it at the top of that chain with the default
// scale, up to the rounding of Lattigo's scale-down, which the planned
// scale accounts for (see bootScale). Each lane bootstraps with its own
// copy of the evaluator (bootCopy), made on first use and kept with the
// lane: at N=2^16 a copy's buffers are a few hundred MB.

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// secretDistribution is the ternary secret of Hamming weight h, or the
// uniform ternary secret (Lattigo's default, nil) when h is 0.
func secretDistribution(h int) ring.DistributionParameters {
	if h <= 0 {
		return nil
	}
	return ring.Ternary{H: h}
}

// bootLiteral converts a program's bootstrapping choices into Lattigo's
// literal: full-slot bootstrapping on the program's ring, one DFT factor per
// level.
func bootLiteral(p ckksir.Params, b *ckksir.BootParams) bootstrapping.ParametersLiteral {
	perLevel := func(logQ []int) [][]int {
		out := make([][]int, len(logQ))
		for i, q := range logQ {
			out[i] = []int{q}
		}
		return out
	}
	logN, logSlots := p.LogN, p.LogN-1
	evalMod, ratio, eph := b.EvalModLogScale, b.LogMessageRatio, b.EphemeralWeight
	k, deg, double, inv := b.K, b.Mod1Degree, b.DoubleAngle, b.Mod1InvDegree
	return bootstrapping.ParametersLiteral{
		LogN:     &logN,
		LogP:     append([]int(nil), b.LogP...),
		Xs:       secretDistribution(b.SecretWeight),
		LogSlots: &logSlots,
		CoeffsToSlotsFactorizationDepthAndLogScales: perLevel(b.CoeffsToSlotsLogQ),
		SlotsToCoeffsFactorizationDepthAndLogScales: perLevel(b.SlotsToCoeffsLogQ),
		EvalModLogScale:       &evalMod,
		EphemeralSecretWeight: &eph,
		Mod1Type:              hefloat.CosDiscrete,
		LogMessageRatio:       &ratio,
		K:                     &k,
		Mod1Degree:            &deg,
		DoubleAngle:           &double,
		Mod1InvDegree:         &inv,
	}
}

// BootstrapExtraLogQP is the number of modulus bits bootstrapping adds to a
// program with parameters p (only p.LogScale matters) and bootstrapping
// parameters boot: the bit sizes of the primes of its circuit (CoeffsToSlots,
// the modular reduction, SlotsToCoeffs, each SlotsToCoeffs prime enlarged by
// LogScale when the sum stays below 61 bits, as Lattigo does) and of its
// key-switching primes boot.LogP. The bootstrapping keys live in the modulus
// of sum(p.LogQ) + BootstrapExtraLogQP bits, the largest the secret key is
// used under: the compiler keeps that total within the 128-bit bound of the
// secret distribution (boot.SecretWeight), and sizes the residual chain
// p.LogQ accordingly. It errs on incomplete parameters.
func BootstrapExtraLogQP(p ckksir.Params, boot *ckksir.BootParams) (int, error) {
	if boot == nil {
		return 0, fmt.Errorf("ckks: no bootstrapping parameters")
	}
	if len(boot.CoeffsToSlotsLogQ) == 0 || len(boot.SlotsToCoeffsLogQ) == 0 || len(boot.LogP) == 0 || boot.EvalModLogScale <= 0 {
		return 0, fmt.Errorf("ckks: incomplete bootstrapping parameters %s", boot)
	}
	bits := boot.EvalModDepth() * boot.EvalModLogScale
	for _, q := range boot.CoeffsToSlotsLogQ {
		bits += q
	}
	for _, q := range boot.SlotsToCoeffsLogQ {
		if q+p.LogScale < 61 {
			q += p.LogScale
		}
		bits += q
	}
	for _, q := range boot.LogP {
		bits += q
	}
	return bits, nil
}

// planBoot notes whether the program bootstraps and, if so, derives the
// bootstrapping parameters and the Galois elements of their keys.
func (pl *plan) planBoot() error {
	for i := range pl.prog.Instrs {
		if pl.prog.Instrs[i].Op == ckksir.OpBootstrap {
			pl.needBoot = true
		}
	}
	return pl.setupBoot()
}

// setupBoot derives, when needBoot is set, the bootstrapping parameters and
// the Galois elements of their keys.
func (pl *plan) setupBoot() error {
	p := pl.prog
	if !pl.needBoot { // Verify refuses a bootstrap without p.Boot
		return nil
	}
	var btp bootstrapping.Parameters
	err := protect("bootstrapping parameters", func() error {
		var e error
		btp, e = bootstrapping.NewParametersFromLiteral(pl.params, bootLiteral(p.Params, p.Boot))
		if e == nil {
			pl.bootGalEls = btp.GaloisElements(btp.BootstrappingParameters)
		}
		return e
	})
	if err != nil {
		return fmt.Errorf("ckks: Lattigo refuses the bootstrapping parameters %s for %s: %w", p.Boot, p.Params, err)
	}
	if got := btp.BootstrappingParameters.MaxLevel() - pl.params.MaxLevel(); got != p.Boot.Depth() {
		return fmt.Errorf("ckks: Lattigo's bootstrapping for %s adds %d levels, the program expects %d", p.Boot, got, p.Boot.Depth())
	}
	sort.Slice(pl.bootGalEls, func(a, b int) bool { return pl.bootGalEls[a] < pl.bootGalEls[b] })
	pl.boot = &btp
	pl.bootGalLevel = bootKeyLevels(btp, pl.bootGalEls)
	return nil
}

// bootKeyLevels gives each Galois key of the bootstrapping circuit the
// highest level it is used at. Each factor of CoeffsToSlots and
// SlotsToCoeffs runs one level below the previous one, from the top of the
// bootstrapping chain for CoeffsToSlots and from just above the residual
// chain for SlotsToCoeffs: a rotation gets its key at the highest level of
// a factor that uses it (a key over fewer primes is smaller: at N=2^16 a
// SlotsToCoeffs key is about a third of a top-level one). Keys no factor
// uses (the conjugation splitting real and imaginary parts) stay at the
// top.
func bootKeyLevels(btp bootstrapping.Parameters, galEls []uint64) map[uint64]int {
	params := btp.BootstrappingParameters
	levels := make(map[uint64]int, len(galEls))
	for _, d := range []hefloat.DFTMatrixLiteral{btp.CoeffsToSlotsParameters, btp.SlotsToCoeffsParameters} {
		for i, diags := range dftDiagonals(params.LogN(), d) {
			level := d.LevelStart - i // one factor per level (bootLiteral)
			for _, g := range he.GaloisElementsForLinearTransformation(params, diags, 1<<d.LogSlots, d.LogBSGSRatio) {
				if l, ok := levels[g]; !ok || level > l {
					levels[g] = level
				}
			}
		}
	}
	top := params.MaxLevelQ()
	out := make(map[uint64]int, len(galEls))
	for _, g := range galEls {
		out[g] = top
		if l, ok := levels[g]; ok {
			out[g] = l
		}
	}
	return out
}

// bootKeyCount is the number of bootstrapping switching keys: the Galois
// keys, the relinearization key and, with an ephemeral secret, the two
// encapsulation keys. All but the SlotsToCoeffs rotations (see bootKeyLevels) are at the bootstrapping parameters' top level.
func (pl *plan) bootKeyCount() int {
	if !pl.needBoot {
		return 0
	}
	n := len(pl.bootGalEls) + 1
	if pl.boot.EphemeralSecretWeight > 0 {
		n += 2
	}
	return n
}

// bootKeySpec is the key set the bootstrapping circuit needs.
func (pl *plan) bootKeySpec() keySetSpec {
	return keySetSpec{params: pl.boot.BootstrappingParameters, relin: true, galEls: pl.bootGalEls, level: pl.bootKeyLevel, what: "bootstrapping "}
}

// bootKeyLevel is the level the bootstrapping key for Galois element g (0:
// the relinearization key, which the encapsulation keys share) is
// generated at.
func (pl *plan) bootKeyLevel(g uint64) int {
	if lvl, ok := pl.bootGalLevel[g]; ok && g != 0 {
		return lvl
	}
	return pl.boot.BootstrappingParameters.MaxLevelQ()
}

// bootKeyBytes is the size of the bootstrapping keys (see bootKeyCount).
func (pl *plan) bootKeyBytes() int64 {
	if !pl.needBoot {
		return 0
	}
	params := pl.boot.BootstrappingParameters
	n := int64(pl.bootKeyCount() - len(pl.bootGalEls))
	total := n * keyBytes(params, params.MaxLevelQ())
	for _, g := range pl.bootGalEls {
		total += keyBytes(params, pl.bootKeyLevel(g))
	}
	return total
}

// genBootKeys generates the bootstrapping keys under the client's secret
// extended to the bootstrapping modulus, on all cores, calling tick after
// each key.
func (c *Client) genBootKeys(tick func()) (*bootstrapping.EvaluationKeys, error) {
	pl := c.plan
	params := pl.boot.BootstrappingParameters
	weight := pl.boot.EphemeralSecretWeight
	var sk, skSparse *rlwe.SecretKey
	err := protect("bootstrapping key generation", func() error {
		ringQ, ringP := params.RingQ(), params.RingP()
		sk = rlwe.NewSecretKey(params)
		buf := ringQ.NewPoly()
		rlwe.ExtendBasisSmallNormAndCenterNTTMontgomery(ringQ, ringQ, c.sk.Value.Q, buf, sk.Value.Q)
		rlwe.ExtendBasisSmallNormAndCenterNTTMontgomery(ringQ, ringP, c.sk.Value.Q, buf, sk.Value.P)
		if weight > 0 {
			sparse, err := rlwe.NewParametersFromLiteral(rlwe.ParametersLiteral{LogN: params.LogN(), Q: params.Q()[:1], P: params.P()[:1]})
			if err != nil {
				return err
			}
			skSparse = rlwe.NewKeyGenerator(sparse).GenSecretKeyWithHammingWeightNew(weight)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	galEls := pl.bootGalEls
	gks := make([]*rlwe.GaloisKey, len(galEls))
	bk := &bootstrapping.EvaluationKeys{}
	var rlk *rlwe.RelinearizationKey
	levelP := params.MaxLevelP()
	err = generateKeys(params, pl.bootKeyCount(), func(kgen *rlwe.KeyGenerator, i int) {
		switch i - len(galEls) {
		default: // i < len(galEls)
			levelQ := pl.bootKeyLevel(galEls[i])
			gks[i] = kgen.GenGaloisKeyNew(galEls[i], sk, rlwe.EvaluationKeyParameters{LevelQ: &levelQ, LevelP: &levelP})
		case 0:
			rlk = kgen.GenRelinearizationKeyNew(sk)
		case 1:
			bk.EvkDenseToSparse = kgen.GenEvaluationKeyNew(sk, skSparse)
		case 2:
			bk.EvkSparseToDense = kgen.GenEvaluationKeyNew(skSparse, sk)
		}
	}, tick)
	if err != nil {
		return nil, err
	}
	bk.MemEvaluationKeySet = rlwe.NewMemEvaluationKeySet(rlk, gks...)
	return bk, nil
}

// checkBootKeys verifies that the bootstrapping keys hold every key the
// bootstrapping circuit needs, of the bootstrapping parameters' shape.
func checkBootKeys(pl *plan, bk *bootstrapping.EvaluationKeys) error {
	if bk == nil || bk.MemEvaluationKeySet == nil {
		return fmt.Errorf("the evaluation keys lack the bootstrapping keys")
	}
	if err := checkKeySet(pl.bootKeySpec(), bk.MemEvaluationKeySet); err != nil {
		return err
	}
	params := pl.boot.BootstrappingParameters
	if pl.boot.EphemeralSecretWeight > 0 {
		for _, k := range []*rlwe.EvaluationKey{bk.EvkDenseToSparse, bk.EvkSparseToDense} {
			if !keyMatches(params, k, params.MaxLevelQ()) {
				return fmt.Errorf("the bootstrapping encapsulation keys are missing or do not match the bootstrapping parameters")
			}
		}
	}
	return nil
}

// newBootEvaluator checks the bootstrapping keys and builds the evaluator
// every lane copies (it encodes the DFT matrices of the bootstrapping
// circuit: the largest memory item of a bootstrapping evaluator).
func newBootEvaluator(pl *plan, bk *bootstrapping.EvaluationKeys) (*bootstrapping.Evaluator, error) {
	first := 0
	for i := range pl.prog.Instrs {
		if pl.prog.Instrs[i].Op == ckksir.OpBootstrap {
			first = i
			break
		}
	}
	if err := checkBootKeys(pl, bk); err != nil {
		return nil, fmt.Errorf("ckks: %s: %w", where(pl.prog, first), err)
	}
	var ev *bootstrapping.Evaluator
	err := protect("bootstrapping evaluator", func() error {
		var e error
		ev, e = bootstrapping.NewEvaluator(*pl.boot, bk)
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("ckks: %s: %w", where(pl.prog, first), err)
	}
	return ev, nil
}

// bootCopy returns a bootstrapping evaluator sharing ev's parameters, keys
// and encoded matrices with fresh buffers, safe to use concurrently with
// ev. Lattigo's own ShallowCopy (v5.0.7) drops the parameters, the keys and
// the ring-switching tables, so the struct is copied and only its
// evaluators are renewed.
func bootCopy(ev *bootstrapping.Evaluator) *bootstrapping.Evaluator {
	cp := *ev
	params := ev.BootstrappingParameters
	cp.Evaluator = ev.Evaluator.ShallowCopy()
	cp.DFTEvaluator = hefloat.NewDFTEvaluator(params, cp.Evaluator)
	cp.Mod1Evaluator = hefloat.NewMod1Evaluator(cp.Evaluator, hefloat.NewPolynomialEvaluator(params, cp.Evaluator), cp.Mod1Parameters)
	return &cp
}

// bootScale is the scale a bootstrap's output has for an input at level
// with scale in. Lattigo's bootstrapping first scales its input to
// Q[0]/2^LogMessageRatio: it drops primes while the ratio allows, multiplies
// by an integer (rounded) and rescales; the circuit then treats the result
// as if it had exactly that scale. The message it returns is therefore the
// input's times errScale, the ratio of the reached scale to the target,
// under a scale Lattigo sets to the default one: declaring the default
// scale times errScale decodes the message exactly. errScale is 1 up to
// about 2^-50 for an input at the default scale; for a product's scale
// (which differs from the default by a prime's gap, about 1e-7 to 1e-5) it
// is that gap. It is found by running Lattigo's own scale-down on an
// encryption-free ciphertext of that level and scale (cheap: one scalar
// product and rescales).
func (e *Evaluator) bootScale(level int, in rlwe.Scale) (rlwe.Scale, error) {
	params := e.plan.params
	var errScale *rlwe.Scale
	err := protect("bootstrapping scale-down", func() error {
		ct := hefloat.NewCiphertext(params, 1, level)
		ct.Scale = in
		var err error
		_, errScale, err = e.boot.ScaleDown(ct)
		return err
	})
	if err != nil {
		return rlwe.Scale{}, err
	}
	return params.DefaultScale().Mul(*errScale), nil
}

// bootstrap executes bootstrap instruction c on ct (left untouched:
// Lattigo bootstraps in place) with the lane's bootstrapping evaluator. The
// result is at the top of the residual chain; its scale is the planned one
// (bootScale), which Lattigo's output (the default scale) does not carry.
func (e *Evaluator) bootstrap(st *laneState, c *compiled, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	if e.boot == nil {
		return nil, fmt.Errorf("no bootstrapping evaluator")
	}
	if st.boot == nil {
		e.mu.Lock()
		st.boot, e.bootSpare = e.bootSpare, nil
		e.mu.Unlock()
		if st.boot == nil {
			st.boot = bootCopy(e.boot)
		}
	}
	in := ct.CopyNew()
	if b := c.ins.Bound; b > 1 {
		in.Scale = in.Scale.Mul(rlwe.NewScale(b))
	}
	out, err := st.boot.Bootstrap(in)
	if err != nil {
		return nil, err
	}
	if d := relDiff(out.Scale, e.plan.params.DefaultScale()); d > 1e-12 {
		return nil, fmt.Errorf("Lattigo's bootstrapping returned the scale 2^%.6f, not the default one", math.Log2(out.Scale.Float64()))
	}
	out.Scale = c.outScale
	return out, nil
}

// bootMatrixBytes is the memory the encoded DFT matrices of the
// bootstrapping circuit take (CoeffsToSlots and SlotsToCoeffs; one copy,
// which every lane's evaluator shares): one plaintext per diagonal over the
// Q primes of its level and the bootstrapping P primes.
func (pl *plan) bootMatrixBytes() int64 {
	if !pl.needBoot {
		return 0
	}
	params := pl.boot.BootstrappingParameters
	total := int64(0)
	for _, d := range []hefloat.DFTMatrixLiteral{pl.boot.CoeffsToSlotsParameters, pl.boot.SlotsToCoeffsParameters} {
		level := d.LevelStart
		for _, diags := range dftDiagonals(params.LogN(), d) {
			total += int64(len(diags)) * int64(params.N()) * int64(level+1+params.PCount()) * 8
			level-- // one level per factor (bootLiteral)
		}
	}
	return total
}

// dftDiagonalsMemo caches dftDiagonals: Lattigo derives the diagonals
// from the matrices themselves, seconds of big-float work at N=2^16.
var dftDiagonalsMemo sync.Map // string -> [][]int

// dftDiagonals lists the non-zero diagonals of each factor of the DFT d on
// a ring of degree 2^logN.
func dftDiagonals(logN int, d hefloat.DFTMatrixLiteral) [][]int {
	key := fmt.Sprintf("%d %+v", logN, d)
	if v, ok := dftDiagonalsMemo.Load(key); ok {
		return v.([][]int)
	}
	var diags [][]int
	for _, m := range d.GenMatrices(logN, 53) {
		diags = append(diags, m.DiagonalsIndexList())
	}
	dftDiagonalsMemo.Store(key, diags)
	return diags
}

// bootLaneBytes estimates the working memory a lane's bootstrapping
// evaluator adds (see bootCopy): its key-switching buffers (one polynomial
// over the bootstrapping QP per RNS digit, plus a few), the hoisted baby
// steps of a DFT factor (up to 16 ciphertexts over QP) and a dozen
// ciphertexts at the top of the bootstrapping chain.
func (pl *plan) bootLaneBytes() int64 {
	if !pl.needBoot {
		return 0
	}
	params := pl.boot.BootstrappingParameters
	n := int64(params.N()) * 8
	qp := n * int64(params.QCount()+params.PCount())
	digits := int64(params.BaseRNSDecompositionVectorSize(params.MaxLevelQ(), params.MaxLevelP()))
	return (digits+6)*qp + 16*2*qp + 12*2*n*int64(params.QCount())
}
