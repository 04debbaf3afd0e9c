package ckks

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
)

// smallBootParams is a reduced bootstrapping circuit for the test rings:
// three CoeffsToSlots levels, two SlotsToCoeffs levels, Lattigo's default
// modular reduction (8 levels), three 61-bit P primes. With the ring of
// bootProgram its modulus is far beyond what N=2^13 secures: insecure by
// design, for speed.
func smallBootParams() *ckksir.BootParams {
	b := ckksir.DefaultBootParams()
	b.CoeffsToSlotsLogQ = []int{56, 56, 56}
	b.SlotsToCoeffsLogQ = []int{39, 39}
	b.LogP = []int{61, 61, 61}
	return b
}

// bootProgram runs x -> linear -> cubic -> bootstrap -> cubic -> square ->
// bootstrap -> degree 7 on a residual chain of 3 levels at N=2^13: two
// bootstraps, both at level 0, the second of a product whose scale is not
// the default one. Every value stays within [-1, 1].
func bootProgram(rng *rand.Rand) *ckksir.Program {
	const bs, size = 16, 8
	lay := ckksir.Layout{Shape: ir.Shape{size}}
	poly := func(deg int) *ckksir.Poly {
		c := randVec(rng, deg+1, 1)
		sum := 0.0
		for _, v := range c {
			sum += math.Abs(v)
		}
		for i := range c {
			c[i] *= 0.9 / sum // |p(x)| <= 0.9 on [-1, 1]
		}
		return &ckksir.Poly{Func: "test", A: -1, B: 1, Coeffs: c}
	}
	levels := []int{3, 2, 0, 3, 1, 0, 3, 0}
	vals := make([]ckksir.Value, len(levels))
	for i, l := range levels {
		vals[i] = ckksir.Value{Layout: lay, Level: l}
	}
	return &ckksir.Program{
		Params:    ckksir.Params{LogN: 13, LogQ: []int{60, 40, 40, 40}, LogP: []int{61}, LogScale: 40},
		BlockSize: bs, Batch: 4096 / bs,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 7}},
		Values:  vals,
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Matrices: []*ckksir.Matrix{denseMatrix(randMatrix(rng, size, size, 0.12), 0, 0, bs)},
				Bias: append(randVec(rng, size, 0.02), make([]float64, bs-size)...), Layer: "fc"},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: poly(3), Layer: "act1"},
			{Op: ckksir.OpBootstrap, Out: 3, In: []int{2}, Layer: "boot1"},
			{Op: ckksir.OpPoly, Out: 4, In: []int{3}, Poly: poly(3), Layer: "act2"},
			{Op: ckksir.OpMul, Out: 5, In: []int{4, 4}, Layer: "square"},
			{Op: ckksir.OpBootstrap, Out: 6, In: []int{5}, Layer: "boot2"},
			{Op: ckksir.OpPoly, Out: 7, In: []int{6}, Poly: poly(7), Layer: "act3"},
		},
		Boot: smallBootParams(),
	}
}

