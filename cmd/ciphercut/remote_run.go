package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/runtime/split"
)

// remoteFlags are run's options for remote workers: --workers N starts N
// worker hosts in this process (loopback, the same protocol), --swarm joins
// separate workers through the DHT.
type remoteFlags struct {
	workers, segments, redundancy int
	// memLimit is the command's --memory-limit (empty: none), which the
	// in-process workers of --workers share.
	memLimit                  string
	swarm                     []string
	manifest, identity, trust string
	shards, token, keys       string
	timeout                   time.Duration
}

func addRemoteFlags(cmd *cobra.Command) *remoteFlags {
	rf := &remoteFlags{}
	f := cmd.Flags()
	f.IntVar(&rf.workers, "workers", 0, "run the encrypted segments on N worker hosts started in this process, over libp2p on loopback")
	f.StringArrayVar(&rf.swarm, "swarm", nil, "multiaddr (with /p2p/ID) of a DHT peer of the workers to use (repeatable)")
	f.IntVar(&rf.segments, "segments", 0, "split the program into this many segments (default: the --manifest's, else 2 with --workers >= 2, else 1)")
	f.StringVar(&rf.keys, "keys", "", "directory keeping the data owner's secret key (secret.key, mode 0600) and evaluation keys between runs, so that workers holding them need no upload (with --workers, the in-process workers' key caches too)")
	f.StringVar(&rf.token, "token", "", "token file from the model owner (`ciphercut token`), presented to workers that do not --allow this data owner")
	f.StringVar(&rf.shards, "shards", "", "with a data-owner plan and --workers: the directory of the worker shards (default: the plan's)")
	f.StringVar(&rf.manifest, "manifest", "", "manifest.json written by `ciphercut shard` (the segments the workers serve)")
	f.StringVar(&rf.trust, "trust", "", "peer id of the model owner: require the --manifest signed by it and use only the workers it lists")
	f.IntVar(&rf.redundancy, "redundancy", 1, "workers per segment whose results are compared (2: detect and name a lying worker)")
	f.StringVar(&rf.identity, "identity", "", "Ed25519 key file of the data owner's peer identity (created if missing; the workers' --allow)")
	f.DurationVar(&rf.timeout, "worker-timeout", 10*time.Minute, "how long a worker may stay silent (workers send progress every 20 s while they work) before it is considered stalled and the segment replayed elsewhere; a whole attempt is capped at 48 times this")
	return rf
}

// enabled reports whether run goes to remote workers.
func (rf *remoteFlags) enabled() bool { return rf.workers > 0 || len(rf.swarm) > 0 }

// identityKey loads (or creates) a key file; "" gives nil, a fresh
// identity.
func identityKey(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, nil
	}
	return remote.LoadIdentity(path)
}

// trusted reads the --manifest, when given, checks that it is for the
// plan planID cut at cuts (nil: any cuts, returned), and with --trust
// returns the workers the model owner's signature vouches for.
func (rf *remoteFlags) trusted(planPath, planID string) (cuts []int, listed map[int][]peer.ID, err error) {
	if rf.trust != "" && rf.manifest == "" {
		return nil, nil, fmt.Errorf("--trust needs the signed --manifest")
	}
	if rf.manifest == "" {
		return nil, nil, nil
	}
	m, err := segment.ReadManifest(rf.manifest)
	if err != nil {
		return nil, nil, err
	}
	if m.PlanID != planID {
		return nil, nil, fmt.Errorf("%s is for plan %.12s, %s is %.12s", rf.manifest, m.PlanID, planPath, planID)
	}
	if rf.trust != "" {
		owner, err := peer.Decode(rf.trust)
		if err != nil {
			return nil, nil, fmt.Errorf("--trust %q: %w", rf.trust, err)
		}
		if listed, err = remote.VerifyManifest(m, owner); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", rf.manifest, err)
		}
	}
	return m.Cuts, listed, nil
}

// remoteJob is what a remote run takes: the data-owner plan, the shards
// the in-process workers serve (--workers) and the workers a signed
// manifest vouches for (--trust).
type remoteJob struct {
	owner  *segment.OwnerPlan
	shards []*segment.Shard
	listed map[int][]peer.ID
}

