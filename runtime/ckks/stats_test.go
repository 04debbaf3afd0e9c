package ckks

import (
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// TestInstrStatsWithinInsecureSmallRing checks the diagonals counted as
// encoded at each use: none when every matrix stays encoded, all of them
// with a zero budget, and the evaluator's own choice in between.
func TestInstrStatsWithinInsecureSmallRing(t *testing.T) {
	p := buildMainProgram(rand.New(rand.NewSource(1))).p
	pl, err := newPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	encodes := func(budget int64) (enc, diags int) {
		stats, err := InstrStatsWithin(p, budget)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			enc += s.Encodes
			diags += s.Diagonals
		}
		return enc, diags
	}
	if enc, _ := encodes(-1); enc != 0 {
		t.Errorf("every matrix encoded: %d diagonals encoded at each use", enc)
	}
	if enc, diags := encodes(0); enc != diags || diags == 0 {
		t.Errorf("nothing encoded: %d of %d diagonals encoded at each use", enc, diags)
	}
	// Half the bytes: the evaluator leaves the largest matrices lazy.
	var total int64
	for _, mp := range pl.matrices {
		total += pl.encodedBytes(mp)
	}
	want := 0
	for i, lazy := range pl.lazyMatrices(total / 2) {
		if lazy {
			want += len(pl.matrices[i].diags)
		}
	}
	if enc, diags := encodes(total / 2); enc != want || enc == 0 || enc == diags {
		t.Errorf("half encoded: %d of %d diagonals encoded at each use, want %d", enc, diags, want)
	}
}