// TestBootstrapInsecureSmallRing runs a program that needs two bootstraps
// encrypted, with keys that went through serialization, and compares it
// with the plaintext reference. Tolerance: Lattigo reports 27 bits of
// precision (about 1e-8) for its default circuit on messages in [-1, 1];
// this one has fewer, denser DFT levels and the same modular reduction, so
// allow 2^-20 (1e-6) per bootstrap. Each polynomial after a bootstrap has
// Chebyshev coefficients summing to 0.9 in absolute value, so its Lipschitz
// constant on [-1, 1] is at most 0.9·deg^2 (Markov): 8 for the cubic, 44
// for degree 7, and the square doubles an error: 1e-6·(8·2 + 1)·44 < 1e-3
// bounds the output's error after both bootstraps (measured: about 6e-9).
// A broken bootstrap (wrong scale, wrong key, wrong level) errs by O(0.1).
func TestBootstrapInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	p := bootProgram(rng)
	start := time.Now()
	c, err := NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	var done, total int
	evk, err := c.EvaluationKeys(func(d, n int) { done, total = d, n })
	if err != nil {
		t.Fatal(err)
	}
	pl := c.plan
	if !evk.HasBootstrapping() || done != total || total != len(pl.galEls)+1+pl.bootKeyCount() || pl.bootKeyCount() < 3 {
		t.Fatalf("keys: bootstrapping %v, progress %d of %d, %d bootstrapping keys", evk.HasBootstrapping(), done, total, pl.bootKeyCount())
	}
	kp, err := PlanKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	if kp.BootstrapKeys != pl.bootKeyCount() || kp.BootstrapBytes <= 0 {
		t.Errorf("PlanKeys: %d bootstrapping keys of %d bytes, want %d", kp.BootstrapKeys, kp.BootstrapBytes, pl.bootKeyCount())
	}
	// SlotsToCoeffs-only rotations get keys at that transform's level,
	// smaller than the top-level keys of CoeffsToSlots.
	bp := pl.boot.BootstrappingParameters
	lower := 0
	for _, g := range pl.bootGalEls {
		if pl.bootKeyLevel(g) < bp.MaxLevelQ() {
			lower++
		}
	}
	if top := int64(pl.bootKeyCount()) * keyBytes(bp, bp.MaxLevelQ()); lower == 0 || kp.BootstrapBytes >= top {
		t.Errorf("bootstrapping keys: %d below the top level, %d bytes (all at the top: %d)", lower, kp.BootstrapBytes, top)
	}
	if kp.BootstrapMatrixBytes <= 0 {
		t.Errorf("PlanKeys: bootstrapping matrices of %d bytes", kp.BootstrapMatrixBytes)
	}
	// The estimate counts coefficients only; headers add a little.
	if d := float64(evk.Bytes()-kp.TotalBytes) / float64(evk.Bytes()); d < 0 || d > 0.01 {
		t.Errorf("PlanKeys: %d bytes in all, the keys serialize to %d", kp.TotalBytes, evk.Bytes())
	}
	// The worker gets the keys over the network (one copy at a time: they
	// are large).
	data, err := evk.MarshalBinary()
	if err != nil || int64(len(data)) != evk.Bytes() {
		t.Fatalf("MarshalBinary: %d bytes, Bytes() %d, err %v", len(data), evk.Bytes(), err)
	}
	t.Logf("keys: %d Galois + %d bootstrapping keys, %.1f MB, generated in %v", evk.Count(), pl.bootKeyCount(), float64(len(data))/1e6, time.Since(start))
	evk = nil
	evk2, err := UnmarshalEvaluationKeys(p, data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	data = nil
	if again, err := evk2.MarshalBinary(); err != nil || sha256.Sum256(again) != sum {
		t.Fatalf("re-marshaled keys differ (err %v)", err)
	}
	e, err := NewEvaluator(p, evk2)
	if err != nil {
		t.Fatal(err)
	}

	const n = 300 // two ciphertexts (two lanes on two cores), the second partly filled
	xs := randVec(rng, n*8, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, 8}, xs))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Run: %d ciphertexts, 2 bootstraps each, in %v on %d cores", len(cts), time.Since(start), runtime.NumCPU())
	if outs["y"][0].Level() != 0 {
		t.Errorf("output level %d, want 0", outs["y"][0].Level())
	}
	y, err := c.Decrypt("y", outs["y"], n)
	if err != nil {
		t.Fatal(err)
	}
	worst, mag := 0.0, 0.0
	for s := 0; s < n; s++ {
		want := refBlocks(p, map[string][]float64{"x": xs[s*8 : (s+1)*8]})["y"]
		worst = math.Max(worst, maxAbsDiff(y.Float[s*8:(s+1)*8], want))
		for _, v := range want {
			mag = math.Max(mag, math.Abs(v))
		}
	}
	t.Logf("max error %.3g (|y| up to %.3g)", worst, mag)
	if !(worst < 1e-3) || mag < 0.05 {
		t.Fatalf("max error %.3g (|y| up to %.3g), want < 1e-3", worst, mag)
	}
}

