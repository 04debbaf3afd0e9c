package remote

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// Cluster is a set of worker hosts started in one process on loopback,
// joined in one DHT: the embedded default of `ciphercut run --workers N`,
// and the tests'. It runs the same protocol and code as separate workers.
type Cluster struct {
	Workers []*Worker
	DHTs    []*dht.IpfsDHT
	cancel  context.CancelFunc
}

// RoundRobin assigns the shards of one plan to n workers. With n >=
// len(shards), worker i serves segment i mod len(shards) (the extra
// workers are redundant copies); with fewer workers, worker i serves the
// consecutive segments i·len(shards)/n to (i+1)·len(shards)/n - 1, so that
// neighbouring segments (the stages of one transformer block between
// client-aided layer normalizations) share a worker. Every segment has a
// worker either way.
func RoundRobin(shards []*segment.Shard, n int) [][]*segment.Shard {
	serve := make([][]*segment.Shard, n)
	if n < len(shards) {
		for i := range serve {
			serve[i] = shards[i*len(shards)/n : (i+1)*len(shards)/n]
		}
		return serve
	}
	for i := range serve {
		serve[i] = []*segment.Shard{shards[i%len(shards)]}
	}
	return serve
}

// StartCluster starts one worker per entry of serve (the shards it serves)
// on 127.0.0.1, each with a fresh identity, a key cache under
// opts.CacheDir/worker-<i> and the options given, every worker
// bootstrapping the DHT from the ones before it, and announces the shards.
func StartCluster(ctx context.Context, serve [][]*segment.Shard, opts WorkerOptions) (*Cluster, error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &Cluster{cancel: cancel}
	var boot []peer.AddrInfo
	base := opts.CacheDir
	for i, shards := range serve {
		h, err := NewHost(nil, "/ip4/127.0.0.1/tcp/0")
		if err != nil {
			c.Close()
			return nil, err
		}
		d, err := NewDHT(ctx, h, true, boot)
		if err != nil {
			h.Close()
			c.Close()
			return nil, err
		}
		o := opts
		if base != "" {
			o.CacheDir = filepath.Join(base, fmt.Sprintf("worker-%d", i))
		}
		w, err := NewWorker(h, shards, o)
		if err != nil {
			d.Close()
			h.Close()
			c.Close()
			return nil, err
		}
		c.Workers = append(c.Workers, w)
		c.DHTs = append(c.DHTs, d)
		boot = append(boot, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	for i, w := range c.Workers {
		w.Announce(ctx, c.DHTs[i])
	}
	return c, nil
}

// Bootstrap lists the workers' addresses, for a data owner's DHT.
func (c *Cluster) Bootstrap() []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, w := range c.Workers {
		out = append(out, peer.AddrInfo{ID: w.host.ID(), Addrs: w.host.Addrs()})
	}
	return out
}

// Hosts lists the workers' hosts.
func (c *Cluster) Hosts() []host.Host {
	var out []host.Host
	for _, w := range c.Workers {
		out = append(out, w.host)
	}
	return out
}

// Close stops every worker.
func (c *Cluster) Close() error {
	c.cancel()
	var errs []error
	for i, w := range c.Workers {
		errs = append(errs, c.DHTs[i].Close(), w.host.Close())
	}
	return errors.Join(errs...)
}