// fromPlan splits a full plan (the manifest's cuts, or an even split) into
// a job: the data owner runs from the derived data-owner plan, as it would
// from owner.plan.
// planPath names the plan in errors; planID is its id (segment.PlanID of
// its file).
func (rf *remoteFlags) fromPlan(planPath, planID string, plan *compiler.Plan) (*remoteJob, error) {
	cuts, listed, err := rf.trusted(planPath, planID)
	if err != nil {
		return nil, err
	}
	if plan.IsSplit() {
		// The model owner's full plan holds every stage's reference: the
		// in-memory data-owner plan reveals them, for --verify.
		op, segs, err := splitOwnerPlan(planID, plan, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", planPath, err)
		}
		if err := rf.checkSegments(planPath, op, cuts); err != nil {
			return nil, err
		}
		job := &remoteJob{owner: op, listed: listed}
		for _, s := range segs {
			job.shards = append(job.shards, segment.NewShard(planID, plan.ModelName, s))
		}
		return job, nil
	}
	var segs []*segment.Segment
	if rf.manifest != "" {
		segs, err = segment.SplitAt(plan.Program, cuts)
	} else {
		n := rf.segments
		if n == 0 {
			n = 1
			if rf.workers >= 2 {
				n = 2
			}
		}
		segs, err = segment.Split(plan.Program, n)
	}
	if err != nil {
		return nil, err
	}
	job := &remoteJob{listed: listed}
	for _, s := range segs {
		job.shards = append(job.shards, segment.NewShard(planID, plan.ModelName, s))
	}
	job.owner, err = segment.NewOwnerPlan(planID, plan.ModelName, plan.Program, segs, nil, false)
	return job, err
}

// fromOwnerPlan reads a data-owner plan into a job; with --workers, the
// in-process workers serve the shards beside it (--shards DIR), checked
// against the hashes it lists.
func (rf *remoteFlags) fromOwnerPlan(path string) (*remoteJob, error) {
	op, err := segment.ReadOwnerPlan(path)
	if err != nil {
		return nil, err
	}
	cuts, listed, err := rf.trusted(path, op.PlanID)
	if err != nil {
		return nil, err
	}
	if err := rf.checkSegments(path, op, cuts); err != nil {
		return nil, err
	}
	job := &remoteJob{owner: op, listed: listed}
	if rf.workers == 0 {
		return job, nil
	}
	dir := rf.shards
	if dir == "" {
		dir = filepath.Dir(path)
	}
	for _, s := range op.AllSegments() {
		file := filepath.Join(dir, fmt.Sprintf("shard-%d.bin", s.Index))
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--workers %d starts workers in this process, which need the worker shards: %w (--shards DIR)", rf.workers, err)
		}
		if sum := segment.ShardSum(data); s.Shard != "" && sum != s.Shard {
			return nil, fmt.Errorf("%s: SHA-256 %.12s, %s lists %.12s for segment %d", file, sum, path, s.Shard, s.Index)
		}
		sh, err := segment.DecodeShard(data, file)
		if err != nil {
			return nil, err
		}
		if sh.PlanID != op.PlanID || sh.Index != s.Index {
			return nil, fmt.Errorf("%s is segment %d of plan %.12s, want segment %d of %.12s", file, sh.Index, sh.PlanID, s.Index, op.PlanID)
		}
		job.shards = append(job.shards, sh)
	}
	return job, nil
}

// checkSegments checks --segments and the --manifest's cuts (when given)
// against the segments of the data-owner plan of the plan at path.
func (rf *remoteFlags) checkSegments(path string, op *segment.OwnerPlan, cuts []int) error {
	n := len(op.AllSegments())
	if rf.segments != 0 && rf.segments != n {
		what := "segments"
		if op.IsSplit() {
			what = "segments (one per encrypted stage)"
		}
		return fmt.Errorf("%s is split in %d %s; --segments %d cannot change that", path, n, what, rf.segments)
	}
	if rf.manifest != "" && !slices.Equal(cuts, op.Cuts()) {
		return fmt.Errorf("%s cuts the program before %v, %s before %v", rf.manifest, cuts, path, op.Cuts())
	}
	return nil
}