// TestInstrStatsInsecureSmallRing checks the counts of every instruction of
// the main test program against the runtime's own plan.
func TestInstrStatsInsecureSmallRing(t *testing.T) {
	p := buildMainProgram(rand.New(rand.NewSource(1))).p
	stats, err := InstrStats(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != len(p.Instrs) {
		t.Fatalf("%d stats for %d instructions", len(stats), len(p.Instrs))
	}
	pl, err := newPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := PlanKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	diags := 0
	for _, mp := range pl.matrices {
		diags += len(mp.diags)
	}
	var gotDiags int
	var rots []int
	for i, s := range stats {
		ins := p.Instrs[i]
		if s.Op != ins.Op.String() || s.Layer != ins.Layer || s.LevelOut != p.Values[ins.Out].Level || s.Ciphertexts != 1 {
			t.Errorf("instruction %d: %+v", i, s)
		}
		gotDiags += s.Diagonals
		for _, r := range s.Rotations {
			if !slices.Contains(rots, r) {
				rots = append(rots, r)
			}
		}
		switch ins.Op {
		case ckksir.OpLinear:
			if s.Matrices != len(ins.Matrices) || s.Rescales != 1 || s.GiantSteps+s.BabySteps == 0 || s.LevelIn != s.LevelOut+1 {
				t.Errorf("linear %d: %+v", i, s)
			}
		case ckksir.OpPoly:
			// Degree 7: T2, T4 for the powers of two, T3 below the split,
			// then one giant-step product.
			if s.PolyDegree != 7 || s.NonScalarMults == 0 || s.LevelIn-s.LevelOut != ins.Poly.Depth() {
				t.Errorf("poly %d: %+v", i, s)
			}
		case ckksir.OpMul:
			if s.NonScalarMults != 1 || s.Rescales != 1 {
				t.Errorf("mul %d: %+v", i, s)
			}
		case ckksir.OpMulConst:
			if s.PlainMults != 1 || s.Rescales != 1 {
				t.Errorf("mul-const %d: %+v", i, s)
			}
		}
	}
	if gotDiags != diags {
		t.Errorf("%d diagonals counted, the plan has %d", gotDiags, diags)
	}
	slices.Sort(rots)
	if !slices.Equal(rots, kp.Rotations) {
		t.Errorf("rotations %v, the keys serve %v", rots, kp.Rotations)
	}
}

// countingEvaluator counts ciphertext-ciphertext products.
type countingEvaluator struct {
	*hefloat.Evaluator
	products int
}

func (c *countingEvaluator) count(op rlwe.Operand) {
	if _, ok := op.(*rlwe.Ciphertext); ok {
		c.products++
	}
}

func (c *countingEvaluator) Mul(a *rlwe.Ciphertext, b rlwe.Operand, out *rlwe.Ciphertext) error {
	c.count(b)
	return c.Evaluator.Mul(a, b, out)
}

func (c *countingEvaluator) MulNew(a *rlwe.Ciphertext, b rlwe.Operand) (*rlwe.Ciphertext, error) {
	c.count(b)
	return c.Evaluator.MulNew(a, b)
}

func (c *countingEvaluator) MulRelin(a *rlwe.Ciphertext, b rlwe.Operand, out *rlwe.Ciphertext) error {
	c.count(b)
	return c.Evaluator.MulRelin(a, b, out)
}

func (c *countingEvaluator) MulRelinNew(a *rlwe.Ciphertext, b rlwe.Operand) (*rlwe.Ciphertext, error) {
	c.count(b)
	return c.Evaluator.MulRelinNew(a, b)
}

func (c *countingEvaluator) MulThenAdd(a *rlwe.Ciphertext, b rlwe.Operand, out *rlwe.Ciphertext) error {
	c.count(b)
	return c.Evaluator.MulThenAdd(a, b, out)
}

// TestPolyProductsMatchLattigoInsecureSmallRing checks polyProducts against
// the products Lattigo's polynomial evaluator really performs.
func TestPolyProductsMatchLattigoInsecureSmallRing(t *testing.T) {
	params, err := newParams(smallParams(7), 0)
	if err != nil {
		t.Fatal(err)
	}
	kgen := rlwe.NewKeyGenerator(params)
	sk := kgen.GenSecretKeyNew()
	ev := hefloat.NewEvaluator(params, rlwe.NewMemEvaluationKeySet(kgen.GenRelinearizationKeyNew(sk)))
	ct, err := rlwe.NewEncryptor(params, sk).EncryptNew(hefloat.NewPlaintext(params, params.MaxLevel()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []int{2, 3, 5, 7, 8, 15, 16, 27, 31, 63, 127} {
		for _, parity := range []string{"both", "odd", "even"} {
			coeffs := make([]float64, d+1)
			odd, even := false, false
			for k := range coeffs {
				if parity == "both" || (parity == "odd") == (k%2 == 1) || k == d {
					coeffs[k] = 1 / float64(k+1)
					odd, even = odd || k%2 == 1, even || k%2 == 0
				}
			}
			c := &countingEvaluator{Evaluator: ev}
			bp := bignum.NewPolynomial(bignum.Chebyshev, coeffs, [2]float64{-1, 1})
			bp.IsOdd, bp.IsEven = odd, even
			if _, err := hefloat.NewPolynomialEvaluator(params, c).Evaluate(ct, bp, params.DefaultScale()); err != nil {
				t.Fatalf("degree %d %s: %v", d, parity, err)
			}
			if got, _ := polyProducts(d, odd, even); got != c.products {
				t.Errorf("degree %d (%s parity): polyProducts %d, Lattigo performed %d", d, parity, got, c.products)
			}
		}
	}
}

// TestTraceInsecureSmallRing checks that the trace sees every instruction
// of every lane once.
func TestTraceInsecureSmallRing(t *testing.T) {
	m := buildMainProgram(rand.New(rand.NewSource(2)))
	c, _, e := setup(t, m.p)
	n := m.p.Batch + 1 // two ciphertexts
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 4, 5}, make([]float64, n*20)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 2 {
		t.Fatalf("%d ciphertexts, want 2", len(cts))
	}
	calls := make([]int, len(m.p.Instrs))
	var mu sync.Mutex
	e.SetTrace(func(i int, d time.Duration) {
		mu.Lock()
		calls[i]++
		mu.Unlock()
		if d < 0 {
			t.Errorf("instruction %d: negative time %v", i, d)
		}
	})
	if _, err := e.Run(map[string][]*Ciphertext{"x": cts}); err != nil {
		t.Fatal(err)
	}
	for i, n := range calls {
		if n != 2 {
			t.Errorf("instruction %d traced %d times, want 2 (one per lane)", i, n)
		}
	}
}
