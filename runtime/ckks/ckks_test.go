package ckks

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// All tests use small rings (LogN 12) and moduli far beyond what the ring
// can secure: they are insecure by design, for speed, and say so in their
// names.

// smallParams returns insecure parameters with maxLevel levels at LogN 12.
func smallParams(maxLevel int) ckksir.Params {
	logQ := []int{55}
	for i := 0; i < maxLevel; i++ {
		logQ = append(logQ, 40)
	}
	return ckksir.Params{LogN: 12, LogQ: logQ, LogP: []int{56, 56}, LogScale: 40}
}

// denseMatrix turns a dense rows x cols matrix reading the tensor at inOff
// and writing the tensor at outOff into block diagonals.
func denseMatrix(w [][]float64, inOff, outOff, bs int) *ckksir.Matrix {
	diags := map[int][]float64{}
	for r, row := range w {
		for c, v := range row {
			d := (inOff + c) - (outOff + r)
			if diags[d] == nil {
				diags[d] = make([]float64, bs)
			}
			diags[d][outOff+r] = v
		}
	}
	return ckksir.NewMatrix(diags)
}

func randMatrix(rng *rand.Rand, rows, cols int, amp float64) [][]float64 {
	w := make([][]float64, rows)
	for r := range w {
		w[r] = make([]float64, cols)
		for c := range w[r] {
			w[r][c] = amp * (2*rng.Float64() - 1)
		}
	}
	return w
}

func randVec(rng *rand.Rand, n int, amp float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = amp * (2*rng.Float64() - 1)
	}
	return v
}

// chebyshev evaluates Σ c_k T_k((2x-a-b)/(b-a)).
func chebyshev(coeffs []float64, a, b, x float64) float64 {
	t := (2*x - a - b) / (b - a)
	t0, t1 := 1.0, t
	s := coeffs[0]
	for k := 1; k < len(coeffs); k++ {
		s += coeffs[k] * t1
		t0, t1 = t1, 2*t*t1-t0
	}
	return s
}

func matVec(w [][]float64, x []float64) []float64 {
	y := make([]float64, len(w))
	for r, row := range w {
		for c, v := range row {
			y[r] += v * x[c]
		}
	}
	return y
}

// refBlocks is a float64 interpreter of a program on one sample's block,
// independent of the encrypted runtime: the oracle for the smaller tests.
func refBlocks(p *ckksir.Program, inputs map[string][]float64) map[string][]float64 {
	bs := p.BlockSize
	vals := make([][]float64, len(p.Values))
	for _, in := range p.Inputs {
		blk := make([]float64, bs)
		for j, x := range inputs[in.Name] {
			blk[p.Values[in.Value].Layout.Slot(j)] = x
		}
		vals[in.Value] = blk
	}
	add := func(dst, v []float64) {
		for j := range v {
			dst[j] += v[j]
		}
	}
	for _, ins := range p.Instrs {
		out := make([]float64, bs)
		switch ins.Op {
		case ckksir.OpLinear:
			for k, m := range ins.Matrices {
				x := vals[ins.In[k]]
				for d, diag := range m.Diagonals {
					diag.Each(func(j int, v float64) {
						out[j] += v * x[((j+d)%bs+bs)%bs]
					})
				}
			}
			if ins.Bias != nil {
				add(out, ins.Bias)
			}
		case ckksir.OpPoly:
			for j, x := range vals[ins.In[0]] {
				out[j] = chebyshev(ins.Poly.Coeffs, ins.Poly.A, ins.Poly.B, x)
			}
		case ckksir.OpAdd:
			add(out, vals[ins.In[0]])
			add(out, vals[ins.In[1]])
		case ckksir.OpMul:
			for j := range out {
				out[j] = vals[ins.In[0]][j] * vals[ins.In[1]][j]
			}
		case ckksir.OpAddConst:
			add(out, vals[ins.In[0]])
			if ins.Bias != nil {
				add(out, ins.Bias)
			}
		case ckksir.OpMulConst:
			for j := range out {
				if ins.Vector != nil {
					out[j] = vals[ins.In[0]][j] * ins.Vector[j]
				}
			}
		case ckksir.OpBootstrap:
			copy(out, vals[ins.In[0]])
		}
		vals[ins.Out] = out
	}
	res := map[string][]float64{}
	for _, o := range p.Outputs {
		l := p.Values[o.Value].Layout
		res[o.Name] = make([]float64, l.Size())
		for j := range res[o.Name] {
			res[o.Name][j] = vals[o.Value][l.Slot(j)]
		}
	}
	return res
}

// setup builds the client, keys and evaluator of a program.
func setup(t testing.TB, p *ckksir.Program) (*Client, *EvaluationKeys, *Evaluator) {
	t.Helper()
	if err := ckksir.Verify(p); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	c, err := NewClient(p)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		t.Fatalf("EvaluationKeys: %v", err)
	}
	e, err := NewEvaluator(p, evk)
	if err != nil {
		t.Fatalf("NewEvaluator: %v", err)
	}
	return c, evk, e
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// mainProgram: linear (dense 10x20 + bias) -> two degree-7 polynomials
// (on [-1, 1] and on [-3, 5]) -> a two-input linear, and a second linear ->
// add (inputs at different levels) -> mul -> add-const -> mul-const.
type mainProgram struct {
	p                  *ckksir.Program
	w1, wa, wb, w3     [][]float64
	b1, b4, cadd, cmul []float64
	pa, pb             *ckksir.Poly
}

