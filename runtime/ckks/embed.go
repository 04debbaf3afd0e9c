package ckks

import (
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"
)

// slotEncoder is a Lattigo encoder with its own scratch, whose Embed writes
// the same polynomial as hefloat.Encoder.Embed for float64 slots without
// allocating. Lattigo's quantization (ckks.SingleFloat64ToFixedPointCRT)
// allocates a big.Int and two slices per coefficient: encoding one diagonal
// at N=2^16 made about 200,000 objects, and a matrix encoded at each use
// (a transformer's 4065-diagonal output projection) kept the collector
// running back to back once the live heap neared the memory limit (block 1
// of tiny-gpt: 20 minutes instead of 2). Not safe for concurrent use: one
// per goroutine.
type slotEncoder struct {
	*hefloat.Encoder
	params hefloat.Parameters
	cmplx  []complex128
}

// newSlotEncoder returns an encoder for params with its scratch.
func newSlotEncoder(params hefloat.Parameters) *slotEncoder {
	return &slotEncoder{Encoder: hefloat.NewEncoder(params), params: params, cmplx: make([]complex128, params.MaxSlots())}
}

// Embed encodes values (at most the slots md.LogDimensions gives) at md's
// scale into p, over p's Q primes and its P primes when it has any, in the
// NTT and Montgomery forms md asks for: hefloat.Encoder.Embed for []float64
// into a ringqp.Poly, bit for bit.
func (e *slotEncoder) Embed(values []float64, md *rlwe.MetaData, p ringqp.Poly) error {
	slots := 1 << md.LogDimensions.Cols
	if slots > len(e.cmplx) || len(values) > slots {
		// Out of this encoder's range: Lattigo's checks and errors.
		return e.Encoder.Embed(values, md, p)
	}
	buf := e.cmplx[:slots]
	for i, v := range values {
		buf[i] = complex(v, 0)
	}
	clear(buf[len(values):])
	if err := e.IFFT(buf, md.LogDimensions.Cols); err != nil {
		return err
	}
	scale := md.Scale.Float64()
	rq := e.params.RingQ().AtLevel(p.Q.Level())
	quantize(rq, buf, scale, p.Q.Coeffs)
	rlwe.NTTSparseAndMontgomery(rq, md, p.Q)
	if p.P.Level() > -1 {
		rp := e.params.RingP().AtLevel(p.P.Level())
		quantize(rp, buf, scale, p.P.Coeffs)
		rlwe.NTTSparseAndMontgomery(rp, md, p.P)
	}
	return nil
}

// quantize is ckks.Complex128ToFixedPointCRT without its per-coefficient
// allocations: the real parts of values go to the first coefficients, on a
// standard ring the imaginary parts to the next ones, and the rest are
// zero.
func quantize(r *ring.Ring, values []complex128, scale float64, coeffs [][]uint64) {
	moduli := r.ModuliChain()[:r.Level()+1]
	brc := r.BRedConstants()
	n := len(values)
	for i, v := range values {
		quantizeOne(r, moduli, brc, i, real(v), scale, coeffs)
	}
	start := n
	if r.Type() == ring.Standard {
		for i, v := range values {
			quantizeOne(r, moduli, brc, i+n, imag(v), scale, coeffs)
		}
		start = 2 * n
	}
	for j := range moduli {
		clear(coeffs[j][start:])
	}
}

// quantizeOne is ckks.SingleFloat64ToFixedPointCRT with the ring's moduli
// and Barrett constants passed in; values beyond 2^64 after scaling (not
// met at the scales a plan uses) go to Lattigo's arbitrary-precision path.
func quantizeOne(r *ring.Ring, moduli []uint64, brc [][]uint64, i int, value, scale float64, coeffs [][]uint64) {
	if value == 0 {
		for j := range moduli {
			coeffs[j][i] = 0
		}
		return
	}
	negative := value < 0
	x := value * scale
	if negative {
		x = value * -scale
	}
	if x >= 1.8446744073709552e+19 {
		ckks.SingleFloat64ToFixedPointCRT(r, i, value, scale, coeffs)
		return
	}
	c := uint64(x + 0.5)
	for j, q := range moduli {
		switch {
		case negative && c > q:
			coeffs[j][i] = q - ring.BRedAdd(c, q, brc[j])
		case negative:
			coeffs[j][i] = q - c
		case c > 0x1fffffffffffffff:
			coeffs[j][i] = ring.BRedAdd(c, q, brc[j])
		default:
			coeffs[j][i] = c
		}
	}
}
