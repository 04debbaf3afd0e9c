package passes

import (
	"math"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// lcDeep builds a network of layers x (Dense 16x16, relu of degree 63 on
// [-8, 8]) then Dense 16x4 on x[1,16]: depth 7 layers + 1; with 8 layers
// (depth 57) deeper than any 128-bit modulus chain.
func lcDeep(layers int) *ir.Graph {
	b := newBuilder("deep", 13)
	h := b.input("x", 1, 16)
	for i := range layers {
		w := b.konst("w"+string(rune('0'+i)), ir.Shape{16, 16})
		for k := range w.Const.Float {
			w.Const.Float[k] *= 0.5
		}
		h = b.op("Dense", nil, h, w, b.konst("b"+string(rune('0'+i)), ir.Shape{16}))
		h = b.op("Poly", lcPolyAttrs("Relu", lcRelu, 8, 63), h)
	}
	return b.output(b.op("Dense", nil, h, b.konst("wo", ir.Shape{16, 4}), nil))
}

// TestLowerKeyBudget lowers a depth-22 network that a modulus chain holds
// without bootstrapping: within a generous key budget it does so; when the
// keys of that chain exceed the budget (LowerOptions.MaxKeyBytes) it
// bootstraps on the short residual chain instead, and its keys shrink.
func TestLowerKeyBudget(t *testing.T) {
	g := lcDeep(3)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	lower := func(budget int64) (*ckksir.Program, *ckks.KeyPlan) {
		t.Helper()
		p, err := LowerCKKS(g, LowerOptions{Boot: ckksir.DefaultBootParams(), MaxKeyBytes: budget})
		if err != nil {
			t.Fatal(err)
		}
		kp, err := ckks.PlanKeys(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, kp
	}
	deep, deepKeys := lower(1 << 40)
	if n := deep.Bootstraps(); n != 0 {
		t.Fatalf("within a 1 TiB key budget: %d bootstraps, want none (%s)", n, deep.Params)
	}
	budget := deepKeys.TotalBytes - deepKeys.KeyBytes
	short, shortKeys := lower(budget)
	t.Logf("without bootstrapping: %s, keys %d MiB; over a %d MiB budget: %s, %d bootstraps, rotation keys %d MiB",
		deep.Params, deepKeys.TotalBytes>>20, budget>>20, short.Params, short.Bootstraps(), (shortKeys.TotalBytes-shortKeys.BootstrapBytes)>>20)
	if short.Bootstraps() == 0 || short.Params.MaxLevel() >= deep.Params.MaxLevel() {
		t.Fatalf("over the key budget: %s with %d bootstraps, want bootstraps on a shorter chain than %s", short.Params, short.Bootstraps(), deep.Params)
	}
}

// TestLowerBootstrappedInsecureSmallRing lowers a depth-57 network with
// bootstrapping: at 128-bit security the residual chain and the
// bootstrapping circuit share N=2^16 within the sparse secret's bound, and
// at least two bootstraps are placed. The program then runs encrypted on a
// test-only N=2^13 ring (same chain, far below 128-bit security) and must
// match the plaintext interpreter within the bound the plan predicts, which
// must be within 1e3 times the error.
func TestLowerBootstrappedInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstrapping takes tens of seconds; skipped in -short mode")
	}
	g := lcDeep(8)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	samples := lcRandomSamples(g, 8, 7)["x"]
	calib := ir.NewFloat(ir.Shape{len(samples), 16}, nil)
	for s, x := range samples {
		copy(calib.Float[s*16:], x)
	}
	if _, err := LowerCKKS(g, LowerOptions{Calib: calib}); err == nil {
		t.Fatal("a depth-57 circuit lowered without bootstrapping")
	}
	p, err := LowerCKKS(g, LowerOptions{Calib: calib, Boot: ckksir.DefaultBootParams()})
	if err != nil {
		t.Fatal(err)
	}
	boots := 0
	for _, ins := range p.Instrs {
		if ins.Op == ckksir.OpBootstrap {
			boots++
		}
	}
	extra, err := ckks.BootstrapExtraLogQP(p.Params, p.Boot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s, %d bootstraps, %d+%d bits of QP\n%s", p.Params, boots, p.Params.LogQP(), extra, lcDump(t, p))
	if boots < 2 || p.Params.LogN != 16 || p.Params.SecurityBits != 128 || sumBits(p.Params.LogQ)+extra > MaxLogQPSparse128[16] {
		t.Fatalf("want >= 2 bootstraps on N=2^16 within %d bits", MaxLogQPSparse128[16])
	}

	// The same program on a test-only small ring.
	p.Params.LogN = 13
	p.Batch = p.Params.Slots() / p.BlockSize
	c, err := ckks.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ckks.NewEvaluator(p, evk)
	if err != nil {
		t.Fatal(err)
	}
	cts, err := c.Encrypt("x", calib)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := e.Run(map[string][]*ckks.Ciphertext{"x": cts})
	if err != nil {
		t.Fatal(err)
	}
	name := p.Outputs[0].Name
	y, err := c.Decrypt(name, outs[name], len(samples))
	if err != nil {
		t.Fatal(err)
	}
	bound := p.Values[p.Outputs[0].Value].Bound
	worst := 0.0
	for s, x := range samples {
		want, err := plain.Run(g, map[string]*ir.Tensor{"x": ir.NewFloat(ir.Shape{1, 16}, x)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range want[name].Floats() {
			worst = math.Max(worst, math.Abs(float64(y.Float[s*4+j])-v))
		}
	}
	t.Logf("max |encrypted - plaintext| = %.3g, predicted bound %.3g (%.0f times)", worst, bound, bound/worst)
	if !(worst <= bound) {
		t.Errorf("max error %.3g exceeds the predicted bound %.3g", worst, bound)
	}
	// The bound is computed for N=2^16, whose noise is larger; it must
	// still be of use here.
	if bound > 1e3*worst {
		t.Errorf("predicted bound %.3g is %.0f times the max error %.3g, want < 1e3", bound, bound/worst, worst)
	}
}

func sumBits(b []int) int {
	s := 0
	for _, x := range b {
		s += x
	}
	return s
}