func buildMainProgram(rng *rand.Rand) *mainProgram {
	const bs, L = 64, 8
	m := &mainProgram{}
	m.w1 = randMatrix(rng, 10, 20, 0.04)
	m.b1 = randVec(rng, 10, 0.1)
	m.wa = randMatrix(rng, 6, 10, 0.5)
	m.wb = randMatrix(rng, 6, 10, 0.5)
	m.w3 = randMatrix(rng, 6, 10, 0.5)
	m.b4 = randVec(rng, 6, 0.3)
	m.cadd = randVec(rng, 6, 1)
	m.cmul = randVec(rng, 6, 2)
	coeffs := func() []float64 {
		c := make([]float64, 8)
		for k := range c {
			c[k] = (2*rng.Float64() - 1) / float64(k+1)
		}
		return c
	}
	m.pa = &ckksir.Poly{Func: "A", A: -1, B: 1, Coeffs: coeffs()}
	m.pb = &ckksir.Poly{Func: "B", A: -3, B: 5, Coeffs: coeffs()}
	block := func(off int, v []float64) []float64 {
		b := make([]float64, bs)
		copy(b[off:], v)
		return b
	}
	x := ckksir.Layout{Shape: ir.Shape{4, 5}, Offset: 0}
	h := ckksir.Layout{Shape: ir.Shape{10}, Offset: 23}
	o := ckksir.Layout{Shape: ir.Shape{6}, Offset: 40}
	m.p = &ckksir.Program{
		Params:    smallParams(L),
		BlockSize: bs,
		Batch:     2048 / bs,
		Inputs:    []ckksir.IO{{Name: "x", Value: 0}},
		Outputs:   []ckksir.IO{{Name: "y", Value: 9}, {Name: "h", Value: 3}, {Name: "z", Value: 10}},
		Values: []ckksir.Value{
			{Layout: x, Level: L},     // v0 x
			{Layout: h, Level: L - 1}, // v1 = W1 x + b1
			{Layout: h, Level: L - 4}, // v2 = pa(v1)
			{Layout: h, Level: L - 5}, // v3 = pb(v1)
			{Layout: o, Level: L - 6}, // v4 = Wa v2 + Wb v3 + b4
			{Layout: o, Level: L - 2}, // v5 = W3 v1
			{Layout: o, Level: L - 6}, // v6 = v4 + v5
			{Layout: o, Level: L - 7}, // v7 = v6 * v5
			{Layout: o, Level: L - 7}, // v8 = v7 + cadd
			{Layout: o, Level: L - 8}, // v9 = v8 * cmul
			{Layout: o, Level: L - 7}, // v10 = v8 + v5 (scales differ)
		},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{denseMatrix(m.w1, 0, 23, bs)}, Bias: block(23, m.b1), Layer: "fc1"},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: m.pa, Layer: "act-a"},
			{Op: ckksir.OpPoly, Out: 3, In: []int{1}, Poly: m.pb, Layer: "act-b"},
			{Op: ckksir.OpLinear, Out: 4, In: []int{2, 3}, Matrices: []*ckksir.Matrix{denseMatrix(m.wa, 23, 40, bs), denseMatrix(m.wb, 23, 40, bs)}, Bias: block(40, m.b4), Layer: "fc2"},
			{Op: ckksir.OpLinear, Out: 5, In: []int{1}, Matrices: []*ckksir.Matrix{denseMatrix(m.w3, 23, 40, bs)}, Layer: "fc3"},
			{Op: ckksir.OpAdd, Out: 6, In: []int{4, 5}, Layer: "add"},
			{Op: ckksir.OpMul, Out: 7, In: []int{6, 5}, Layer: "mul"},
			{Op: ckksir.OpAddConst, Out: 8, In: []int{7}, Bias: block(40, m.cadd), Layer: "add-const"},
			{Op: ckksir.OpMulConst, Out: 9, In: []int{8}, Vector: block(40, m.cmul), Layer: "mul-const"},
			{Op: ckksir.OpAdd, Out: 10, In: []int{8, 5}, Layer: "add-mixed-scales"},
		},
	}
	return m
}

// reference computes y and h of one sample with plain float64 tensors.
func (m *mainProgram) reference(x []float64) (y, h, z []float64) {
	v1 := matVec(m.w1, x)
	for i := range v1 {
		v1[i] += m.b1[i]
	}
	v2, v3 := make([]float64, 10), make([]float64, 10)
	for i, v := range v1 {
		v2[i] = chebyshev(m.pa.Coeffs, -1, 1, v)
		v3[i] = chebyshev(m.pb.Coeffs, -3, 5, v)
	}
	a, b, v5 := matVec(m.wa, v2), matVec(m.wb, v3), matVec(m.w3, v1)
	y, z = make([]float64, 6), make([]float64, 6)
	for i := range y {
		v4 := a[i] + b[i] + m.b4[i]
		v8 := (v4+v5[i])*v5[i] + m.cadd[i]
		y[i] = v8 * m.cmul[i]
		z[i] = v8 + v5[i]
	}
	return y, v3, z
}

func TestLinearPolyInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	m := buildMainProgram(rng)
	c, evk, _ := setup(t, m.p)

	// Serialization round trip: the worker gets the keys over the network.
	data, err := evk.MarshalBinary()
	if err != nil || int64(len(data)) != evk.Bytes() {
		t.Fatalf("MarshalBinary: %d bytes, Bytes() %d, err %v", len(data), evk.Bytes(), err)
	}
	evk2, err := UnmarshalEvaluationKeys(m.p, data)
	if err != nil {
		t.Fatal(err)
	}
	if evk2.Count() != evk.Count() || evk.Count() == 0 {
		t.Fatalf("key count %d after the round trip, %d before", evk2.Count(), evk.Count())
	}
	e2, err := NewEvaluator(m.p, evk2)
	if err != nil {
		t.Fatal(err)
	}
	var calls, last int
	e2.SetProgress(func(s Step) { calls, last = s.Done, s.Total })

	const n = 70 // three ciphertexts, the last one partly filled
	xs := randVec(rng, n*20, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 4, 5}, xs))
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 3 || cts[0].Level() != 8 {
		t.Fatalf("Encrypt: %d ciphertexts at level %d", len(cts), cts[0].Level())
	}
	// Ciphertexts over the network too.
	for i, ct := range cts {
		b, err := ct.MarshalBinary()
		if err != nil || int64(len(b)) != ct.Bytes() {
			t.Fatalf("ciphertext MarshalBinary: %d bytes, Bytes() %d, err %v", len(b), ct.Bytes(), err)
		}
		if cts[i], err = e2.UnmarshalCiphertext(b); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	outs, err := e2.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Run: %d ciphertexts (%d samples) in %v on %d cores; keys %d Galois, %.1f MB",
		len(cts), n, time.Since(start), runtime.NumCPU(), evk.Count(), float64(evk.Bytes())/1e6)
	if calls != 3*len(m.p.Instrs) || last != calls {
		t.Errorf("progress: %d calls of %d, want %d", calls, last, 3*len(m.p.Instrs))
	}
	if outs["y"][0].Level() != 0 || outs["h"][0].Level() != 3 {
		t.Errorf("output levels %d and %d, want 0 and 3", outs["y"][0].Level(), outs["h"][0].Level())
	}
	y, err := c.Decrypt("y", outs["y"], n)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Decrypt("h", outs["h"], n)
	if err != nil {
		t.Fatal(err)
	}
	if !y.Shape.Equal(ir.Shape{n, 6}) || !h.Shape.Equal(ir.Shape{n, 10}) || y.DType != ir.Float32 {
		t.Fatalf("decrypted shapes %v %v dtype %v", y.Shape, h.Shape, y.DType)
	}
	z, err := c.Decrypt("z", outs["z"], n)
	if err != nil {
		t.Fatal(err)
	}
	errY, errH, errZ, mag := 0.0, 0.0, 0.0, 0.0
	for s := 0; s < n; s++ {
		wy, wh, wz := m.reference(xs[s*20 : (s+1)*20])
		errY = math.Max(errY, maxAbsDiff(y.Float[s*6:(s+1)*6], wy))
		errH = math.Max(errH, maxAbsDiff(h.Float[s*10:(s+1)*10], wh))
		errZ = math.Max(errZ, maxAbsDiff(z.Float[s*6:(s+1)*6], wz))
		for _, v := range wy {
			mag = math.Max(mag, math.Abs(v))
		}
	}
	t.Logf("max error: y %.3g (|y| up to %.3g), h %.3g, z %.3g (an add of different scales)", errY, mag, errH, errZ)
	if errY > 1e-3 || errH > 1e-3 || errZ > 1e-3 || math.IsNaN(errY+errH+errZ) {
		t.Fatalf("max error y %.3g h %.3g z %.3g, want < 1e-3", errY, errH, errZ)
	}
}

// TestSplitLinearInsecureSmallRing runs one ciphertext with the linear
// transformations split across 1, 3 and 8 goroutines, and checks the splits
// partition the diagonals.
func TestSplitLinearInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	m := buildMainProgram(rng)
	c, _, e := setup(t, m.p)
	xs := randVec(rng, 5*20, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{5, 4, 5}, xs))
	if err != nil {
		t.Fatal(err)
	}
	for _, cpus := range []int{1, 3, 8} {
		e.cpus = cpus
		outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
		if err != nil {
			t.Fatal(err)
		}
		y, err := c.Decrypt("y", outs["y"], 5)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for s := 0; s < 5; s++ {
			wy, _, _ := m.reference(xs[s*20 : (s+1)*20])
			worst = math.Max(worst, maxAbsDiff(y.Float[s*6:(s+1)*6], wy))
		}
		if worst > 1e-3 {
			t.Errorf("%d goroutines: max error %.3g", cpus, worst)
		}
	}
	for _, c := range e.instrs {
		for _, lt := range c.lts {
			for k := 1; k <= len(lt.giants)+2; k++ {
				parts := lt.partsFor(k)
				if len(parts) != min(k, len(lt.giants)) {
					t.Errorf("%s: %d parts for %d, %d giant steps", c.where, len(parts), k, len(lt.giants))
				}
				seen := map[int]bool{}
				for _, part := range parts {
					if len(part.Vec) == 0 {
						t.Errorf("%s: empty part in a split in %d", c.where, k)
					}
					for d := range part.Vec {
						if seen[d] {
							t.Errorf("%s: diagonal %d in two parts", c.where, d)
						}
						seen[d] = true
					}
				}
				if len(seen) != len(lt.lt.Vec) {
					t.Errorf("%s: split in %d covers %d of %d diagonals", c.where, k, len(seen), len(lt.lt.Vec))
				}
			}
		}
	}
}