// tinyBootProgram bootstraps once on a 2^10 ring with a minimal
// bootstrapping circuit: cheap keys for the serialization tests and fuzz
// seeds (never run: far too imprecise and insecure).
func tinyBootProgram() *ckksir.Program {
	lay := ckksir.Layout{Shape: ir.Shape{4}}
	return &ckksir.Program{
		Params:    ckksir.Params{LogN: 10, LogQ: []int{60, 40}, LogP: []int{61}, LogScale: 40},
		BlockSize: 8, Batch: 64,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 2}},
		Values:  []ckksir.Value{{Layout: lay, Level: 1}, {Layout: lay, Level: 0}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpMul, Out: 1, In: []int{0, 0}},
			{Op: ckksir.OpBootstrap, Out: 2, In: []int{1}},
		},
		Boot: &ckksir.BootParams{SecretWeight: 32, EphemeralWeight: 16, CoeffsToSlotsLogQ: []int{50, 50, 50}, SlotsToCoeffsLogQ: []int{30, 30, 30},
			EvalModLogScale: 50, LogMessageRatio: 8, K: 2, Mod1Degree: 4, DoubleAngle: 0, LogP: []int{61, 61, 61, 61}},
	}
}

// bootSection is the offset of the bootstrapping section of serialized keys
// of p: its has-encapsulation flag.
func bootSection(t testing.TB, p *ckksir.Program, data []byte) int {
	t.Helper()
	pl, err := newPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := pl.walkEvaluationKeys(data[len(evkMagic):])
	if err != nil {
		t.Fatal(err)
	}
	return len(evkMagic) + lay.set[1]
}