// splitOwnerPlan derives the data-owner plan of the split plan plan (of
// id planID) and its segments, one per encrypted stage; revealed keeps the
// encrypted stages' plaintext references and the model's.
func splitOwnerPlan(planID string, plan *compiler.Plan, revealed bool) (*segment.OwnerPlan, []*segment.Segment, error) {
	stages, err := plan.RunStages()
	if err != nil {
		return nil, nil, err
	}
	g, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		return nil, nil, err
	}
	var ins, outs []string
	for _, v := range g.Inputs {
		ins = append(ins, v.Name)
	}
	for _, v := range g.Outputs {
		outs = append(outs, v.Name)
	}
	return segment.NewSplitOwnerPlan(planID, plan.ModelName, stages, ins, outs, plan.Graph, revealed)
}

// isOwnerPlan reports whether the file at path is a data-owner plan
// (owner.plan of a split) rather than a full plan; unreadable files are
// left to the plan reader's error.
func isOwnerPlan(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	return segment.IsOwnerPlan(head[:n])
}

// runOwnerPlan is `run OWNERPLAN`: the data owner's run from a data-owner
// plan, on remote or in-process workers. --verify needs the plaintext
// reference, which the plan holds only when the model owner revealed it.
func (rf *remoteFlags) runOwnerPlan(path, input, output string, verify bool) error {
	if !rf.enabled() {
		return fmt.Errorf("%s is a data-owner plan, which holds no weights: run it on workers (--swarm MULTIADDR or --workers N)", path)
	}
	job, err := rf.fromOwnerPlan(path)
	if err != nil {
		return err
	}
	var ref *ir.Graph
	if job.owner.Reference != nil {
		if ref, err = ir.UnmarshalGraph(job.owner.Reference); err != nil {
			return fmt.Errorf("%s: plaintext reference: %w", path, err)
		}
	} else if verify {
		return fmt.Errorf("%s holds no plaintext reference (the model owner did not reveal it: shard --reveal-reference), so --verify has nothing to check against", path)
	}
	x, err := readTensor(input)
	if err != nil {
		return err
	}
	if !x.DType.IsFloat() {
		return fmt.Errorf("%s holds %s data; the model's input takes real numbers", input, x.DType)
	}
	if job.owner.IsSplit() {
		y, rep, err := rf.executeSplit(job, x, verify)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return finishSplitRun(os.Stdout, job.owner.Outputs[0], ref, x, y, output, verify, rep)
	}
	y, err := rf.execute(job, x)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return finishRun(ref, &compiler.Plan{ModelName: job.owner.ModelName, Program: job.owner.Program}, x, y, output, verify)
}

// run executes the full plan on x through remote workers.
func (rf *remoteFlags) run(planPath string, plan *compiler.Plan, x *ir.Tensor) (*ir.Tensor, error) {
	job, err := rf.planJob(planPath, plan)
	if err != nil {
		return nil, err
	}
	return rf.execute(job, x)
}

// planJob is the job of the full plan read from planPath (its id: the
// file's SHA-256).
func (rf *remoteFlags) planJob(planPath string, plan *compiler.Plan) (*remoteJob, error) {
	data, err := os.ReadFile(planPath)
	if err != nil {
		return nil, err
	}
	return rf.fromPlan(planPath, segment.PlanID(data), plan)
}

// remoteSession is the data owner's side of a remote run: its host in the
// DHT (with the in-process workers of --workers), the finder of the
// segments' providers and the owner options from the flags.
type remoteSession struct {
	host    host.Host
	find    remote.Finder
	opts    remote.OwnerOptions
	closers []func()
}