// TestLazyMatricesInsecureSmallRing runs the main program with no budget
// for encoded diagonals (every matrix encoded at each use, one giant step at
// a time), on 1 and 3 goroutines, and compares with the pre-encoded run.
func TestLazyMatricesInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	m := buildMainProgram(rng)
	c, evk, e := setup(t, m.p)
	lazy, err := NewEvaluatorWithBudget(m.p, evk, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ci := range lazy.instrs {
		for _, lt := range ci.lts {
			if !lt.lazy || lt.lt.Vec != nil {
				t.Fatalf("%s: a matrix is kept encoded with a zero budget", ci.where)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("the program has no matrix")
	}
	xs := randVec(rng, 5*20, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{5, 4, 5}, xs))
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.Decrypt("y", want["y"], 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, cpus := range []int{1, 3} {
		lazy.cpus = cpus
		outs, err := lazy.Run(map[string][]*Ciphertext{"x": cts})
		if err != nil {
			t.Fatal(err)
		}
		y, err := c.Decrypt("y", outs["y"], 5)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for s := 0; s < 5; s++ {
			wy, _, _ := m.reference(xs[s*20 : (s+1)*20])
			worst = math.Max(worst, maxAbsDiff(y.Float[s*6:(s+1)*6], wy))
		}
		if d := maxAbsDiff(y.Float, ref.Float); worst > 1e-3 || d > 1e-6 {
			t.Errorf("%d goroutines: max error %.3g against the reference, %.3g against pre-encoded", cpus, worst, d)
		}
	}
	if got := (&plan{}).lazyMatrices(-1); len(got) != 0 {
		t.Errorf("lazyMatrices of an empty plan: %v", got)
	}
}

// TestLevelsAndScalesInsecureSmallRing checks the runtime's level checks and
// the exact scale plan on the main program, instruction by instruction.
func TestLevelsAndScalesInsecureSmallRing(t *testing.T) {
	m := buildMainProgram(rand.New(rand.NewSource(2)))
	_, _, e := setup(t, m.p)
	def := e.plan.params.DefaultScale()
	for i, ins := range m.p.Instrs {
		s := e.scales[ins.Out]
		if ins.Op != ckksir.OpMul && ins.Op != ckksir.OpAddConst && ins.Op != ckksir.OpAdd && !s.Equal(def) {
			t.Errorf("instruction %d (%s): planned scale %v, want the default", i, ins.Op, s.Float64())
		}
	}
	// A hand-edited level is caught by Verify, before Lattigo runs.
	m.p.Values[4].Level++
	if _, err := NewClient(m.p); err == nil || !strings.Contains(err.Error(), "level") {
		t.Errorf("NewClient accepted a wrong level: %v", err)
	}
}

// TestPolyLevelsInsecureSmallRing evaluates polynomials of degree 0 to 16 and
// 31, 32 on [-1, 1] and [-3, 5], general, odd and even ones, and checks that
// the runtime consumes exactly Poly.Depth() levels, and that Lattigo's own
// evaluator (without the runtime's change of variable) consumes
// ceil(log2(d+1)).
func TestPolyLevelsInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	degrees := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 31, 32}
	for _, tc := range []struct {
		iv     [2]float64
		parity int // 0: general, 1: odd, 2: even
	}{{[2]float64{-1, 1}, 0}, {[2]float64{-3, 5}, 0}, {[2]float64{-1, 1}, 1}, {[2]float64{-1, 1}, 2}, {[2]float64{-3, 5}, 1}} {
		iv := tc.iv
		for _, deg := range degrees {
			if (tc.parity == 1 && deg%2 == 0) || (tc.parity == 2 && deg%2 == 1) {
				continue
			}
			coeffs := make([]float64, deg+1)
			for k := range coeffs {
				if tc.parity == 0 || k%2 == deg%2 {
					coeffs[k] = (2*rng.Float64() - 1) / float64(k+1)
				}
			}
			poly := &ckksir.Poly{Func: "test", A: iv[0], B: iv[1], Coeffs: coeffs}
			L := poly.Depth() + 1
			lay := ckksir.Layout{Shape: ir.Shape{8}, Offset: 2}
			p := &ckksir.Program{
				Params: smallParams(L), BlockSize: 64, Batch: 32,
				Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
				Outputs: []ckksir.IO{{Name: "y", Value: 1}},
				Values:  []ckksir.Value{{Layout: lay, Level: L}, {Layout: lay, Level: L - poly.Depth()}},
				Instrs:  []ckksir.Instr{{Op: ckksir.OpPoly, Out: 1, In: []int{0}, Poly: poly}},
			}
			c, _, e := setup(t, p)
			const n = 32
			xs := make([]float64, n*8)
			for i := range xs {
				xs[i] = iv[0] + (iv[1]-iv[0])*rng.Float64()
			}
			cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 8}, xs))
			if err != nil {
				t.Fatal(err)
			}
			outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
			if err != nil {
				t.Fatalf("degree %d on %v: %v", deg, iv, err)
			}
			y, err := c.Decrypt("y", outs["y"], n)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i, x := range xs {
				worst = math.Max(worst, math.Abs(y.Float[i]-chebyshev(coeffs, iv[0], iv[1], x)))
			}
			if worst > 1e-5 {
				t.Errorf("degree %d on %v: max error %.3g", deg, iv, worst)
			}
			// Lattigo's own consumption, on a raw ciphertext at level L.
			if deg >= 1 {
				raw := cts[0].ct.CopyNew()
				pe := hefloat.NewPolynomialEvaluator(e.plan.params, e.base.ShallowCopy())
				out, err := pe.Evaluate(raw, bignum.NewPolynomial(bignum.Chebyshev, coeffs, [2]float64{-1, 1}), e.plan.params.DefaultScale())
				if err != nil {
					t.Fatal(err)
				}
				got, want := raw.Level()-out.Level(), bitsLen(deg)
				if got != want {
					t.Errorf("Lattigo consumed %d levels for degree %d, want ceil(log2(d+1)) = %d", got, deg, want)
				}
				if d := relDiff(out.Scale, e.plan.params.DefaultScale()); d > 1e-15 {
					t.Errorf("degree %d: Lattigo's output scale is off the target by %.3g (relative)", deg, d)
				}
			}
		}
	}
}

