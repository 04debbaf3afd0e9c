package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// manifestSigningContext prefixes the signed bytes, so that a manifest
// signature cannot be replayed as any other libp2p signature.
const manifestSigningContext = "ciphercut shard manifest v1\n"

// signedBytes is what a manifest's signature covers: the context and the
// manifest's JSON without its signature (encoding/json writes struct fields
// in order and map keys sorted, so the bytes are canonical).
func signedBytes(m *segment.Manifest) ([]byte, error) {
	c := *m
	c.Signature = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(manifestSigningContext), b...), nil
}

// SignManifest records, for each segment index, the workers the model
// owner vouches for, and signs the manifest (shard hashes, cuts, plan id
// and workers) with the model owner's key.
func SignManifest(m *segment.Manifest, workers map[int][]peer.ID, owner crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(owner)
	if err != nil {
		return err
	}
	m.Workers = map[string][]string{}
	for k, ids := range workers {
		if k < 0 || k >= len(m.Shards) {
			return fmt.Errorf("manifest: workers for segment %d of %d", k, len(m.Shards))
		}
		for _, w := range ids {
			m.Workers[strconv.Itoa(k)] = append(m.Workers[strconv.Itoa(k)], w.String())
		}
	}
	m.Signer = id.String()
	b, err := signedBytes(m)
	if err != nil {
		return err
	}
	m.Signature, err = owner.Sign(b)
	return err
}

// VerifyManifest checks that the manifest is signed by the model owner
// trusted, and returns the workers it lists per segment.
func VerifyManifest(m *segment.Manifest, trusted peer.ID) (map[int][]peer.ID, error) {
	if m.Signer != trusted.String() || len(m.Signature) == 0 {
		return nil, fmt.Errorf("manifest of plan %.12s: signed by %q, not by the trusted model owner %s", m.PlanID, m.Signer, trusted)
	}
	pub, err := trusted.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("model owner %s: %w", trusted, err)
	}
	b, err := signedBytes(m)
	if err != nil {
		return nil, err
	}
	ok, err := pub.Verify(b, m.Signature)
	if err != nil || !ok {
		return nil, fmt.Errorf("manifest of plan %.12s: bad signature by %s (altered after signing?)", m.PlanID, trusted)
	}
	out := map[int][]peer.ID{}
	for k, ids := range m.Workers {
		idx, err := strconv.Atoi(k)
		if err != nil || idx < 0 || idx >= len(m.Shards) {
			return nil, fmt.Errorf("manifest: workers listed for segment %q", k)
		}
		for _, s := range ids {
			id, err := peer.Decode(s)
			if err != nil {
				return nil, fmt.Errorf("manifest: worker %q of segment %d: %w", s, idx, err)
			}
			out[idx] = append(out[idx], id)
		}
	}
	return out, nil
}

// OnlyListed wraps a Finder to keep, for each segment with a list, only
// the listed workers (the signed manifest's), in the order found.
func OnlyListed(find Finder, listed map[int][]peer.ID) Finder {
	return func(ctx context.Context, index int) ([]peer.AddrInfo, error) {
		provs, err := find(ctx, index)
		if err != nil {
			return nil, err
		}
		ok, has := map[peer.ID]bool{}, false
		for _, id := range listed[index] {
			ok[id], has = true, true
		}
		if !has {
			return provs, nil
		}
		var out []peer.AddrInfo
		for _, p := range provs {
			if ok[p.ID] {
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("segment %d: none of the %d providers found is a worker the signed manifest lists", index, len(provs))
		}
		return out, nil
	}
}
