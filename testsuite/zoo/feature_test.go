package zoo

import (
	"os"
	"testing"
	"time"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/local"
)

// compileFeature compiles a bundled model in feature packing at 128-bit
// security; precision > 0 overrides the approximation's precision target
// (bits).
func compileFeature(tb testing.TB, name string, precision int) (*Model, *compiler.Plan) {
	tb.Helper()
	var opts compiler.CompileOptions
	opts.Lower.Packing = ckksir.PackFeature
	opts.Approx.PrecisionBits = precision
	m, plan := compileModel(tb, name, opts)
	if plan.Program.Packing != ckksir.PackFeature {
		tb.Fatalf("plan packing %s, want feature", plan.Program.Packing)
	}
	return m, plan
}

// TestEncryptedFeaturePacking runs every bundled sample of cancer-mlp
// encrypted in feature packing (one sample per slot) and checks the plan's
// bound and the agreement, as TestEncryptedMLPs does for the slot packing.
// A run costs a full batch whatever the number of samples, dominated by one
// polynomial per activation ciphertext: at the default precision target (6
// bits) cancer-mlp needs depth 14 and N=2^15 (70 s on two cores), so the
// test asks for 3 bits (degree-7 polynomials, depth 8, N=2^14), which keeps
// the agreement. BenchmarkFeatureThroughput measures the default plans.
func TestEncryptedFeaturePacking(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take tens of seconds; skipped in -short mode")
	}
	m, plan := compileFeature(t, "cancer-mlp", 3)
	if sess := checkEncrypted(t, m, plan); sess.Setup.GaloisKeys != 0 {
		t.Errorf("feature packing generated %d Galois keys, want none", sess.Setup.GaloisKeys)
	}
}

// tile repeats the rows of x to n rows.
func tile(x *ir.Tensor, n int) *ir.Tensor {
	rows := x.Shape[0]
	per := x.Shape.Size() / rows
	src := x.Floats()
	data := make([]float64, n*per)
	for i := 0; i < n; i++ {
		copy(data[i*per:(i+1)*per], src[(i%rows)*per:(i%rows+1)*per])
	}
	shape := append(ir.Shape{n}, x.Shape[1:]...)
	return ir.NewFloat(shape, data)
}

// BenchmarkFeatureThroughput runs one full batch (Slots samples, the
// bundled samples tiled) of each MLP in feature packing and reports
// samples/s. Run with CIPHERCUT_FEATURE_MODEL=cancer-mlp (or digits-mlp) to
// pick one; the default runs both.
func BenchmarkFeatureThroughput(b *testing.B) {
	names := []string{"cancer-mlp", "digits-mlp"}
	if n := os.Getenv("CIPHERCUT_FEATURE_MODEL"); n != "" {
		names = []string{n}
	}
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			m, plan := compileFeature(b, name, 0)
			start := time.Now()
			sess, err := local.NewSession(plan.Program, local.Progress{})
			if err != nil {
				b.Fatal(err)
			}
			keygen := time.Since(start)
			x := tile(m.Inputs, plan.Program.Batch)
			b.ResetTimer()
			for range b.N {
				_, timing, err := sess.Infer(x)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(plan.Program.Batch)/timing.Eval.Seconds(), "samples/s")
				b.Logf("%s: %s, %d samples per batch: keys %v (%.1f MiB), encrypt %v, eval %v, decrypt %v",
					name, plan.Program.Params, plan.Program.Batch, keygen, float64(sess.Setup.EvalKeyBytes)/(1<<20),
					timing.Encrypt, timing.Eval, timing.Decrypt)
			}
		})
	}
}
