package zoo

import (
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/testsuite/synth"
)

// TestAttentionBlockInsecureSmallRing compiles a synthetic pre-LayerNorm
// attention block (LayerNormalization, Q·Kᵀ, softmax, scores·V, projection,
// residual; see package synth) to a 128-bit plan, which needs no bootstrap
// at N=2^16, and runs it encrypted with the plan's ring swapped for N=2^12
// and the same modulus chain: far below 128-bit security (a test-only
// ring), but the same program, layouts, rotations and levels. The output
// must stay within the plan's predicted bound of the plan's plaintext
// reference (its approximated graph: the Exp polynomial, the inverses'
// starting polynomials and Newton iterations), and within a looser
// tolerance of the exact block.
func TestAttentionBlockInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take tens of seconds; skipped in -short mode")
	}
	o := synth.AttentionOptions{}
	g := synth.Attention(o)
	calib := synth.Inputs(o, 256, 5)
	plan, err := compiler.Compile(g, "attention", []byte("synthetic attention block"), compiler.CompileOptions{Calib: calib})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", plan.Approximations)
	p := *plan.Program
	if p.Params.SecurityBits < 128 || p.Bootstraps() != 0 {
		t.Fatalf("plan %s with %d bootstraps; want 128-bit security without bootstrapping", p.Params, p.Bootstraps())
	}
	t.Logf("plan: %s, depth %d, %d diagonals", p.Params, p.Depth(), p.DiagonalCount())
	p.Params.LogN, p.Params.SecurityBits = 12, 0
	if p.BlockSize > p.Params.Slots() {
		t.Fatalf("block of %d slots does not fit N=2^12", p.BlockSize)
	}
	p.Batch = p.Params.Slots() / p.BlockSize
	sess, err := local.NewSession(&p, local.Progress{})
	if err != nil {
		t.Fatal(err)
	}
	n := p.Batch
	x := synth.Inputs(o, n, 99) // not the calibration samples
	y, timing, err := sess.Infer(x)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		t.Fatal(err)
	}
	want, err := RunBatched(ref, x, 1)
	if err != nil {
		t.Fatal(err)
	}
	exact, err := RunBatched(g, x, n)
	if err != nil {
		t.Fatal(err)
	}
	bound := p.Values[p.Outputs[0].Value].Bound
	d := MaxAbsDiff(y, want)
	if d > bound || bound <= 0 {
		t.Errorf("max |encrypted - plan reference| = %.3e, plan bound %.3e", d, bound)
	}
	if e := MaxAbsDiff(y, exact); e > 1e-2 {
		t.Errorf("max |encrypted - exact block| = %.3e, want < 1e-2", e)
	}
	t.Logf("%d samples: max |encrypted - plan reference| %.3e (bound %.3e), max |encrypted - exact| %.3e; depth %d, %d Galois keys, eval %v",
		n, d, bound, MaxAbsDiff(y, exact), p.Depth(), sess.Setup.GaloisKeys, timing.Eval)
}