func TestUnmarshalBootstrapKeysInsecureSmallRing(t *testing.T) {
	p := tinyBootProgram()
	c, err := NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := evk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bootstrapping keys, %.1f MB", c.plan.bootKeyCount(), float64(len(data))/1e6)
	evk2, err := UnmarshalEvaluationKeys(p, data)
	if err != nil {
		t.Fatal(err)
	}
	if !evk2.HasBootstrapping() || evk2.Bytes() != int64(len(data)) {
		t.Fatalf("round trip: bootstrapping %v, %d bytes of %d", evk2.HasBootstrapping(), evk2.Bytes(), len(data))
	}
	if again, err := evk2.MarshalBinary(); err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-marshaled keys differ (err %v)", err)
	}
	// Streamed (the data owner's key files, the uploads) as marshaled: the
	// bootstrapping section included.
	var streamed bytes.Buffer
	if n, err := evk.WriteTo(&streamed); err != nil || n != int64(len(data)) || !bytes.Equal(streamed.Bytes(), data) {
		t.Fatalf("WriteTo: %d bytes (err %v), want the %d bytes of MarshalBinary", n, err, len(data))
	}
	if err := checkBootKeys(c.plan, evk2.boot); err != nil {
		t.Fatal(err)
	}

	// Keys of the same program without the bootstrap lack the section.
	plain := tinyBootProgram()
	plain.Instrs, plain.Outputs = plain.Instrs[:1], []ckksir.IO{{Name: "y", Value: 1}}
	plainKeys := marshalKeys(t, plain)
	if _, err := UnmarshalEvaluationKeys(plain, data); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("bootstrapping keys for a program without bootstrap: %v", err)
	}

	sec := bootSection(t, p, data)
	tamper := func(off int, v uint64) []byte {
		b := bytes.Clone(data)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	flag := func(v byte) []byte {
		b := bytes.Clone(data)
		b[sec] = v
		return b
	}
	noEph := tinyBootProgram()
	noEph.Boot.EphemeralWeight = 0
	cases := []struct {
		name string
		p    *ckksir.Program
		b    []byte
		want string
	}{
		{"no bootstrapping section", p, plainKeys, "truncated at bootstrapping encapsulation keys"},
		{"truncated in the encapsulation keys", p, data[:sec+100], "truncated"},
		{"truncated in the bootstrapping key set", p, data[:len(data)-8], "truncated"},
		{"trailing byte", p, append(bytes.Clone(data), 0), "trailing"},
		{"bad encapsulation flag", p, flag(2), "bad bootstrapping encapsulation keys flag 2"},
		{"encapsulation flag cleared", p, flag(0), "bootstrapping"},
		{"keys without encapsulation expected", noEph, data, "encapsulation keys present: true"},
		{"huge digit count", p, tamper(sec+1+8, 1<<40), "bootstrapping dense-to-sparse key RNS digit count"},
		{"huge row count", p, tamper(sec+1+8+8+8+8, 1<<50), "RNS row count"},
		{"huge coefficient count", p, tamper(sec+1+8+8+8+8+8, 1<<60), "coefficient count"},
	}
	for _, tc := range cases {
		_, err := UnmarshalEvaluationKeys(tc.p, tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A key set without bootstrapping keys is refused by the evaluator.
	if _, err := NewEvaluator(p, &EvaluationKeys{set: evk.set}); err == nil || !strings.Contains(err.Error(), "instruction 1 (bootstrap): the evaluation keys lack the bootstrapping keys") {
		t.Errorf("NewEvaluator without bootstrapping keys: %v", err)
	}
	// So is one whose bootstrapping keys miss a Galois key.
	bk := *evk.boot
	set := *bk.MemEvaluationKeySet
	set.GaloisKeys = map[uint64]*rlwe.GaloisKey{}
	bk.MemEvaluationKeySet = &set
	if _, err := NewEvaluator(p, &EvaluationKeys{set: evk.set, boot: &bk}); err == nil || !strings.Contains(err.Error(), "lack the bootstrapping Galois key") {
		t.Errorf("NewEvaluator with incomplete bootstrapping keys: %v", err)
	}
}

// FuzzUnmarshalBootstrapKeys feeds arbitrary bytes to the evaluation key
// decoder of a bootstrapping program: it must return an error or exactly
// the keys the program needs, never crash.
func FuzzUnmarshalBootstrapKeys(f *testing.F) {
	p := tinyBootProgram()
	data := marshalKeys(f, p)
	sec := bootSection(f, p, data)
	f.Add(data)
	for _, n := range []int{sec, sec + 1, sec + 9, sec + 17, sec + 41, len(data) / 2, len(data) - 1} {
		f.Add(data[:n])
	}
	for _, off := range []int{sec, sec + 1, sec + 9, sec + 17, sec + 25, sec + 33, len(data) - 8*1024 - 8} {
		b := bytes.Clone(data)
		b[off] ^= 0x40
		f.Add(b)
	}
	pl, err := newPlan(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evk, err := pl.unmarshalEvaluationKeys(b)
		if err != nil {
			return
		}
		if evk.Bytes() != int64(len(b)) || evk.boot == nil || checkBootKeys(pl, evk.boot) != nil {
			t.Fatalf("decoded %d bytes into incomplete keys without an error", len(b))
		}
	})
}

// TestBootstrapExtraLogQP checks the reported bit count against the primes
// Lattigo actually draws for the bootstrapping parameters, and Lattigo's
// own 128-bit sparse-secret set N16QP1546H192H32 (residual chain 60 + 9x40,
// default circuit): 1546 bits in all.
func TestBootstrapExtraLogQP(t *testing.T) {
	for _, tc := range []struct {
		p    ckksir.Params
		boot *ckksir.BootParams
		want int
	}{
		{bootProgram(rand.New(rand.NewSource(1))).Params, smallBootParams(), 3*56 + 8*60 + 2*39 + 3*61},
		{ckksir.Params{LogN: 13, LogQ: []int{50, 20, 20}, LogP: []int{51}, LogScale: 20}, smallBootParams(), 3*56 + 8*60 + 2*59 + 3*61},
		{tinyBootProgram().Params, tinyBootProgram().Boot, 3*50 + 3*50 + 3*30 + 4*61},
	} {
		got, err := BootstrapExtraLogQP(tc.p, tc.boot)
		if err != nil || got != tc.want {
			t.Errorf("%s with %s: %d extra bits (err %v), want %d", tc.p, tc.boot, got, err, tc.want)
			continue
		}
		params, err := newParams(tc.p, tc.boot.SecretWeight)
		if err != nil {
			t.Fatal(err)
		}
		btp, err := bootstrapping.NewParametersFromLiteral(params, bootLiteral(tc.p, tc.boot))
		if err != nil {
			t.Fatal(err)
		}
		bp := btp.BootstrappingParameters
		actual := 0.0
		for _, q := range append(bp.Q()[params.MaxLevel()+1:], bp.P()...) {
			actual += math.Log2(float64(q))
		}
		if math.Abs(actual-float64(got)) > 1 {
			t.Errorf("%s with %s: Lattigo's primes add %.2f bits, reported %d", tc.p, tc.boot, actual, got)
		}
	}
	residual := ckksir.Params{LogN: 16, LogQ: []int{60, 40, 40, 40, 40, 40, 40, 40, 40, 40}, LogScale: 40}
	extra, err := BootstrapExtraLogQP(residual, ckksir.DefaultBootParams())
	if err != nil || 420+extra != 1546 {
		t.Errorf("default circuit over Lattigo's N16QP1546 residual chain: %d + %d bits (err %v), want 1546", 420, extra, err)
	}
	if _, err := BootstrapExtraLogQP(residual, &ckksir.BootParams{}); err == nil {
		t.Error("empty bootstrapping parameters accepted")
	}
}

// TestBootstrapMeasureN16 measures 128-bit bootstrapping at N=2^16 (Lattigo's
// N16QP1546H192H32: residual chain 60 + 9x40 bits, scale 2^40, default
// circuit, secret of Hamming weight 192, 1546 bits of modulus): key
// generation, evaluator set-up, one bootstrap of a level-0 ciphertext. It
// needs about 15 GB and minutes of CPU, so it runs only with
// CIPHERCUT_BOOT_N16=1, e.g.
//
//	go test -c -o /tmp/ckks.test ./runtime/ckks
//	CIPHERCUT_BOOT_N16=1 GOMEMLIMIT=14GiB /usr/bin/time -v /tmp/ckks.test -test.run TestBootstrapMeasureN16 -test.v -test.timeout 1h
func TestBootstrapMeasureN16(t *testing.T) {
	if os.Getenv("CIPHERCUT_BOOT_N16") != "1" {
		t.Skip("set CIPHERCUT_BOOT_N16=1 to measure bootstrapping at N=2^16 (about 15 GB)")
	}
	p := BootstrapProgram(ckksir.Params{LogN: 16, LogQ: []int{60, 40, 40, 40, 40, 40, 40, 40, 40, 40}, LogP: []int{61, 61}, LogScale: 40})
	extra, err := BootstrapExtraLogQP(p.Params, p.Boot)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := PlanKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s + bootstrapping %s: %d + %d = %d bits; %d bootstrapping keys planned, %.2f GB in all",
		p.Params, p.Boot, 420, extra, 420+extra, kp.BootstrapKeys, float64(kp.TotalBytes)/1e9)
	rss := func() string {
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				return strings.Join(strings.Fields(l)[1:], " ")
			}
		}
		return "?"
	}
	start := time.Now()
	c, err := NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("key generation: %v on %d cores, %.2f GB of keys (peak RSS so far %s)", time.Since(start), runtime.NumCPU(), float64(evk.Bytes())/1e9, rss())
	start = time.Now()
	e, err := NewEvaluator(p, evk)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evaluator: %v (peak RSS so far %s)", time.Since(start), rss())
	rng := rand.New(rand.NewSource(3))
	xs := randVec(rng, 64*16, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{64, 16}, xs))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	outs, err := e.Run(map[string][]*Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	y, err := c.Decrypt("y", outs["y"], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one bootstrap: %v on %d cores, max error %.3g, output level %d (peak RSS %s)",
		took, runtime.NumCPU(), maxAbsDiff(y.Floats(), xs), outs["y"][0].Level(), rss())
}

