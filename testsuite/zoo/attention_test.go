package zoo

import (
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/testsuite/synth"
)

// TestAttentionBlockInsecureSmallRing compiles a synthetic pre-LayerNorm
// attention block (LayerNormalization, Q·Kᵀ, softmax, scores·V, projection,
// residual; see package synth) to a 128-bit plan, which needs no bootstrap
// at N=2^16, and runs it encrypted with the plan's ring swapped for N=2^12
// and the same modulus chain (see runInsecureSmallRing): the output must
// stay within the plan's predicted bound of the plan's plaintext reference
// (its approximated graph: the Exp polynomial, the inverses' starting
// polynomials and Newton iterations), and within 1e-2 of the exact block,
// on samples other than the calibration ones.
func TestAttentionBlockInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take tens of seconds; skipped in -short mode")
	}
	o := synth.AttentionOptions{}
	g := synth.Attention(o)
	plan, err := compiler.Compile(g, "attention", []byte("synthetic attention block"), compiler.CompileOptions{Calib: synth.Inputs(o, 256, 5)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", plan.Approximations)
	if p := plan.Program; p.Params.SecurityBits < 128 || p.Bootstraps() != 0 {
		t.Fatalf("plan %s with %d bootstraps; want 128-bit security without bootstrapping", p.Params, p.Bootstraps())
	}
	t.Logf("plan: %s", plan.Program.Params)
	r := runInsecureSmallRing(t, plan, 12, g, func(n int) *ir.Tensor { return synth.Inputs(o, n, 99) }, 1e3)
	if e := MaxAbsDiff(r.y, r.exact); e > 1e-2 {
		t.Errorf("max |encrypted - exact block| = %.3e, want < 1e-2", e)
	} else {
		t.Logf("max |encrypted - exact block| = %.3e", e)
	}
}
