package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	runlocal "github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// fixture is a model compiled once, on a test-only small ring, split in two
// segments.
type fixture struct {
	plan   *compiler.Plan
	prog   *ckksir.Program
	planID string
	segs   []*segment.Segment
	shards []*segment.Shard
	// owner is the data-owner plan of the split (no weights).
	owner *segment.OwnerPlan
	x     *ir.Tensor
	// want is the single-process run (tolerance twice the plan's bound:
	// both runs are within the bound of the plaintext reference), or the
	// plan's plaintext reference itself (tolerance the bound).
	want     *ir.Tensor
	wantName string
	tol      float64
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
)

// mlp compiles cancer-mlp on N=2^10 (insecure, tests only) and runs it in
// one process for reference.
func mlp(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = newFixture("../../testsuite/models/cancer-mlp", 0, 10, 4, true) })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureVal
}

// newFixture compiles the model in dir on N=2^logN and splits it; the
// expected result is the single-process run when local is set, else the
// plan's plaintext reference (which TestEncryptedDigitsCNNInsecureSmallRing
// checks the single-process run against).
func newFixture(dir string, precision, logN, samples int, local bool) (*fixture, error) {
	m, plan, p, err := smallring.Compile(dir, precision, logN)
	if err != nil {
		return nil, err
	}
	bound := p.Values[p.Outputs[0].Value].Bound
	if bound <= 0 {
		return nil, fmt.Errorf("%s: no error bound", dir)
	}
	f := &fixture{plan: plan, prog: p, x: zoo.Rows(m.Inputs, 0, samples)}
	data, err := compiler.EncodePlan(plan)
	if err != nil {
		return nil, err
	}
	f.planID = segment.PlanID(data)
	if f.segs, err = segment.Split(p, 2); err != nil {
		return nil, err
	}
	for _, s := range f.segs {
		f.shards = append(f.shards, segment.NewShard(f.planID, plan.ModelName, s))
	}
	if f.owner, err = segment.NewOwnerPlan(f.planID, plan.ModelName, p, f.segs, nil, false); err != nil {
		return nil, err
	}
	if !local {
		ref, err := ir.UnmarshalGraph(plan.Graph)
		if err != nil {
			return nil, err
		}
		f.want, f.wantName, f.tol = nil, "plaintext reference", bound
		f.want, err = zoo.RunBatched(ref, f.x, 1)
		return f, err
	}
	sess, err := runlocal.NewSession(p, runlocal.Progress{})
	if err != nil {
		return nil, err
	}
	f.wantName, f.tol = "single process", 2*bound
	f.want, _, err = sess.Infer(f.x)
	return f, err
}

