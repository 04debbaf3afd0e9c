package remote

import (
	"context"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// TestSignedManifest signs a manifest, verifies it, refuses it altered or
// under another signer, and filters providers to the workers it lists.
func TestSignedManifest(t *testing.T) {
	ids := make([]peer.ID, 4)
	model, _ := NewIdentity()
	for i := range ids {
		k, _ := NewIdentity()
		ids[i], _ = peer.IDFromPrivateKey(k)
	}
	modelID, _ := peer.IDFromPrivateKey(model)
	m := &segment.Manifest{PlanID: strings.Repeat("ab", 32), Cuts: []int{3},
		Shards: []segment.ManifestShard{{Index: 0, End: 3, SHA256: "00"}, {Index: 1, Start: 3, End: 5, SHA256: "11"}}}
	if err := SignManifest(m, map[int][]peer.ID{0: {ids[0], ids[1]}}, model); err != nil {
		t.Fatal(err)
	}
	listed, err := VerifyManifest(m, modelID)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed[0]) != 2 || len(listed[1]) != 0 {
		t.Fatalf("listed workers %v", listed)
	}
	if _, err := VerifyManifest(m, ids[3]); err == nil || !strings.Contains(err.Error(), "not by the trusted model owner") {
		t.Errorf("other signer: %v", err)
	}
	altered := *m
	altered.Shards = append([]segment.ManifestShard(nil), m.Shards...)
	altered.Shards[1].SHA256 = "22"
	if _, err := VerifyManifest(&altered, modelID); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("altered manifest: %v", err)
	}
	all := []peer.AddrInfo{{ID: ids[2]}, {ID: ids[1]}, {ID: ids[3]}}
	find := OnlyListed(StaticProviders(nil, all), listed)
	got, err := find(context.Background(), 0)
	if err != nil || len(got) != 1 || got[0].ID != ids[1] {
		t.Errorf("segment 0 providers %v, %v; want only %s", got, err, ids[1])
	}
	if got, err := find(context.Background(), 1); err != nil || len(got) != 3 {
		t.Errorf("segment 1 (no list) providers %v, %v; want all", got, err)
	}
	if _, err := OnlyListed(StaticProviders(nil, all[2:]), listed)(context.Background(), 0); err == nil {
		t.Error("no listed provider: no error")
	}
}
