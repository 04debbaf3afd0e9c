package zoo

import (
	"os"
	"path/filepath"
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
	dir := filepath.Join("..", "models", name)
	m, err := OpenDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	onnxBytes, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		tb.Fatal(err)
	}
	opts := compiler.CompileOptions{Calib: m.Inputs}
	opts.Lower.Packing = ckksir.PackFeature
	opts.Approx.PrecisionBits = precision
	plan, err := compiler.Compile(m.Graph, name, onnxBytes, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if plan.Program.Params.SecurityBits < 128 || plan.Program.Packing != ckksir.PackFeature {
		tb.Fatalf("plan %s, packing %s: want 128-bit feature packing", plan.Program.Params, plan.Program.Packing)
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
	name := "cancer-mlp"
	m, plan := compileFeature(t, name, 3)
	ref, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := local.NewSession(plan.Program, local.Progress{})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Setup.GaloisKeys != 0 {
		t.Errorf("feature packing generated %d Galois keys, want none", sess.Setup.GaloisKeys)
	}
	y, timing, err := sess.Infer(m.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := RunBatched(ref, m.Inputs, 1)
	if err != nil {
		t.Fatal(err)
	}
	exact, err := RunBatched(m.Graph, m.Inputs, 32)
	if err != nil {
		t.Fatal(err)
	}
	bound := plan.Program.Values[plan.Program.Outputs[0].Value].Bound
	if d := MaxAbsDiff(y, want); d > bound || bound <= 0 {
		t.Errorf("max |encrypted - plan reference| = %.3e, plan bound %.3e", d, bound)
	} else {
		t.Logf("max |encrypted - plan reference| = %.3e within plan bound %.3e", d, bound)
	}
	agree := Agreement(y, exact)
	encAcc, plainAcc := Accuracy(y, m.Labels), Accuracy(exact, m.Labels)
	if agree < 0.99 || plainAcc-encAcc > 0.005 {
		t.Errorf("agreement %.4f (want >= 0.99), accuracy %.4f encrypted vs %.4f plaintext", agree, encAcc, plainAcc)
	}
	t.Logf("%d samples: agreement %.4f, accuracy %.4f encrypted / %.4f plaintext; %s; eval %v",
		m.Samples(), agree, encAcc, plainAcc, plan.Program.Params, timing.Eval)
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
