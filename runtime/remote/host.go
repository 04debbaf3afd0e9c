// Package remote runs the encrypted segments of a ciphercut plan on remote
// workers over go-libp2p, and drives them from the data owner's side.
//
// A worker (NewWorker) serves the shards it holds under the protocol
// /ciphercut/eval/1.0.0 to the data owners it allows, announces them in a
// Kademlia DHT (kad-dht) under a content id derived from the plan id and the
// segment index (ContentID), caches the evaluation keys data owners upload
// (KeyCache) and evaluates requests up to a concurrency limit. The data
// owner (Owner) keeps the secret key, finds a worker per segment, uploads
// each worker its segment's public evaluation keys once, and runs the
// segments in turn, replaying a segment on another provider when a worker
// fails or stalls, and optionally comparing two workers' results.
//
// Hosts speak Noise over TCP; a peer's identity is its Ed25519 key
// (LoadIdentity). Every frame is size-limited and validated before use: a
// malformed request gets an error reply naming the problem and a log line.
package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
)

// ProtocolID is the evaluation protocol.
const ProtocolID protocol.ID = "/ciphercut/eval/1.1.0"

// dhtPrefix keeps ciphercut's DHT apart from the public IPFS one.
const dhtPrefix protocol.ID = "/ciphercut"

// LoadIdentity reads the Ed25519 private key in path (libp2p's protobuf
// encoding), creating it (mode 0600) when the file does not exist.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nil, err
		}
		b, err := crypto.MarshalPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	priv, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return priv, nil
}

// NewIdentity draws a fresh Ed25519 identity (in-process hosts).
func NewIdentity() (crypto.PrivKey, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	return priv, err
}

// NewHost starts a libp2p host with identity priv (nil: a fresh one)
// listening on the multiaddrs listen (e.g. /ip4/127.0.0.1/tcp/0), speaking
// Noise over TCP only.
func NewHost(priv crypto.PrivKey, listen ...string) (host.Host, error) {
	if priv == nil {
		var err error
		if priv, err = NewIdentity(); err != nil {
			return nil, err
		}
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, patientYamux()),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
	}
	if len(listen) > 0 {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting a libp2p host: %w", err)
	}
	return h, nil
}

// patientYamux is libp2p's yamux muxer with keepalive pings given a
// minute to go out and a minute to come back (default 10 s each). A worker
// process busy on every core with an evaluation that fills its memory can
// stall that long (page reclaim, the collector), and a missed ping closes
// the connection with the request on it: twice, tiny-gpt's generation
// lost a token that way. A dead peer is still noticed, within a few
// minutes, and the data owner's silence timeout bounds a stalled one.
func patientYamux() *yamux.Transport {
	t := *yamux.DefaultTransport // a copy of its config
	t.ConnectionWriteTimeout = time.Minute
	return &t
}

// NewDHT starts the ciphercut Kademlia DHT on h (server mode for workers,
// client mode for data owners) and connects to the bootstrap peers.
func NewDHT(ctx context.Context, h host.Host, server bool, bootstrap []peer.AddrInfo) (*dht.IpfsDHT, error) {
	mode := dht.ModeClient
	if server {
		mode = dht.ModeServer
	}
	d, err := dht.New(h, dht.Mode(mode), dht.ProtocolPrefix(dhtPrefix), dht.BootstrapPeers(bootstrap...))
	if err != nil {
		return nil, fmt.Errorf("starting the DHT: %w", err)
	}
	for _, b := range bootstrap {
		if err := h.Connect(ctx, b); err != nil {
			d.Close()
			return nil, fmt.Errorf("connecting to bootstrap peer %s: %w", b.ID, err)
		}
	}
	if err := d.Bootstrap(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// ContentID is the DHT key under which workers announce segment index of
// the plan planID: a CIDv1 (raw) of the SHA-256 of
// "ciphercut/eval/1.0.0\x00<plan id>\x00<index>".
func ContentID(planID string, index int) cid.Cid {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", ProtocolID, planID, index))
	m, err := mh.Encode(sum[:], mh.SHA2_256)
	if err != nil {
		panic(err) // a SHA-256 digest always encodes
	}
	return cid.NewCidV1(cid.Raw, m)
}

// AddrInfos parses multiaddrs ending in /p2p/<peer id>.
func AddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("multiaddr %q: %w", s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("multiaddr %q (want .../p2p/<peer id>): %w", s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// FullAddrs returns h's listen addresses with its /p2p/ peer id.
func FullAddrs(h host.Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
	}
	return out
}