// logger returns a logger writing to the test log.
func logger(t *testing.T, prefix string) *log.Logger {
	return log.New(testWriter{t}, prefix, 0)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// ownerHost starts a data owner's host.
func ownerHost(t *testing.T) host.Host {
	t.Helper()
	h, err := NewHost(nil, "/ip4/127.0.0.1/tcp/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// cluster starts workers serving serve, allowing owner.
func cluster(t *testing.T, serve [][]*segment.Shard, owner peer.ID) *Cluster {
	t.Helper()
	c, err := StartCluster(context.Background(), serve, WorkerOptions{Allow: []peer.ID{owner}, CacheDir: t.TempDir(), Log: logger(t, "worker: ")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dhtFinder joins the data owner's host h to the DHT of the cluster c
// and returns a Finder of the providers of the plan's segments.
func dhtFinder(t *testing.T, h host.Host, c *Cluster, planID string) Finder {
	t.Helper()
	d, err := NewDHT(context.Background(), h, false, c.Bootstrap())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return DHTProviders(d, planID, 1, 20*time.Second)
}

// newOwner starts a data owner of the fixture's data-owner plan on h
// (opts.Log: the test log unless set).
func newOwner(t *testing.T, h host.Host, find Finder, f *fixture, opts OwnerOptions) (*Owner, *Setup) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = logger(t, "owner: ")
	}
	owner, setup, err := NewOwner(h, find, f.owner, opts)
	if err != nil {
		t.Fatal(err)
	}
	return owner, setup
}

// infer runs the fixture's samples through owner's workers and checks the
// result against the fixture's expected one.
func infer(t *testing.T, f *fixture, owner *Owner) []SegmentRun {
	t.Helper()
	y, runs, err := owner.Infer(context.Background(), f.x)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, f, y)
	return runs
}

// checkResult compares a remote result with the fixture's expected one.
func checkResult(t *testing.T, f *fixture, y *ir.Tensor) {
	t.Helper()
	if d := zoo.MaxAbsDiff(y, f.want); d > f.tol {
		t.Errorf("max |remote - %s| = %.3e, tolerance %.3e", f.wantName, d, f.tol)
	} else {
		t.Logf("max |remote - %s| = %.3e within %.3e", f.wantName, d, f.tol)
	}
}

// captured records every byte the owner writes, per worker.
type captured struct {
	mu    sync.Mutex
	bytes map[peer.ID]*bytes.Buffer
}

func (c *captured) tap(p peer.ID, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes[p] == nil {
		c.bytes[p] = new(bytes.Buffer)
	}
	c.bytes[p].Write(b)
}

// TestPipelineThreeWorkers finds the workers of a two-segment split of
// cancer-mlp through the DHT (3 workers: one per segment and a spare for
// the first), runs it, and checks the result against the single-process
// run; a second inference uploads no keys. Every byte sent to the workers
// is audited: only protocol frames of header, key, ciphertext and end
// types, headers with known fields only, key uploads that hash to what they
// claim, and nowhere the secret key.
func TestPipelineThreeWorkers(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	c := cluster(t, [][]*segment.Shard{{f.shards[0]}, {f.shards[1]}, {f.shards[0]}}, oh.ID())
	find := dhtFinder(t, oh, c, f.planID)
	cap := &captured{bytes: map[peer.ID]*bytes.Buffer{}}
	keyDir := filepath.Join(t.TempDir(), "keys")
	owner, setup := newOwner(t, oh, find, f, OwnerOptions{Tap: cap.tap, KeyDir: keyDir})
	for _, r := range infer(t, f, owner) {
		t.Logf("segment %d ran on %s: %v round trip (%v evaluating), %d key bytes, %d bytes sent, %d received",
			r.Index, r.Worker, r.Wall, r.Eval, r.KeyBytes, r.Sent, r.Received)
		if r.KeyBytes != setup.KeyBytes[r.Index] {
			t.Errorf("segment %d: uploaded %d key bytes, want %d", r.Index, r.KeyBytes, setup.KeyBytes[r.Index])
		}
	}
	// A second inference reuses the sessions: no key bytes.
	for _, r := range infer(t, f, owner) {
		if r.KeyBytes != 0 {
			t.Errorf("second inference: segment %d uploaded %d key bytes again", r.Index, r.KeyBytes)
		}
	}
	// A second data owner process with the same key directory reuses the
	// secret key and the evaluation keys: the workers' caches hold them,
	// nothing is uploaded.
	again, setup2 := newOwner(t, oh, find, f, OwnerOptions{Tap: cap.tap, KeyDir: keyDir})
	if !setup2.SecretKeyLoaded || !setup2.KeysLoaded[0] || !setup2.KeysLoaded[1] || setup.SecretKeyLoaded {
		t.Errorf("key directory: first run loaded %v, second run loaded secret key %v, evaluation keys %v", setup.SecretKeyLoaded, setup2.SecretKeyLoaded, setup2.KeysLoaded)
	}
	for _, r := range infer(t, f, again) {
		if r.KeyBytes != 0 {
			t.Errorf("second run with the key directory: segment %d uploaded %d key bytes", r.Index, r.KeyBytes)
		}
	}
	skPath := filepath.Join(keyDir, SecretKeyFile)
	info, err := os.Stat(skPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", skPath, info.Mode().Perm())
	}
	// The audit's detector finds the secret-key file's contents (so it
	// would find them in the traffic), and neither owner sent them.
	skFile, err := os.ReadFile(skPath)
	if err != nil {
		t.Fatal(err)
	}
	if leak, err := again.client.LeaksSecretKey(skFile); err != nil || !leak {
		t.Fatalf("the secret-key detector misses the key file (%v)", err)
	}
	audit(t, cap, owner)
}

// audit checks the bytes captured from the streams of owners (of one plan,
// whole or split: each with its secret key and its segments' keys): only
// protocol frames, ciphertexts that decode under one of the owners' keys,
// key uploads that hash to a segment's evaluation keys, and no secret key.
func audit(t *testing.T, cap *captured, owners ...*Owner) {
	t.Helper()
	cap.mu.Lock()
	defer cap.mu.Unlock()
	keyHashes := map[string]bool{}
	for _, o := range owners {
		for _, ks := range o.per {
			keyHashes[ks.hash] = true
		}
	}
	total := 0
	for p, buf := range cap.bytes {
		data := buf.Bytes()
		total += len(data)
		for _, o := range owners {
			leak, err := o.client.LeaksSecretKey(data)
			if err != nil {
				t.Fatal(err)
			}
			if leak {
				t.Fatalf("the bytes sent to %s hold a secret key", p)
			}
		}
		// Streams are written whole, one after another per worker, so the
		// capture parses as a sequence of frames.
		r := bufio.NewReader(bytes.NewReader(data))
		var keys []byte
		limits := Limits{FrameHeader: MaxHeaderBytes, FrameKeys: KeyChunkBytes, FrameCiphertext: 1 << 30, FrameEnd: 0}
		for {
			typ, payload, err := readFrame(r, limits)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("bytes sent to %s: %v", p, err)
			}
			switch typ {
			case FrameHeader:
				h, err := decodeHeader(payload)
				if err != nil {
					t.Fatal(err)
				}
				if h.Op != "keys" && h.Op != "eval" {
					t.Errorf("header with op %q sent to %s", h.Op, p)
				}
			case FrameKeys:
				keys = append(keys, payload...)
			case FrameCiphertext:
				var errs []error
				for _, o := range owners {
					_, err := o.client.UnmarshalCiphertext(payload)
					errs = append(errs, err)
				}
				if !slices.Contains(errs, nil) {
					t.Errorf("a ciphertext frame sent to %s does not decode: %v", p, errs)
				}
			case FrameEnd:
				if len(keys) > 0 {
					sum := sha256.Sum256(keys)
					if !keyHashes[hex.EncodeToString(sum[:])] {
						t.Errorf("key upload to %s hashes to %x, not a segment's evaluation keys", p, sum)
					}
					keys = nil
				}
			}
		}
	}
	t.Logf("audited %d bytes sent to %d workers: no secret key of %d", total, len(cap.bytes), len(owners))
}

// fakeWorker serves the protocol on a host of its own with a handler that
// misbehaves: it answers key announcements ("have"), then, on an
// evaluation, either closes its host mid-request (dies) or never answers
// (stalls).
func fakeWorker(t *testing.T, die bool) peer.AddrInfo {
	t.Helper()
	h, err := NewHost(nil, "/ip4/127.0.0.1/tcp/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(ProtocolID, func(s network.Stream) {
		r := bufio.NewReader(s)
		hdr, err := readHeader(r)
		if err != nil {
			s.Reset()
			return
		}
		if hdr.Op == "keys" {
			reply(bufio.NewWriter(s), &Header{Status: "have"})
			s.Close()
			return
		}
		io.CopyN(io.Discard, r, 1000) // part of the first ciphertext
		if die {
			h.Close()
			return
		}
		time.Sleep(time.Minute)
	})
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// TestFailover gives each segment a misbehaving first provider, one that
// dies mid-request and one that stalls, and checks that the request is
// replayed on the next provider and the answer is right.
func TestFailover(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	c := cluster(t, [][]*segment.Shard{f.shards, f.shards}, oh.ID())
	real := c.Bootstrap()
	dies, stalls := fakeWorker(t, true), fakeWorker(t, false)
	find := StaticProviders(map[int][]peer.AddrInfo{0: {dies, real[0]}, 1: {stalls, real[1]}}, nil)
	owner, _ := newOwner(t, oh, find, f, OwnerOptions{Timeout: 3 * time.Second})
	for i, r := range infer(t, f, owner) {
		if r.Worker != real[i].ID || len(r.Failures) != 1 {
			t.Errorf("segment %d ran on %s after failures %q; want %s after one failure", i, r.Worker, r.Failures, real[i].ID)
		}
	}
}

// TestRedundancyNamesLiar runs segment 1 on three workers, the first of
// which serves a tampered shard (a bias changed): under redundancy 2 the
// owner finds the disagreement, asks the third, and names the liar.
func TestRedundancyNamesLiar(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	bad := tamper(t, f.shards[1])
	c := cluster(t, [][]*segment.Shard{{f.shards[0]}, {bad}, {f.shards[1]}, {f.shards[0], f.shards[1]}}, oh.ID())
	ws := c.Bootstrap()
	find := StaticProviders(map[int][]peer.AddrInfo{0: {ws[0], ws[3]}, 1: {ws[1], ws[2], ws[3]}}, nil)
	owner, _ := newOwner(t, oh, find, f, OwnerOptions{Redundancy: 2})
	runs := infer(t, f, owner)
	if runs[1].Liar != ws[1].ID {
		t.Errorf("segment 1: liar %q, want %s", runs[1].Liar, ws[1].ID)
	}
	if runs[0].Liar != "" || len(runs[0].Checked) != 1 {
		t.Errorf("segment 0: liar %q, checked by %v; want no liar and one check", runs[0].Liar, runs[0].Checked)
	}
}

// tamper returns a copy of a shard whose first bias or constant vector is
// shifted by 1.
func tamper(t *testing.T, s *segment.Shard) *segment.Shard {
	t.Helper()
	p := *s.Program
	p.Instrs = append([]ckksir.Instr(nil), p.Instrs...)
	for i := range p.Instrs {
		ins := &p.Instrs[i]
		if ins.Bias != nil {
			ins.Bias = append([]float64(nil), ins.Bias...)
			for k := range ins.Bias {
				ins.Bias[k]++
			}
			c := *s
			c.Program = &p
			return &c
		}
	}
	t.Fatal("no bias to tamper with")
	return nil
}

// TestDigitsCNNThreeWorkers runs digits-cnn (its 128-bit program on a
// test-only N=2^13 ring, as testsuite/zoo's
// TestEncryptedDigitsCNNInsecureSmallRing does) split in two segments
// across three in-process workers found through the DHT, and checks it
// against the plan's plaintext reference within the plan's bound, as the
// single-process test does (running the single process here too would add
// its key generation and evaluation to go test).
func TestDigitsCNNThreeWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("digits-cnn encrypted takes tens of seconds; skipped in -short mode")
	}
	f, err := newFixture("../../testsuite/models/digits-cnn", 3, 13, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	oh := ownerHost(t)
	// The data owner and the workers share this process: the workers keep
	// only 256 MiB of matrix diagonals encoded each (the rest is encoded at
	// each use), and the garbage collector runs twice as often, which
	// keeps the test's memory near the single-process test's.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	c, err := StartCluster(context.Background(), [][]*segment.Shard{{f.shards[0]}, {f.shards[1]}, {f.shards[1]}},
		WorkerOptions{Allow: []peer.ID{oh.ID()}, CacheDir: t.TempDir(), EncodeBudget: 256 << 20, Log: logger(t, "worker: ")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	owner, setup := newOwner(t, oh, dhtFinder(t, oh, c, f.planID), f, OwnerOptions{})
	for _, r := range infer(t, f, owner) {
		s := f.segs[r.Index]
		t.Logf("segment %d (instructions [%d, %d) of %d) on %s: %v round trip, %v evaluating; keys %d bytes, sent %d, received %d",
			r.Index, s.Start, s.End, len(f.prog.Instrs), r.Worker, r.Wall, r.Eval, setup.KeyBytes[r.Index], r.Sent, r.Received)
	}
}

// TestReuploadAfterEviction serves both segments from one worker whose key
// cache holds only one segment's keys: the second inference finds the
// first segment's keys evicted and uploads them again.
func TestReuploadAfterEviction(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	var c *Cluster
	find := func(ctx context.Context, index int) ([]peer.AddrInfo, error) { return c.Bootstrap(), nil }
	owner, setup := newOwner(t, oh, find, f, OwnerOptions{})
	quota := max(setup.KeyBytes[0], setup.KeyBytes[1]) + 1
	var err error
	c, err = StartCluster(context.Background(), [][]*segment.Shard{f.shards}, WorkerOptions{Allow: []peer.ID{oh.ID()}, CacheDir: t.TempDir(),
		CacheQuota: quota, Log: logger(t, "worker: ")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		if runs := infer(t, f, owner); runs[0].KeyBytes != setup.KeyBytes[0] {
			t.Errorf("inference %d: segment 0 uploaded %d key bytes, want %d", i, runs[0].KeyBytes, setup.KeyBytes[0])
		}
	}
}

// TestSilenceTimeout runs segments whose evaluation takes 2 s on a worker
// that sends progress every 200 ms, for a data owner that gives a worker up
// after 1 s of silence: the run succeeds, since the deadline counts
// silence, not work. With the worker's heartbeat slower than its
// evaluation, the same owner gives it up as stalled.
func TestSilenceTimeout(t *testing.T) {
	f := mlp(t)
	for _, c := range []struct {
		beat time.Duration
		ok   bool
	}{{200 * time.Millisecond, true}, {time.Hour, false}} {
		oh := ownerHost(t)
		cl, err := StartCluster(context.Background(), [][]*segment.Shard{f.shards}, WorkerOptions{Allow: []peer.ID{oh.ID()}, CacheDir: t.TempDir(),
			Log: logger(t, "worker: "), Heartbeat: c.beat, beforeRun: func(network.Stream) { time.Sleep(2 * time.Second) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		w := cl.Bootstrap()[0]
		find := StaticProviders(map[int][]peer.AddrInfo{0: {w}, 1: {w}}, nil)
		owner, _ := newOwner(t, oh, find, f, OwnerOptions{Timeout: time.Second})
		y, _, err := owner.Infer(context.Background(), f.x)
		switch {
		case c.ok && err != nil:
			t.Errorf("heartbeat %v: %v", c.beat, err)
		case c.ok:
			checkResult(t, f, y)
		case err == nil:
			t.Errorf("heartbeat %v: the owner waited through 2 s of silence with a 1 s timeout", c.beat)
		default:
			t.Logf("heartbeat %v: %v", c.beat, err)
		}
	}
}

// TestRetryAfterDroppedConnection drops the data owner's connection while
// the only worker of each segment starts evaluating (as a missed keepalive
// does): the owner reconnects and asks the same worker again, and the run
// completes with one failure per segment.
func TestRetryAfterDroppedConnection(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	var mu sync.Mutex
	calls := 0 // segments run in turn: calls 1 and 3 are their first tries
	c, err := StartCluster(context.Background(), [][]*segment.Shard{f.shards}, WorkerOptions{Allow: []peer.ID{oh.ID()}, CacheDir: t.TempDir(),
		Log: logger(t, "worker: "), beforeRun: func(s network.Stream) {
			mu.Lock()
			defer mu.Unlock()
			if calls++; calls%2 == 1 {
				s.Conn().Close()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := c.Bootstrap()[0]
	find := StaticProviders(map[int][]peer.AddrInfo{0: {w}, 1: {w}}, nil)
	owner, _ := newOwner(t, oh, find, f, OwnerOptions{Timeout: 20 * time.Second})
	for i, r := range infer(t, f, owner) {
		if r.Worker != w.ID || len(r.Failures) != 1 {
			t.Errorf("segment %d ran on %s after failures %q; want %s after one dropped connection", i, r.Worker, r.Failures, w.ID)
		}
	}
}