func bitsLen(d int) int {
	n := 0
	for (1 << n) <= d {
		n++
	}
	return n
}

// TestOffScaleInputsInsecureSmallRing feeds a ciphertext product (whose
// scale is not the default one) to every kind of instruction.
func TestOffScaleInputsInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	const bs = 64
	lay := ckksir.Layout{Shape: ir.Shape{8}, Offset: 5}
	blk := func(v []float64) []float64 {
		b := make([]float64, bs)
		copy(b[5:], v)
		return b
	}
	shift := ckksir.NewMatrix(map[int][]float64{0: blk(randVec(rng, 8, 1)), 1: blk(randVec(rng, 7, 1))})
	p := &ckksir.Program{
		Params: smallParams(6), BlockSize: bs, Batch: 2048 / bs,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "a", Value: 4}, {Name: "b", Value: 5}, {Name: "c", Value: 6}, {Name: "d", Value: 7}},
		Values: []ckksir.Value{
			{Layout: lay, Level: 6}, // x
			{Layout: lay, Level: 5}, // v1 = x*x
			{Layout: lay, Level: 2}, // v2 = p7(v1) on [-1, 1]
			{Layout: lay, Level: 2}, // v3 = p3(v1) on [0, 2]
			{Layout: lay, Level: 1}, // v4 = S v1 + S v2 + bias
			{Layout: lay, Level: 2}, // v5 = v1 + v3
			{Layout: lay, Level: 4}, // v6 = v1 * c
			{Layout: lay, Level: 5}, // v7 = v1 + c
		},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpMul, Out: 1, In: []int{0, 0}},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: &ckksir.Poly{A: -1, B: 1, Coeffs: randVec(rng, 8, 0.5)}},
			{Op: ckksir.OpPoly, Out: 3, In: []int{1}, Poly: &ckksir.Poly{A: 0, B: 2, Coeffs: randVec(rng, 4, 0.5)}},
			{Op: ckksir.OpLinear, Out: 4, In: []int{1, 2}, Matrices: []*ckksir.Matrix{shift, shift}, Bias: blk(randVec(rng, 8, 1))},
			{Op: ckksir.OpAdd, Out: 5, In: []int{1, 3}},
			{Op: ckksir.OpMulConst, Out: 6, In: []int{1}, Vector: blk(randVec(rng, 8, 2))},
			{Op: ckksir.OpAddConst, Out: 7, In: []int{1}, Bias: blk(randVec(rng, 8, 2))},
		},
	}
	c, _, e := setup(t, p)
	if relDiff(e.scales[1], e.plan.params.DefaultScale()) == 0 {
		t.Fatal("the product is at the default scale: the test tests nothing")
	}
	n := 40
	xs := randVec(rng, n*8, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 8}, xs))
	if err != nil {
		t.Fatal(err)
	}
	outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		got, err := c.Decrypt(name, outs[name], n)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for s := 0; s < n; s++ {
			want := refBlocks(p, map[string][]float64{"x": xs[s*8 : (s+1)*8]})[name]
			worst = math.Max(worst, maxAbsDiff(got.Float[s*8:(s+1)*8], want))
		}
		t.Logf("%s: max error %.3g", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: max error %.3g", name, worst)
		}
	}
}

