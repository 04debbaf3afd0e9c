package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// remoteFlags are run's options for remote workers: --workers N starts N
// worker hosts in this process (loopback, the same protocol), --swarm joins
// separate workers through the DHT.
type remoteFlags struct {
	workers, segments, redundancy int
	swarm                         []string
	manifest, identity, trust     string
	timeout                       time.Duration
}

func addRemoteFlags(cmd *cobra.Command) *remoteFlags {
	rf := &remoteFlags{}
	f := cmd.Flags()
	f.IntVar(&rf.workers, "workers", 0, "run the encrypted segments on N worker hosts started in this process, over libp2p on loopback")
	f.StringArrayVar(&rf.swarm, "swarm", nil, "multiaddr (with /p2p/ID) of a DHT peer of the workers to use (repeatable)")
	f.IntVar(&rf.segments, "segments", 0, "split the program into this many segments (default: the --manifest's, else 2 with --workers >= 2, else 1)")
	f.StringVar(&rf.manifest, "manifest", "", "manifest.json written by `ciphercut shard` (the segments the workers serve)")
	f.StringVar(&rf.trust, "trust", "", "peer id of the model owner: require the --manifest signed by it and use only the workers it lists")
	f.IntVar(&rf.redundancy, "redundancy", 1, "workers per segment whose results are compared (2: detect and name a lying worker)")
	f.StringVar(&rf.identity, "identity", "", "Ed25519 key file of the data owner's peer identity (created if missing; the workers' --allow)")
	f.DurationVar(&rf.timeout, "worker-timeout", 10*time.Minute, "time after which a worker is considered stalled and the segment replayed elsewhere")
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

// split returns the plan's segments (the manifest's cuts, or an even
// split) and, with --trust, the workers the signed manifest lists.
func (rf *remoteFlags) split(planPath, planID string, plan *compiler.Plan) ([]*segment.Segment, map[int][]peer.ID, error) {
	if rf.trust != "" && rf.manifest == "" {
		return nil, nil, fmt.Errorf("--trust needs the signed --manifest")
	}
	if rf.manifest != "" {
		m, err := segment.ReadManifest(rf.manifest)
		if err != nil {
			return nil, nil, err
		}
		if m.PlanID != planID {
			return nil, nil, fmt.Errorf("%s is for plan %.12s, %s is %.12s", rf.manifest, m.PlanID, planPath, planID)
		}
		var listed map[int][]peer.ID
		if rf.trust != "" {
			owner, err := peer.Decode(rf.trust)
			if err != nil {
				return nil, nil, fmt.Errorf("--trust %q: %w", rf.trust, err)
			}
			if listed, err = remote.VerifyManifest(m, owner); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", rf.manifest, err)
			}
		}
		segs, err := segment.SplitAt(plan.Program, m.Cuts)
		return segs, listed, err
	}
	n := rf.segments
	if n == 0 {
		n = 1
		if rf.workers >= 2 {
			n = 2
		}
	}
	segs, err := segment.Split(plan.Program, n)
	return segs, nil, err
}

// run executes the plan on x through remote workers and prints where each
// segment ran.
func (rf *remoteFlags) run(planPath string, plan *compiler.Plan, x *ir.Tensor) (*ir.Tensor, error) {
	data, err := os.ReadFile(planPath)
	if err != nil {
		return nil, err
	}
	planID := segment.PlanID(data)
	segs, listed, err := rf.split(planPath, planID, plan)
	if err != nil {
		return nil, err
	}
	priv, err := identityKey(rf.identity)
	if err != nil {
		return nil, err
	}
	if priv == nil {
		if priv, err = remote.NewIdentity(); err != nil {
			return nil, err
		}
	}
	h, err := remote.NewHost(priv, "/ip4/127.0.0.1/tcp/0")
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ctx := context.Background()
	boot, err := remote.AddrInfos(rf.swarm)
	if err != nil {
		return nil, err
	}
	if rf.workers > 0 {
		var shards []*segment.Shard
		for _, s := range segs {
			shards = append(shards, segment.NewShard(planID, plan.ModelName, s))
		}
		cacheDir, err := os.MkdirTemp("", "ciphercut-workers-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(cacheDir)
		c, err := remote.StartCluster(ctx, remote.RoundRobin(shards, rf.workers), remote.WorkerOptions{
			Allow: []peer.ID{h.ID()}, CacheDir: cacheDir, Log: log.New(os.Stderr, "worker: ", log.LstdFlags)})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		fmt.Printf("started %d workers on loopback, %d segments\n", rf.workers, len(segs))
		boot = append(boot, c.Bootstrap()...)
	}
	d, err := remote.NewDHT(ctx, h, false, boot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fmt.Printf("data owner %s\n", h.ID())
	find := remote.OnlyListed(remote.DHTProviders(d, planID, rf.redundancy, 30*time.Second), listed)
	owner, setup, err := remote.NewOwner(h, find, plan.Program, planID, segs,
		remote.OwnerOptions{Timeout: rf.timeout, Redundancy: rf.redundancy, KeyProgress: sessionProgress(nil).Keys, Log: log.New(os.Stderr, "owner: ", log.LstdFlags)})
	if err != nil {
		return nil, err
	}
	fmt.Printf("keys: %v for %d segments\n", setup.KeyGen.Round(time.Millisecond), len(segs))
	start := time.Now()
	y, runs, err := owner.Infer(ctx, x)
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