func (s *remoteSession) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// connect starts the data owner's host (--identity), checks its --token,
// starts the in-process workers of --workers serving the job's shards,
// joins the DHT (--swarm, or those workers) and returns the session; its
// close stops all of it.
func (rf *remoteFlags) connect(job *remoteJob) (_ *remoteSession, err error) {
	sess := &remoteSession{}
	defer func() {
		if err != nil {
			sess.close()
		}
	}()
	nsegs := len(job.owner.AllSegments())
	priv, err := identityKey(rf.identity)
	if err != nil {
		return nil, err
	}
	if priv == nil {
		if priv, err = remote.NewIdentity(); err != nil {
			return nil, err
		}
	}
	var token *remote.Token
	if rf.token != "" {
		if token, err = remote.ReadToken(rf.token); err != nil {
			return nil, err
		}
		self, err := peer.IDFromPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if token.Peer != self.String() {
			return nil, fmt.Errorf("%s is issued to peer %s, this data owner is %s (--identity)", rf.token, token.Peer, self)
		}
		if !time.Now().Before(token.ExpiresAt()) {
			return nil, fmt.Errorf("%s expired at %s", rf.token, token.ExpiresAt().Format(time.RFC3339))
		}
	}
	h, err := remote.NewHost(priv, "/ip4/127.0.0.1/tcp/0")
	if err != nil {
		return nil, err
	}
	sess.host = h
	sess.closers = append(sess.closers, func() { h.Close() })
	ctx := context.Background()
	boot, err := remote.AddrInfos(rf.swarm)
	if err != nil {
		return nil, err
	}
	if rf.workers > 0 {
		var cacheDir string
		if rf.keys != "" {
			// The in-process workers' caches persist beside the data
			// owner's keys, as remote workers' do on their disks.
			cacheDir = filepath.Join(rf.keys, "worker-caches")
		} else {
			if cacheDir, err = os.MkdirTemp("", "ciphercut-workers-"); err != nil {
				return nil, err
			}
			sess.closers = append(sess.closers, func() { os.RemoveAll(cacheDir) })
		}
		// The in-process workers share this process's memory: one pool
		// plans their evaluators within --memory-limit (default: the
		// memory available now) and drops idle ones to make room, and
		// their key caches hold every segment's keys.
		limit, err := parseMemoryLimit(rf.memLimit)
		if err != nil {
			return nil, err
		}
		if limit <= 0 {
			limit = local.MemoryAvailable()
		}
		quota := int64(8 << 30)
		for _, sh := range job.shards {
			if kp, err := ckks.PlanKeys(sh.Program); err == nil {
				quota += kp.TotalBytes
			}
		}
		wo := remote.WorkerOptions{Allow: []peer.ID{h.ID()}, CacheDir: cacheDir, CacheQuota: quota, Pool: remote.NewMemoryPool(limit),
			Log: log.New(os.Stderr, "worker: ", log.LstdFlags)}
		if token != nil {
			// The in-process workers admit the data owner by its token
			// alone, as remote ones started with --token-issuer would.
			issuer, err := peer.Decode(token.Issuer)
			if err != nil {
				return nil, err
			}
			wo.Allow, wo.TokenIssuers = nil, []peer.ID{issuer}
		}
		c, err := remote.StartCluster(ctx, remote.RoundRobin(job.shards, rf.workers), wo)
		if err != nil {
			return nil, err
		}
		sess.closers = append(sess.closers, func() { c.Close() })
		fmt.Printf("started %d workers on loopback, %d segments\n", rf.workers, nsegs)
		boot = append(boot, c.Bootstrap()...)
	}
	d, err := remote.NewDHT(ctx, h, false, boot)
	if err != nil {
		return nil, err
	}
	sess.closers = append(sess.closers, func() { d.Close() })
	fmt.Printf("data owner %s\n", h.ID())
	sess.find = remote.OnlyListed(remote.DHTProviders(d, job.owner.PlanID, rf.redundancy, 30*time.Second), job.listed)
	spill := ""
	if rf.keys == "" {
		// Without --keys the owner's evaluation keys (public) go to a
		// directory of this run, read at each upload rather than held in
		// memory (a transformer's stages have gigabytes each).
		if spill, err = os.MkdirTemp("", "ciphercut-owner-keys-"); err != nil {
			return nil, err
		}
		sess.closers = append(sess.closers, func() { os.RemoveAll(spill) })
	}
	sess.opts = remote.OwnerOptions{KeyDir: rf.keys, SpillDir: spill, Token: token, Timeout: rf.timeout, Redundancy: rf.redundancy,
		KeyProgress: sessionProgress(nil).Keys, Log: log.New(os.Stderr, "owner: ", log.LstdFlags)}
	return sess, nil
}

