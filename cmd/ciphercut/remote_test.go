package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// TestRunOnWorkers shards a plan (cancer-mlp on a test-only small ring),
// signing the manifest, and runs it with `run --workers`: by the manifest's
// cuts on three in-process workers trusting the model owner's signature,
// then with redundancy 2 on four, verifying both against the plaintext
// reference; a manifest signed by another key is refused.
func TestRunOnWorkers(t *testing.T) {
	dir, planPath, modelKey, modelOwner := smallPlanAndModelOwner(t)
	shards := filepath.Join(dir, "shards")
	if err := run("shard", planPath, "--segments", "2", "-o", shards, "--sign", modelKey); err != nil {
		t.Fatal(err)
	}
	m, err := segment.ReadManifest(filepath.Join(shards, segment.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Shards {
		if _, err := segment.ReadShard(filepath.Join(shards, s.File)); err != nil {
			t.Fatal(err)
		}
	}
	in := filepath.Join(mlp, "inputs.npy")
	out := filepath.Join(dir, "out.npy")
	manifest := filepath.Join(shards, segment.ManifestFile)
	if err := run("run", planPath, "-i", in, "-o", out, "--verify", "--workers", "3", "--manifest", manifest,
		"--trust", modelOwner.String(), "--identity", filepath.Join(dir, "owner.key")); err != nil {
		t.Fatal(err)
	}
	// A manifest signed by someone else is refused before any work.
	stranger := filepath.Join(dir, "stranger.key")
	if err := run("shard", planPath, "--segments", "2", "-o", filepath.Join(dir, "other"), "--sign", stranger); err != nil {
		t.Fatal(err)
	}
	err = run("run", planPath, "-i", in, "--workers", "3", "--manifest", filepath.Join(dir, "other", segment.ManifestFile), "--trust", modelOwner.String())
	if err == nil || !strings.Contains(err.Error(), "not by the trusted model owner") {
		t.Errorf("manifest signed by a stranger: %v", err)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	if err := run("run", planPath, "-i", in, "-o", out, "--verify", "--workers", "4", "--segments", "2", "--redundancy", "2"); err != nil {
		t.Fatal(err)
	}
	if err := run("identity", filepath.Join(dir, "owner.key")); err != nil {
		t.Fatal(err)
	}
}

// TestRunOwnerPlan runs the data-owner plan `shard` writes (no weights):
// on in-process workers serving the shards beside it, by the signed
// manifest; --verify is refused when the model owner did not reveal the
// plaintext reference and works when it did; a full plan is not needed.
func TestRunOwnerPlan(t *testing.T) {
	dir, planPath, modelKey, modelOwner := smallPlanAndModelOwner(t)
	var priv crypto.PrivKey
	var err error
	split := filepath.Join(dir, "split")
	if err := run("shard", planPath, "--segments", "2", "-o", split, "--sign", modelKey); err != nil {
		t.Fatal(err)
	}
	ownerPlan := filepath.Join(split, segment.OwnerPlanFile)
	in := filepath.Join(mlp, "inputs.npy")
	out := filepath.Join(dir, "out.npy")
	if err := run("run", ownerPlan, "-i", in, "-o", out, "--workers", "3", "--manifest", filepath.Join(split, segment.ManifestFile),
		"--trust", modelOwner.String()); err != nil {
		t.Fatal(err)
	}
	err = run("run", ownerPlan, "-i", in, "--workers", "2", "--verify")
	if err == nil || !strings.Contains(err.Error(), "holds no plaintext reference") {
		t.Errorf("--verify without a revealed reference: %v", err)
	}
	err = run("run", ownerPlan, "-i", in)
	if err == nil || !strings.Contains(err.Error(), "holds no weights") {
		t.Errorf("a data-owner plan run locally: %v", err)
	}
	err = run("run", ownerPlan, "-i", in, "--workers", "2", "--shards", dir)
	if err == nil || !strings.Contains(err.Error(), "shard-0.bin") {
		t.Errorf("--workers without the shards: %v", err)
	}
	// A token of the model owner admits the data owner (the in-process
	// workers accept the token's issuer only); one for another peer is
	// refused before any work.
	ownerKey := filepath.Join(dir, "owner.key")
	priv, err = remote.LoadIdentity(ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	dataOwner, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "owner.token")
	if err := run("token", "--identity", modelKey, "--peer", dataOwner.String(), "--ttl", "1h", "-o", token); err != nil {
		t.Fatal(err)
	}
	if err := run("run", ownerPlan, "-i", in, "-o", out, "--workers", "2", "--token", token, "--identity", ownerKey); err != nil {
		t.Fatal(err)
	}
	err = run("run", ownerPlan, "-i", in, "--workers", "2", "--token", token)
	if err == nil || !strings.Contains(err.Error(), "is issued to peer "+dataOwner.String()) {
		t.Errorf("a token of another peer: %v", err)
	}
	if err := run("token", "--identity", filepath.Join(dir, "missing.key"), "--peer", dataOwner.String(), "-o", token); err == nil {
		t.Error("a token signed by a missing key file")
	}
	// With --keys, a second run reads the secret key and the evaluation
	// keys, and the workers (their caches kept in the key directory) have
	// them: nothing is uploaded.
	keys := filepath.Join(dir, "keys")
	first, err := runCaptured(t, "run", ownerPlan, "-i", in, "--workers", "2", "--keys", keys)
	if err != nil {
		t.Fatal(err)
	}
	second, err := runCaptured(t, "run", ownerPlan, "-i", in, "--workers", "2", "--keys", keys)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first, "keys uploaded 0.0 MiB") || strings.Count(second, "keys uploaded 0.0 MiB") != 2 ||
		!strings.Contains(second, "evaluation keys read for 2 of 2 segments") {
		t.Errorf("first run:\n%s\nsecond run:\n%s\nwant the second to read the keys and upload none", first, second)
	}
	if info, err := os.Stat(filepath.Join(keys, remote.SecretKeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v, mode %v", err, info.Mode())
	}
	revealed := filepath.Join(dir, "revealed")
	if err := run("shard", planPath, "--segments", "2", "-o", revealed, "--reveal-reference"); err != nil {
		t.Fatal(err)
	}
	if err := run("run", filepath.Join(revealed, segment.OwnerPlanFile), "-i", in, "-o", out, "--workers", "2", "--verify"); err != nil {
		t.Fatal(err)
	}
}

// TestDemoWorkers runs the demo's encrypted part (cancer-mlp, 128-bit, N=2^15)
// through two in-process libp2p workers, the path of `run --workers`.
func TestDemoWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted run at N=2^15 on two workers; skipped in -short mode")
	}
	if err := run("demo", "--workers", "2", "--samples", "2"); err != nil {
		t.Fatal(err)
	}
}

// runCaptured runs the command with its standard output captured.
func runCaptured(t *testing.T, args ...string) (string, error) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdout-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdout := os.Stdout
	os.Stdout = f
	err = run(args...)
	os.Stdout = stdout
	out, rerr := os.ReadFile(f.Name())
	if rerr != nil {
		t.Fatal(rerr)
	}
	return string(out), err
}