// TestBlockWrapInsecureSmallRing applies matrices with every kind of
// diagonal: in-block ones, ones whose entries wrap inside their block (read
// modulo BlockSize, never from the neighbouring block), with batch 32 and
// with a single block filling the ciphertext.
func TestBlockWrapInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, bs := range []int{64, 2048} {
		diags := map[int][]float64{}
		for _, d := range []int{0, 1, 5, -3, bs - 1, -(bs - 2)} {
			diags[d] = randVec(rng, bs, 0.3) // wrapping entries included
		}
		m := ckksir.NewMatrix(diags)
		lay := ckksir.Layout{Shape: ir.Shape{bs}, Offset: 0}
		p := &ckksir.Program{
			Params: smallParams(2), BlockSize: bs, Batch: 2048 / bs,
			Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
			Outputs: []ckksir.IO{{Name: "y", Value: 1}},
			Values:  []ckksir.Value{{Layout: lay, Level: 2}, {Layout: lay, Level: 1}},
			Instrs:  []ckksir.Instr{{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{m}, Bias: randVec(rng, bs, 1)}},
		}
		c, evk, e := setup(t, p)
		n := p.Batch + 1
		xs := randVec(rng, n*bs, 1)
		cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, bs}, xs))
		if err != nil {
			t.Fatal(err)
		}
		outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
		if err != nil {
			t.Fatal(err)
		}
		y, err := c.Decrypt("y", outs["y"], n)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for s := 0; s < n; s++ {
			want := refBlocks(p, map[string][]float64{"x": xs[s*bs : (s+1)*bs]})["y"]
			worst = math.Max(worst, maxAbsDiff(y.Float[s*bs:(s+1)*bs], want))
		}
		t.Logf("block %d: %d Galois keys, max error %.3g", bs, evk.Count(), worst)
		if worst > 1e-6 {
			t.Errorf("block %d: max error %.3g", bs, worst)
		}
	}
}

// TestEncodingMatchesLattigoInsecureSmallRing checks the evaluator's
// diagonal-by-diagonal encoding against hefloat.EncodeLinearTransformation
// of the fully expanded matrix.
func TestEncodingMatchesLattigoInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	for _, bs := range []int{64, 2048} {
		diags := map[int][]float64{}
		for _, d := range []int{0, 1, 5, -3, 17, -40, bs - 1, -(bs - 2)} {
			diags[d] = randVec(rng, bs, 1)
		}
		m := ckksir.NewMatrix(diags)
		p := &ckksir.Program{Params: smallParams(2), BlockSize: bs, Batch: 2048 / bs}
		pl := &plan{prog: p, slots: 2048}
		var err error
		if pl.params, err = newParams(p.Params, 0); err != nil {
			t.Fatal(err)
		}
		mp := matrixPlan{level: 2, diags: fullDiagonalIndices(m, bs, 2048)}
		scale := rlwe.NewScale(pl.params.Q()[2])
		lt, jobs, err := allocMatrix(pl, m, mp, scale, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := runJobs(pl, jobs); err != nil {
			t.Fatal(err)
		}
		ref := hefloat.NewLinearTransformation(pl.params, hefloat.LinearTransformationParameters{
			DiagonalsIndexList: mp.diags, Level: 2, Scale: scale,
			LogDimensions: pl.params.LogMaxDimensions(), LogBabyStepGianStepRatio: bsgsLogRatio,
		})
		if err := hefloat.EncodeLinearTransformation[float64](hefloat.NewEncoder(pl.params), hefloat.Diagonals[float64](expandMatrix(m, bs, p.Batch, 2048)), ref); err != nil {
			t.Fatal(err)
		}
		if len(ref.Vec) != len(lt.lt.Vec) || ref.N1 != lt.lt.N1 {
			t.Fatalf("block %d: %d diagonals N1=%d, Lattigo %d N1=%d", bs, len(lt.lt.Vec), lt.lt.N1, len(ref.Vec), ref.N1)
		}
		for k, v := range ref.Vec {
			if mine := lt.lt.Vec[k]; !v.Equal(&mine) {
				t.Errorf("block %d: diagonal %d differs from Lattigo's encoding", bs, k)
			}
		}
	}
}

func galoisSet(evk *EvaluationKeys) []uint64 {
	var g []uint64
	for k := range evk.set.GaloisKeys {
		g = append(g, k)
	}
	sort.Slice(g, func(a, b int) bool { return g[a] < g[b] })
	return g
}