// execute runs the job on x through remote workers (or in-process ones,
// --workers) and prints where each segment ran.
func (rf *remoteFlags) execute(job *remoteJob, x *ir.Tensor) (*ir.Tensor, error) {
	sess, err := rf.connect(job)
	if err != nil {
		return nil, err
	}
	defer sess.close()
	segs := job.owner.Split()
	owner, setup, err := remote.NewOwner(sess.host, sess.find, job.owner, sess.opts)
	if err != nil {
		return nil, err
	}
	fmt.Printf("keys: %v for %d segments (%s)\n", setup.KeyGen.Round(time.Millisecond), len(segs), keysHow(setup, filepath.Join(rf.keys, remote.SecretKeyFile)))
	start := time.Now()
	y, runs, err := owner.Infer(context.Background(), x)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		s := segs[r.Index]
		fmt.Printf("segment %d/%d (instructions [%d, %d)): worker %s, %v round trip (evaluation %v, network and serialization %v); keys uploaded %.1f MiB, sent %.2f MiB, received %.2f MiB\n",
			r.Index+1, len(segs), s.Start, s.End, r.Worker, r.Wall.Round(time.Millisecond), r.Eval.Round(time.Millisecond), (r.Wall - r.Eval).Round(time.Millisecond),
			float64(r.KeyBytes)/(1<<20), float64(r.Sent)/(1<<20), float64(r.Received)/(1<<20))
		for _, f := range r.Failures {
			fmt.Printf("  failed before: %s\n", f)
		}
		if len(r.Checked) > 0 {
			fmt.Printf("  checked by %v\n", r.Checked)
		}
		if r.Liar != "" {
			fmt.Printf("  LYING WORKER: %s (its result disagreed beyond the plan's error bound)\n", r.Liar)
		}
	}
	fmt.Printf("pipeline: %d samples, encrypt + %d segments + decrypt in %v\n", x.Shape[0], len(segs), time.Since(start).Round(time.Millisecond))
	return y, nil
}

// keysHow says whether an owner's keys were generated or read (the secret
// key from skFile).
func keysHow(setup *remote.Setup, skFile string) string {
	if !setup.SecretKeyLoaded {
		return "generated"
	}
	loaded := 0
	for _, l := range setup.KeysLoaded {
		if l {
			loaded++
		}
	}
	return fmt.Sprintf("secret key read from %s, evaluation keys read for %d of %d segments", skFile, loaded, len(setup.KeysLoaded))
}

// executeSplit runs a split job on x: runtime/split runs the stages in
// order, as in process, with the encrypted ones on remote workers (or
// in-process ones, --workers), one data owner's client per encrypted stage.
// With verify, each encrypted stage is checked against its revealed
// plaintext reference.
func (rf *remoteFlags) executeSplit(job *remoteJob, x *ir.Tensor, verify bool) (*ir.Tensor, *split.Report, error) {
	op := job.owner
	sess, so, err := rf.splitOwner(job) // see generate.go
	if err != nil {
		return nil, nil, err
	}
	defer sess.close()
	env, rep, err := so.Run(context.Background(), map[string]*ir.Tensor{op.Inputs[0]: x}, verify)
	if err != nil {
		return nil, nil, err
	}
	y, ok := env[op.Outputs[0]]
	if !ok {
		return nil, nil, fmt.Errorf("no stage produced the output %q", op.Outputs[0])
	}
	return y, rep, nil
}

// runSplit runs the full split plan (of the file planPath) on x through
// remote workers.
func (rf *remoteFlags) runSplit(planPath string, plan *compiler.Plan, x *ir.Tensor, verify bool) (*ir.Tensor, *split.Report, error) {
	job, err := rf.planJob(planPath, plan)
	if err != nil {
		return nil, nil, err
	}
	return rf.executeSplit(job, x, verify)
}

// finishRun writes or prints a remote run's output and verifies it when
// asked, as run does for a local one.
func finishRun(ref *ir.Graph, plan *compiler.Plan, x, y *ir.Tensor, output string, verify bool) error {
	name := plan.Program.Outputs[0].Name
	if output != "" {
		if err := writeTensor(output, name, y); err != nil {
			return err
		}
	} else {
		printTensor(name, y)
	}
	if verify {
		return verifyAgainst(ref, plan, x, y)
	}
	return nil
}
