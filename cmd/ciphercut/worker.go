package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

func workerCmd() *cobra.Command {
	var shards, allow, bootstrap, issuers []string
	var listen, identity, cacheDir string
	var quotaGiB, budgetGiB, encodeGiB float64
	var concurrency int
	cmd := &cobra.Command{
		Use:   "worker --shard FILE... (--allow PEERID... | --token-issuer PEERID...) [--listen MULTIADDR] [--identity KEYFILE] [--bootstrap MULTIADDR...]",
		Short: "Serve plan shards to data owners over libp2p",
		Long: "worker serves the encrypted segments in the shard files (from `ciphercut shard`)\n" +
			"over libp2p (Noise over TCP, protocol " + string(remote.ProtocolID) + ") to the data\n" +
			"owners listed with --allow or holding a token of a --token-issuer, announces them in the DHT (joined through --bootstrap),\n" +
			"caches the evaluation keys owners upload under --cache-dir within --cache-quota,\n" +
			"and logs every request. It prints its peer id and addresses, then runs until\n" +
			"interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(shards) == 0 {
				return fmt.Errorf("missing --shard FILE")
			}
			var served []*segment.Shard
			for _, f := range shards {
				s, err := segment.ReadShard(f)
				if err != nil {
					return err
				}
				served = append(served, s)
			}
			allowed, err := peerIDs("--allow", allow)
			if err != nil {
				return err
			}
			tokenIssuers, err := peerIDs("--token-issuer", issuers)
			if err != nil {
				return err
			}
			if len(allowed) == 0 && len(tokenIssuers) == 0 {
				return fmt.Errorf("missing --allow PEERID or --token-issuer PEERID: a worker serves only the data owners it is given, or those holding a token of a model owner it accepts")
			}
			boot, err := remote.AddrInfos(bootstrap)
			if err != nil {
				return err
			}
			priv, err := identityKey(identity)
			if err != nil {
				return err
			}
			h, err := remote.NewHost(priv, listen)
			if err != nil {
				return err
			}
			defer h.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := remote.NewDHT(ctx, h, true, boot)
			if err != nil {
				return err
			}
			defer d.Close()
			w, err := remote.NewWorker(h, served, remote.WorkerOptions{Allow: allowed, TokenIssuers: tokenIssuers, CacheDir: cacheDir,
				CacheQuota: int64(quotaGiB * (1 << 30)), Concurrency: concurrency, MemoryBudget: int64(budgetGiB * (1 << 30)),
				EncodeBudget: int64(encodeGiB * (1 << 30)), Log: log.New(os.Stderr, "worker: ", log.LstdFlags)})
			if err != nil {
				return err
			}
			for _, s := range served {
				fmt.Printf("serving segment %d/%d of %s (plan %.12s, instructions [%d, %d))\n", s.Index+1, s.Count, s.ModelName, s.PlanID, s.Start, s.End)
			}
			fmt.Printf("peer %s\n", h.ID())
			for _, a := range remote.FullAddrs(h) {
				fmt.Printf("listening on %s\n", a)
			}
			w.Announce(ctx, d)
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&shards, "shard", nil, "shard file to serve (repeatable)")
	f.StringVar(&listen, "listen", "/ip4/127.0.0.1/tcp/0", "multiaddr to listen on")
	f.StringVar(&identity, "identity", "", "Ed25519 key file of the worker's peer identity (created if missing; default: a fresh identity)")
	f.StringArrayVar(&allow, "allow", nil, "peer id of a data owner to serve (repeatable)")
	f.StringArrayVar(&issuers, "token-issuer", nil, "peer id of a model owner whose tokens (`ciphercut token`) admit data owners (repeatable)")
	f.StringArrayVar(&bootstrap, "bootstrap", nil, "multiaddr (with /p2p/ID) of a DHT peer to join through (repeatable)")
	f.StringVar(&cacheDir, "cache-dir", "", "directory of the evaluation key cache (default: under the temporary directory)")
	f.Float64Var(&quotaGiB, "cache-quota", 8, "key cache quota in GiB")
	f.IntVar(&concurrency, "concurrency", 1, "requests evaluated at once")
	f.Float64Var(&budgetGiB, "memory-budget", 4, "GiB of input ciphertexts held by the requests in flight together")
	f.Float64Var(&encodeGiB, "encode-budget", 0, "GiB of matrix diagonals each evaluator keeps encoded; the rest is encoded at each use (0: all)")
	return cmd
}

func identityCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "identity KEYFILE",
		Short: "Print the libp2p peer id of a key file, creating the key if missing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, err := remote.LoadIdentity(args[0])
			if err != nil {
				return err
			}
			id, err := peer.IDFromPrivateKey(priv)
			if err != nil {
				return err
			}
			fmt.Println(id)
			return nil
		},
	}
}

// peerIDs decodes the peer ids given with a flag.
func peerIDs(flag string, ids []string) ([]peer.ID, error) {
	var out []peer.ID
	for _, a := range ids {
		id, err := peer.Decode(a)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, a, err)
		}
		out = append(out, id)
	}
	return out, nil
}