func TestGaloisKeysInsecureSmallRing(t *testing.T) {
	lay := ckksir.Layout{Shape: ir.Shape{16}, Offset: 0}
	linear := func(diags ...int) *ckksir.Program {
		dense := map[int][]float64{}
		for _, d := range diags {
			v := make([]float64, 64)
			for j := range v {
				if j+d >= 0 && j+d < 64 {
					v[j] = 0.5
				}
			}
			dense[d] = v
		}
		m := ckksir.NewMatrix(dense)
		return &ckksir.Program{
			Params: smallParams(1), BlockSize: 64, Batch: 32,
			Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
			Outputs: []ckksir.IO{{Name: "y", Value: 1}},
			Values:  []ckksir.Value{{Layout: lay, Level: 1}, {Layout: lay, Level: 0}},
			Instrs:  []ckksir.Instr{{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{m}}},
		}
	}

	// Diagonal 0 only: no rotation, no relinearization.
	p := linear(0)
	c, evk, e := setup(t, p)
	if evk.Count() != 0 || evk.set.RelinearizationKey != nil {
		t.Errorf("diagonal 0: %d Galois keys, relinearization key %v", evk.Count(), evk.set.RelinearizationKey != nil)
	}
	xs := randVec(rand.New(rand.NewSource(5)), 16, 1)
	cts, _ := c.Encrypt("x", ir.NewFloat(ir.Shape{1, 16}, xs))
	outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	y, _ := c.Decrypt("y", outs["y"], 1)
	for i := range xs {
		if math.Abs(y.Float[i]-0.5*xs[i]) > 1e-6 {
			t.Fatalf("diagonal 0: y[%d] = %g, want %g", i, y.Float[i], 0.5*xs[i])
		}
	}

	// Several diagonals: exactly Lattigo's BSGS elements, less the identity,
	// and the same the evaluator's encoded transformation asks for.
	p = linear(-9, -2, 0, 1, 3, 7, 12, 30)
	c, evk, e = setup(t, p)
	params := e.plan.params
	slots := params.MaxSlots()
	var idx []int
	for _, d := range []int{-9, -2, 0, 1, 3, 7, 12, 30} {
		idx = append(idx, (d+slots)%slots)
	}
	var want []uint64
	for _, g := range hefloat.GaloisElementsForLinearTransformation(params, hefloat.LinearTransformationParameters{
		DiagonalsIndexList: idx, LogDimensions: params.LogMaxDimensions(), LogBabyStepGianStepRatio: bsgsLogRatio,
	}) {
		if g != params.GaloisElement(0) {
			want = append(want, g)
		}
	}
	sort.Slice(want, func(a, b int) bool { return want[a] < want[b] })
	got := galoisSet(evk)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Galois elements %v, want %v", got, want)
	}
	var fromLT []uint64
	for _, g := range e.instrs[0].lts[0].lt.GaloisElements(params) {
		if g != params.GaloisElement(0) {
			fromLT = append(fromLT, g)
		}
	}
	sort.Slice(fromLT, func(a, b int) bool { return fromLT[a] < fromLT[b] })
	if fmt.Sprint(fromLT) != fmt.Sprint(want) {
		t.Errorf("the encoded transformation needs %v, the keys hold %v", fromLT, want)
	}
	t.Logf("8 diagonals: %d Galois keys (N1=%d)", len(got), e.instrs[0].lts[0].lt.N1)

	// A key set lacking one rotation is refused by name.
	delete(evk.set.GaloisKeys, got[0])
	if _, err := NewEvaluator(p, evk); err == nil || !strings.Contains(err.Error(), "lack the Galois key") {
		t.Errorf("NewEvaluator with a missing key: %v", err)
	}
	_ = c
}

func TestEncryptErrorsInsecureSmallRing(t *testing.T) {
	m := buildMainProgram(rand.New(rand.NewSource(6)))
	c, err := NewClient(m.p)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		x    *ir.Tensor
		want string
	}{
		{"x", ir.NewFloat(ir.Shape{3, 4, 6}, nil), `input "x": tensor of shape [3x4x6]`},
		{"x", ir.NewFloat(ir.Shape{4, 5}, nil), `input "x": tensor of shape [4x5]`},
		{"x", ir.NewFloat(ir.Shape{3, 20}, nil), `input "x"`},
		{"x", ir.NewFloat(ir.Shape{0, 4, 5}, nil), "no samples"},
		{"x", nil, "nil tensor"},
		{"x", &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 4, 5}, Float: make([]float64, 3)}, "holds 3 elements"},
		{"z", ir.NewFloat(ir.Shape{1, 4, 5}, nil), `no input "z"`},
	}
	for _, tc := range cases {
		_, err := c.Encrypt(tc.name, tc.x)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Encrypt(%q, %v): error %v, want one containing %q", tc.name, tc.x, err, tc.want)
		}
	}
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{2, 4, 5}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decrypt("y", cts, 100); err == nil {
		t.Error("Decrypt accepted 1 ciphertext for 100 samples")
	}
	if _, err := c.Decrypt("nope", cts, 1); err == nil {
		t.Error("Decrypt accepted an unknown output")
	}
	if _, err := c.UnmarshalCiphertext([]byte("garbage")); err == nil {
		t.Error("UnmarshalCiphertext accepted garbage")
	}
	if _, err := UnmarshalEvaluationKeys(m.p, append([]byte("ccEVK\x01"), 1, 2, 3)); err == nil {
		t.Error("UnmarshalEvaluationKeys accepted garbage")
	}
}

