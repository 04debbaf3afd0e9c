package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
)

// TestRunOnWorkers shards a plan (cancer-mlp on a test-only small ring),
// signing the manifest, and runs it with `run --workers`: by the manifest's
// cuts on three in-process workers trusting the model owner's signature,
// then with redundancy 2 on four, verifying both against the plaintext
// reference; a manifest signed by another key is refused.
func TestRunOnWorkers(t *testing.T) {
	_, plan, p, err := smallring.Compile(mlp, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	plan.Program = p
	dir := t.TempDir()
	planPath := filepath.Join(dir, "small.plan")
	if err := compiler.WritePlan(planPath, plan); err != nil {
		t.Fatal(err)
	}
	shards := filepath.Join(dir, "shards")
	modelKey := filepath.Join(dir, "model-owner.key")
	priv, err := remote.LoadIdentity(modelKey)
	if err != nil {
		t.Fatal(err)
	}
	modelOwner, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
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
	_, plan, p, err := smallring.Compile(mlp, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	plan.Program = p
	dir := t.TempDir()
	planPath := filepath.Join(dir, "small.plan")
	if err := compiler.WritePlan(planPath, plan); err != nil {
		t.Fatal(err)
	}
	modelKey := filepath.Join(dir, "model-owner.key")
	priv, err := remote.LoadIdentity(modelKey)
	if err != nil {
		t.Fatal(err)
	}
	modelOwner, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
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
