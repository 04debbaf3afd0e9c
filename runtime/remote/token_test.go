package remote

import (
	"bytes"
	"context"
	"errors"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// lockedBuffer is a log sink safe for the worker's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTokens runs cancer-mlp's two segments on workers that list no data
// owner with --allow but accept the model owner's tokens: a data owner
// with a valid token is served; an expired token, a forged one (the model
// owner's issuer field, another key's signature), one issued by another
// key, one issued to another peer, a tampered expiry and no token at all
// are refused, each with an error reply naming the reason and a log line
// on the worker.
func TestTokens(t *testing.T) {
	f := mlp(t)
	modelOwner, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	modelID, err := peer.IDFromPrivateKey(modelOwner)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	c, err := StartCluster(context.Background(), [][]*segment.Shard{{f.shards[0], f.shards[1]}}, WorkerOptions{
		TokenIssuers: []peer.ID{modelID}, CacheDir: t.TempDir(), Log: log.New(logs, "worker: ", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := c.Bootstrap()[0]
	ctx := context.Background()
	oh := ownerHost(t)
	valid, err := IssueToken(modelOwner, oh.ID(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The token goes through its file format.
	path := filepath.Join(t.TempDir(), "owner.token")
	if err := WriteToken(path, valid); err != nil {
		t.Fatal(err)
	}
	if valid, err = ReadToken(path); err != nil {
		t.Fatal(err)
	}
	owner, _ := newOwner(t, oh, StaticProviders(nil, []peer.AddrInfo{w}), f, OwnerOptions{Token: valid})
	infer(t, f, owner)

	issue := func(key crypto.PrivKey, p peer.ID, expires time.Time) *Token {
		tok, err := IssueToken(key, p, expires)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	other := ownerHost(t).ID()
	hour := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		token func(self peer.ID) *Token
		want  string
	}{
		{"expired", func(self peer.ID) *Token { return issue(modelOwner, self, time.Now().Add(-time.Minute)) }, "expired at"},
		{"forged", func(self peer.ID) *Token {
			tok := issue(stranger, self, hour)
			tok.Issuer = modelID.String()
			return tok
		}, "bad signature"},
		{"tampered expiry", func(self peer.ID) *Token {
			tok := issue(modelOwner, self, hour)
			tok.Expires += 365 * 24 * 3600
			return tok
		}, "bad signature"},
		{"other issuer", func(self peer.ID) *Token { return issue(stranger, self, hour) }, "not by a model owner this worker accepts"},
		{"other peer", func(peer.ID) *Token { return issue(modelOwner, other, hour) }, "issued to peer " + other.String()},
		{"no token", func(peer.ID) *Token { return nil }, "is not allowed by this worker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ownerHost(t)
			tok := tc.token(h.ID())
			o, _ := newOwner(t, h, StaticProviders(nil, []peer.AddrInfo{w}), f, OwnerOptions{Token: tok})
			if err := h.Connect(ctx, w); err != nil {
				t.Fatal(err)
			}
			_, err = o.ensureKeys(ctx, w.ID, o.segs[0])
			var we *WorkerError
			if !errors.As(err, &we) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a refusal containing %q", err, tc.want)
			}
			t.Log(err)
			line := "peer " + h.ID().String() + ": refused: "
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), line) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), line) {
				t.Errorf("no log line %q on the worker", line)
			}
		})
	}
}

// TestDecodeTokenRefuses checks the token decoder's refusals.
func TestDecodeTokenRefuses(t *testing.T) {
	key, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	tok, err := IssueToken(key, id, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good, err := EncodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeToken(good, "good"); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"unknown field": strings.Replace(string(good), `"issuer"`, `"plan": "x", "issuer"`, 1),
		"trailing":      string(good) + "{}",
		"bad peer":      strings.Replace(string(good), `"peer": "`, `"peer": "x`, 1),
		"no signature":  `{"issuer": "` + id.String() + `", "peer": "` + id.String() + `", "expires": 1, "signature": null}`,
		"too long":      string(good) + strings.Repeat(" ", MaxTokenBytes),
		"not json":      "CIPHERCUT",
	} {
		if _, err := DecodeToken([]byte(data), name); err == nil || !strings.HasPrefix(err.Error(), name+": ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeToken: DecodeToken and Verify on arbitrary bytes return an
// error or a token, never panic.
func FuzzDecodeToken(f *testing.F) {
	key, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	tok, err := IssueToken(key, id, time.Unix(2e9, 0))
	if err != nil {
		f.Fatal(err)
	}
	good, err := EncodeToken(tok)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"issuer":"","peer":"","expires":0,"signature":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := DecodeToken(data, "fuzz")
		if err != nil {
			return
		}
		tok.Verify([]peer.ID{id}, id, time.Unix(1e9, 0))
	})
}