func TestRunErrorsInsecureSmallRing(t *testing.T) {
	m := buildMainProgram(rand.New(rand.NewSource(7)))
	c, evk, e := setup(t, m.p)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{1, 4, 5}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(map[string][]*Ciphertext{}); err == nil || !strings.Contains(err.Error(), `missing input "x"`) {
		t.Errorf("Run without input: %v", err)
	}
	if _, err := e.Run(map[string][]*Ciphertext{"x": cts, "w": cts}); err == nil {
		t.Error("Run accepted an unknown input")
	}
	low := &Ciphertext{ct: cts[0].ct.CopyNew()}
	low.ct.Resize(1, 3)
	if _, err := e.Run(map[string][]*Ciphertext{"x": {low}}); err == nil || !strings.Contains(err.Error(), "level 3") {
		t.Errorf("Run on a low-level ciphertext: %v", err)
	}
	// A bootstrapping program is refused keys without bootstrapping keys,
	// naming the instruction.
	p := *m.p
	p.Instrs = append([]ckksir.Instr(nil), m.p.Instrs...)
	p.Values = append([]ckksir.Value(nil), m.p.Values...)
	p.Values = append(p.Values, ckksir.Value{Layout: p.Values[9].Layout, Level: 8})
	p.Instrs = append(p.Instrs, ckksir.Instr{Op: ckksir.OpBootstrap, Out: len(p.Values) - 1, In: []int{9}, Layer: "btp"})
	p.Boot = ckksir.DefaultBootParams()
	if _, err := NewEvaluator(&p, evk); err == nil || !strings.Contains(err.Error(), "instruction 10 (bootstrap, layer btp): the evaluation keys lack the bootstrapping keys") {
		t.Errorf("NewEvaluator with bootstrapping: %v", err)
	}
}

// BenchmarkLinear times one 128x128 dense block matrix (255 diagonals) at
// LogN 14 (insecure moduli: the benchmark is about speed), 64 blocks of 128
// slots, on one ciphertext (the giant steps split across all cores) and on
// NumCPU ciphertexts (one per core).
func BenchmarkLinear(b *testing.B) {
	rng := rand.New(rand.NewSource(8))
	const bs = 128
	lay := ckksir.Layout{Shape: ir.Shape{bs}, Offset: 0}
	p := &ckksir.Program{
		Params:    ckksir.Params{LogN: 14, LogQ: []int{55, 40, 40}, LogP: []int{56, 56}, LogScale: 40},
		BlockSize: bs, Batch: 8192 / bs,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 1}},
		Values:  []ckksir.Value{{Layout: lay, Level: 2}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{{Op: ckksir.OpLinear, Out: 1, In: []int{0},
			Matrices: []*ckksir.Matrix{denseMatrix(randMatrix(rng, bs, bs, 0.1), 0, 0, bs)}}},
	}
	c, evk, e := setup(b, p)
	b.Logf("%d diagonals, %d Galois keys (%.1f MB), N1=%d, %d cores", p.DiagonalCount(), evk.Count(),
		float64(evk.Bytes())/1e6, e.instrs[0].lts[0].lt.N1, runtime.NumCPU())
	for _, tc := range []struct{ n, cpus int }{{1, 1}, {1, runtime.NumCPU()}, {runtime.NumCPU(), runtime.NumCPU()}} {
		n := tc.n
		b.Run(fmt.Sprintf("ciphertexts=%d/cores=%d", n, tc.cpus), func(b *testing.B) {
			e.cpus = tc.cpus
			cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n * p.Batch, bs}, randVec(rng, n*p.Batch*bs, 1)))
			if err != nil {
				b.Fatal(err)
			}
			in := map[string][]*Ciphertext{"x": cts}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.Run(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*n), "ms/ciphertext")
		})
	}
}

// TestPartialBatchRepeatsSamplesInsecureSmallRing checks that the blocks of
// a last, partly filled ciphertext repeat its own samples instead of holding
// zeros (an all-zero sample can leave the calibrated ranges and, through a
// bootstrap, corrupt the real samples beside it), in slot and in feature
// packing. The program outputs its input, so decrypting every block shows
// what was encrypted.
func TestPartialBatchRepeatsSamplesInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	params := smallParams(1)
	for _, tc := range []struct {
		packing   ckksir.Packing
		blockSize int
		size      int
	}{{ckksir.PackSlot, 64, 64}, {ckksir.PackFeature, 1, 3}} {
		batch := params.Slots() / tc.blockSize
		lay := ckksir.Layout{Shape: ir.Shape{tc.size}}
		p := &ckksir.Program{
			Params: params, Packing: tc.packing, BlockSize: tc.blockSize, Batch: batch,
			Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
			Outputs: []ckksir.IO{{Name: "x", Value: 0}},
			Values:  []ckksir.Value{{Layout: lay, Level: 1}},
		}
		c, _, _ := setup(t, p)
		n := batch + 3 // a full ciphertext (batch), then 3 samples
		xs := randVec(rng, n*tc.size, 1)
		cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, tc.size}, xs))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt("x", cts, 2*batch)
		if err != nil {
			t.Fatal(err)
		}
		for b := range 2 * batch {
			want := b
			if b >= n {
				want = batch + (b-batch)%3
			}
			if d := maxAbsDiff(got.Float[b*tc.size:(b+1)*tc.size], xs[want*tc.size:(want+1)*tc.size]); d > 1e-6 {
				t.Fatalf("%v: block %d differs from sample %d by %.3g", tc.packing, b, want, d)
			}
		}
	}
}