// TestBootstrapFeatureInsecureSmallRing bootstraps in feature packing: each
// of a value's ciphertexts is refreshed on its own.
func TestBootstrapFeatureInsecureSmallRing(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	const k = 2
	lay := ckksir.Layout{Shape: ir.Shape{k}}
	w := randMatrix(rng, k, k, 0.4)
	dense := &ckksir.DenseMatrix{Rows: k, Cols: k, Data: append(append([]float64(nil), w[0]...), w[1]...)}
	cheb := &ckksir.Poly{Func: "test", A: -1, B: 1, Coeffs: []float64{0.05, 0.6, 0.1, -0.2}}
	p := &ckksir.Program{
		Params:  ckksir.Params{LogN: 13, LogQ: []int{60, 40, 40, 40}, LogP: []int{61}, LogScale: 40},
		Packing: ckksir.PackFeature, BlockSize: 1, Batch: 4096,
		Inputs:  []ckksir.IO{{Name: "x", Value: 0}},
		Outputs: []ckksir.IO{{Name: "y", Value: 4}},
		Values:  []ckksir.Value{{Layout: lay, Level: 3}, {Layout: lay, Level: 2}, {Layout: lay, Level: 0}, {Layout: lay, Level: 3}, {Layout: lay, Level: 1}},
		Instrs: []ckksir.Instr{
			{Op: ckksir.OpLinear, Out: 1, In: []int{0}, Dense: []*ckksir.DenseMatrix{dense}},
			{Op: ckksir.OpPoly, Out: 2, In: []int{1}, Poly: cheb},
			{Op: ckksir.OpBootstrap, Out: 3, In: []int{2}},
			{Op: ckksir.OpPoly, Out: 4, In: []int{3}, Poly: cheb},
		},
		Boot: smallBootParams(),
	}
	c, _, e := setup(t, p)
	const n = 100
	xs := randVec(rng, n*k, 1)
	cts, err := c.Encrypt("x", ir.NewFloat(ir.Shape{n, k}, xs))
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
		h := matVec(w, xs[s*k:(s+1)*k])
		for r := range h {
			want := chebyshev(cheb.Coeffs, -1, 1, chebyshev(cheb.Coeffs, -1, 1, h[r]))
			worst = math.Max(worst, math.Abs(y.Float[s*k+r]-want))
		}
	}
	t.Logf("max error %.3g", worst)
	if !(worst < 1e-3) {
		t.Fatalf("max error %.3g, want < 1e-3 (see TestBootstrapInsecureSmallRing)", worst)
	}
}

