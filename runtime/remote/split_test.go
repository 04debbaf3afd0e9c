package remote

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// TestSplitDigitsCNNWorkers runs a split digits-cnn plan
// (smallring.DigitsCNNSplit on the test-only ring N=2^13: plaintext prefix,
// encrypted stages, a client-aided activation between them, plaintext
// suffix) in process, then from its data-owner plan (through its file
// format) on three in-process workers found through the DHT (one per
// encrypted stage and a spare for the first), on the same runtime/split
// path. Both runs check every encrypted stage against its plaintext
// reference within its bound; the remote run moves the same ciphertext
// bytes per stage as the in-process one, its outputs match the in-process
// run's (same top-1, logits close), and every byte sent to the workers is
// audited for each stage's secret key.
func TestSplitDigitsCNNWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take seconds; skipped in -short mode")
	}
	m, plan, stages, err := smallring.CompileSplit("../../testsuite/models/digits-cnn", 3, 13, smallring.DigitsCNNSplit())
	if err != nil {
		t.Fatal(err)
	}
	x := zoo.Rows(m.Inputs, 0, 4)
	in, out := m.Graph.Inputs[0].Name, m.Graph.Outputs[0].Name
	inputs := map[string]*ir.Tensor{in: x}
	want, local, err := split.Run(stages, inputs, split.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}

	data, err := compiler.EncodePlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	planID := segment.PlanID(data)
	op, segs, err := segment.NewSplitOwnerPlan(planID, plan.ModelName, stages, []string{in}, []string{out}, plan.Graph, true)
	if err != nil {
		t.Fatal(err)
	}
	opBytes, err := segment.EncodeOwnerPlan(op)
	if err != nil {
		t.Fatal(err)
	}
	if op, err = segment.DecodeOwnerPlan(opBytes, "owner.plan"); err != nil {
		t.Fatal(err)
	}
	var shards []*segment.Shard
	for _, s := range segs {
		shards = append(shards, segment.NewShard(planID, plan.ModelName, s))
	}
	oh := ownerHost(t)
	c := cluster(t, RoundRobin(shards, 3), oh.ID())
	cap := &captured{bytes: map[peer.ID]*bytes.Buffer{}}
	so, setups, err := NewSplitOwner(oh, dhtFinder(t, oh, c, planID), op,
		OwnerOptions{Tap: cap.tap, KeyDir: filepath.Join(t.TempDir(), "keys"), Log: logger(t, "owner: ")})
	if err != nil {
		t.Fatal(err)
	}
	if len(setups) != len(segs) {
		t.Fatalf("%d encrypted stages set up, want %d", len(setups), len(segs))
	}
	got, rep, err := so.Run(context.Background(), inputs, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range rep.Stages {
		lt := local.Stages[i]
		if !st.Encrypted {
			t.Logf("stage %s: plaintext on the data owner, %v (in process %v)", st.Name, st.Plain, lt.Plain)
			continue
		}
		t.Logf("stage %s: %s; evaluation %v + network %v (in process %v); %d B up, %d B down, %d B of keys uploaded; max |encrypted - reference| %.3e within %.3e",
			st.Name, st.Where, st.Timing.Eval, st.Network, lt.Timing.Eval, st.Timing.UploadBytes, st.Timing.DownloadBytes, st.KeyUpload, st.MaxError, st.Bound)
		if st.Where == "" || st.KeyUpload == 0 {
			t.Errorf("stage %s: ran at %q, uploaded %d key bytes; want a worker and its keys", st.Name, st.Where, st.KeyUpload)
		}
		if st.Timing.UploadBytes != lt.Timing.UploadBytes || st.Timing.DownloadBytes != lt.Timing.DownloadBytes {
			t.Errorf("stage %s: %d B up, %d B down; in process %d, %d", st.Name, st.Timing.UploadBytes, st.Timing.DownloadBytes,
				lt.Timing.UploadBytes, lt.Timing.DownloadBytes)
		}
	}
	if rep.RoundTrips != local.RoundTrips || rep.RoundTrips != len(segs) {
		t.Errorf("%d round trips, in process %d, %d encrypted stages", rep.RoundTrips, local.RoundTrips, len(segs))
	}
	y, ref := got[out], want[out]
	d, scale := zoo.MaxAbsDiff(y, ref), 0.0
	for _, v := range ref.Float {
		scale = max(scale, v, -v)
	}
	if agree := zoo.Agreement(y, ref); agree < 1 || d > 1e-5*scale {
		t.Errorf("remote against in process: top-1 agreement %.3f, max |difference| %.3e (outputs up to %.3e)", agree, d, scale)
	} else {
		t.Logf("remote against in process: same top-1, max |difference| %.3e (outputs up to %.3e)", d, scale)
	}
	var owners []*Owner
	for _, o := range so.owners {
		owners = append(owners, o)
	}
	audit(t, cap, owners...)
}