// smallPlanAndModelOwner writes cancer-mlp's plan on a test-only small ring
// to a temporary directory and creates a model owner's identity there.
func smallPlanAndModelOwner(t *testing.T) (dir, planPath, modelKey string, modelOwner peer.ID) {
	t.Helper()
	_, plan, p, err := smallring.Compile(mlp, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	plan.Program = p
	dir = t.TempDir()
	planPath = filepath.Join(dir, "small.plan")
	if err := compiler.WritePlan(planPath, plan); err != nil {
		t.Fatal(err)
	}
	modelKey = filepath.Join(dir, "model-owner.key")
	priv, err := remote.LoadIdentity(modelKey)
	if err != nil {
		t.Fatal(err)
	}
	modelOwner, err = peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return dir, planPath, modelKey, modelOwner
}

// TestRunSplitOnWorkers compiles digits-mlp split with client-aided
// activations (encrypted, client-aided Relu, encrypted, suffix; 128-bit,
// N=2^13) with --split-out, runs it in process, then its data-owner plan
// on in-process workers (one shard per encrypted stage), and the full plan
// on workers with --verify: the remote outputs match the in-process ones
// (same top-1, logits within 1e-5 of their scale) and the output names
// where each stage ran. Bad options and a corrupt data-owner plan are
// one-line errors naming the file.
func TestRunSplitOnWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs; skipped in -short mode")
	}
	dir := t.TempDir()
	samples, err := npy.Read(filepath.Join(digitsMLP, "inputs.npy"))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "x.npy")
	if err := npy.Write(in, zoo.Rows(samples, 0, 8)); err != nil {
		t.Fatal(err)
	}
	planPath, split := filepath.Join(dir, "dm.plan"), filepath.Join(dir, "split")
	if err := run("compile", filepath.Join(digitsMLP, "model.onnx"), "-o", planPath, "--cut", "auto", "--client-aided", "activations",
		"--split-out", split); err != nil {
		t.Fatal(err)
	}
	ownerPlan := filepath.Join(split, segment.OwnerPlanFile)
	op, err := segment.ReadOwnerPlan(ownerPlan)
	if err != nil {
		t.Fatal(err)
	}
	if !op.IsSplit() || len(op.AllSegments()) < 2 {
		t.Fatalf("owner.plan: %d stages, %d segments; want a split plan with two encrypted stages or more", len(op.Stages), len(op.AllSegments()))
	}
	outputs := map[string]string{}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"in process", []string{planPath}},
		{"owner.plan on workers", []string{ownerPlan, "--workers", "3"}},
		{"owner.plan on one worker", []string{ownerPlan, "--workers", "1"}},
		{"full plan on workers", []string{planPath, "--workers", "2", "--verify", "--manifest", filepath.Join(split, segment.ManifestFile)}},
	} {
		outputs[c.name] = filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".npy")
		stdout, err := runCaptured(t, append([]string{"run", "-i", in, "-o", outputs[c.name]}, c.args...)...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if remote := c.name != "in process"; strings.Contains(stdout, "on worker 12D3KooW") != remote || strings.Contains(stdout, "in process") == remote {
			t.Errorf("%s: output does not say where the stages ran:\n%s", c.name, stdout)
		}
	}
	want, err := npy.Read(outputs["in process"])
	if err != nil {
		t.Fatal(err)
	}
	scale := 0.0
	for _, v := range want.Float {
		scale = max(scale, v, -v)
	}
	for name, path := range outputs {
		got, err := npy.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if d := zoo.MaxAbsDiff(got, want); zoo.Agreement(got, want) < 1 || d > 1e-5*scale {
			t.Errorf("%s against in process: top-1 agreement %.3f, max |difference| %.3e (outputs up to %.3e)", name, zoo.Agreement(got, want), d, scale)
		}
	}
	corrupt := filepath.Join(dir, "corrupt.plan")
	data, err := os.ReadFile(ownerPlan)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-5] ^= 1
	if err := os.WriteFile(corrupt, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{ownerPlan, "--workers", "3", "--segments", "3"}, "owner.plan is split in 2 segments (one per encrypted stage)"},
		{[]string{ownerPlan, "--workers", "2", "--verify"}, "owner.plan holds no plaintext reference"},
		{[]string{corrupt, "--workers", "2"}, "corrupt.plan"},
		{[]string{planPath, "--workers", "2", "--profile", filepath.Join(dir, "m.json")}, "dm.plan: a split plan runs without --profile"},
	} {
		err := run(append([]string{"run", "-i", in}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("run %v: error %v, want one line containing %q", c.args, err, c.want)
		}
	}
	if err := run("shard", planPath, "--segments", "3", "-o", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), "2 encrypted stages") {
		t.Errorf("shard --segments 3 of a split plan: %v", err)
	}
}
