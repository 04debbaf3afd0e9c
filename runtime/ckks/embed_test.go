package ckks

import (
	"math"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestSlotEncoderMatchesLattigoInsecureSmallRing checks that slotEncoder.Embed
// writes the polynomial hefloat.Encoder.Embed writes, bit for bit, at every
// level, for full and partial slot vectors with negative, zero, tiny and
// huge entries (beyond 2^64 once scaled: Lattigo's arbitrary-precision
// path), and that it allocates nothing per call.
func TestSlotEncoderMatchesLattigoInsecureSmallRing(t *testing.T) {
	params, err := newParams(smallParams(4), 0)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	slots := params.MaxSlots()
	fast, ref := newSlotEncoder(params), hefloat.NewEncoder(params)
	for level := 0; level <= params.MaxLevel(); level++ {
		for _, c := range []struct {
			n    int
			huge bool
		}{{slots, false}, {slots / 3, false}, {1, false}, {slots, true}} {
			n := c.n
			values := make([]float64, n)
			for i := range values {
				switch i % 7 {
				case 0:
					values[i] = 0
				case 1:
					values[i] = -rng.Float64()
				case 2:
					values[i] = 1e-14 * rng.NormFloat64()
				default:
					values[i] = 10 * rng.NormFloat64()
				}
			}
			if c.huge { // a separate case: they leave no fractional bits elsewhere
				values[5] = 3e10 // 3e10 * 2^40 > 2^64
				values[6] = -4e10
			}
			md := &rlwe.MetaData{
				PlaintextMetaData:  rlwe.PlaintextMetaData{LogDimensions: params.LogMaxDimensions(), Scale: rlwe.NewScale(math.Exp2(40 + float64(level))), IsBatched: true},
				CiphertextMetaData: rlwe.CiphertextMetaData{IsNTT: true, IsMontgomery: true},
			}
			got, want := params.RingQP().NewPoly(), params.RingQP().NewPoly()
			got.Q.Coeffs, want.Q.Coeffs = got.Q.Coeffs[:level+1], want.Q.Coeffs[:level+1]
			for j := range got.Q.Coeffs { // stale data must be overwritten
				for i := range got.Q.Coeffs[j] {
					got.Q.Coeffs[j][i] = uint64(i + j + 1)
				}
			}
			if err := fast.Embed(values, md, got); err != nil {
				t.Fatal(err)
			}
			if err := ref.Embed(values, md, want); err != nil {
				t.Fatal(err)
			}
			if i, j := firstDifference(append(got.Q.Coeffs, got.P.Coeffs...), append(want.Q.Coeffs, want.P.Coeffs...)); i >= 0 {
				t.Fatalf("level %d, %d values: slotEncoder.Embed differs from hefloat.Encoder.Embed at prime %d, coefficient %d", level, n, i, j)
			}
		}
	}
	values := make([]float64, slots)
	for i := range values {
		values[i] = rng.NormFloat64()
	}
	md := &rlwe.MetaData{
		PlaintextMetaData:  rlwe.PlaintextMetaData{LogDimensions: params.LogMaxDimensions(), Scale: rlwe.NewScale(math.Exp2(40)), IsBatched: true},
		CiphertextMetaData: rlwe.CiphertextMetaData{IsNTT: true, IsMontgomery: true},
	}
	p := params.RingQP().NewPoly()
	if allocs := testing.AllocsPerRun(5, func() { fast.Embed(values, md, p) }); allocs > 16 {
		t.Errorf("slotEncoder.Embed made %.0f allocations per call, want a handful (Lattigo's makes about 3 per coefficient)", allocs)
	}
}

// firstDifference is the first (prime, coefficient) where a and b differ,
// or (-1, -1).
func firstDifference(a, b [][]uint64) (int, int) {
	if len(a) != len(b) {
		return 0, -1
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return i, -1
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return i, j
			}
		}
	}
	return -1, -1
}

// BenchmarkEmbedDiagonal encodes one matrix diagonal at N=2^16 over 29 Q
// and 8 P primes (tiny-gpt's block 1 attention at its top level) with
// Lattigo's encoder and with slotEncoder.
func BenchmarkEmbedDiagonal(b *testing.B) {
	logQ := []int{60}
	for i := 0; i < 28; i++ {
		logQ = append(logQ, 40)
	}
	params, err := hefloat.NewParametersFromLiteral(hefloat.ParametersLiteral{LogN: 16, LogQ: logQ, LogP: []int{61, 61, 61, 61, 61, 61, 61, 61}, LogDefaultScale: 40})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	values := make([]float64, params.MaxSlots())
	for i := range values {
		values[i] = rng.NormFloat64()
	}
	md := &rlwe.MetaData{
		PlaintextMetaData:  rlwe.PlaintextMetaData{LogDimensions: params.LogMaxDimensions(), Scale: params.DefaultScale(), IsBatched: true},
		CiphertextMetaData: rlwe.CiphertextMetaData{IsNTT: true, IsMontgomery: true},
	}
	p := params.RingQP().NewPoly()
	b.Run("lattigo", func(b *testing.B) {
		ecd := hefloat.NewEncoder(params)
		for i := 0; i < b.N; i++ {
			if err := ecd.Embed(values, md, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("slotEncoder", func(b *testing.B) {
		ecd := newSlotEncoder(params)
		for i := 0; i < b.N; i++ {
			if err := ecd.Embed(values, md, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
