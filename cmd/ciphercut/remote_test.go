package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
)

// TestRunOnWorkers shards a plan (cancer-mlp on a test-only small ring) and
// runs it with `run --workers`: by the manifest's cuts on three in-process
// workers, then with redundancy 2 on four, verifying both against the
// plaintext reference.
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
	if err := run("shard", planPath, "--segments", "2", "-o", shards); err != nil {
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
	if err := run("run", planPath, "-i", in, "-o", out, "--verify", "--workers", "3", "--manifest", filepath.Join(shards, segment.ManifestFile),
		"--identity", filepath.Join(dir, "owner.key")); err != nil {
		t.Fatal(err)
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