// TestBootScaleInsecureSmallRing checks the planned scale of a bootstrap's
// output against the scale-down Lattigo documents: from level 0, the input
// is multiplied by round(Q[0]/(scale·2^LogMessageRatio)), and the message
// comes back multiplied by the ratio of the scale reached to
// Q[0]/2^LogMessageRatio. From a higher level, primes are dropped first
// (the ratio Q[0]/scale leaves room), so the same holds.
func TestBootScaleInsecureSmallRing(t *testing.T) {
	p := tinyBootProgram()
	_, _, e := setup(t, p)
	params := e.plan.params
	def := params.DefaultScale()
	q0 := float64(params.Q()[0])
	for _, level := range []int{0, 1} {
		for _, gap := range []float64{0, 1e-5, -3e-6} {
			in := def.Mul(rlwe.NewScale(1 + gap))
			got, err := e.bootScale(level, in)
			if err != nil {
				t.Fatal(err)
			}
			target := q0 / 256
			want := def.Float64() * in.Float64() * math.Round(target/in.Float64()) / target
			if d := math.Abs(got.Float64()/want - 1); d > 1e-12 {
				t.Errorf("level %d, scale gap %g: planned output scale 2^%.9f, want 2^%.9f", level, gap, math.Log2(got.Float64()), math.Log2(want))
			}
			if gap != 0 && math.Abs(got.Float64()/def.Float64()-1-gap) > 1e-3*math.Abs(gap) {
				t.Errorf("level %d, scale gap %g: the output scale's gap is %g, want about the input's", level, gap, got.Float64()/def.Float64()-1)
			}
		}
	}
	// The program's own bootstrap (of a product) is planned that way.
	if want, _ := e.bootScale(0, e.scales[1]); e.scales[2].Cmp(want) != 0 || e.scales[2].Cmp(def) == 0 {
		t.Errorf("planned bootstrap scale 2^%.9f, want 2^%.9f", math.Log2(e.scales[2].Float64()), math.Log2(want.Float64()))
	}
}
