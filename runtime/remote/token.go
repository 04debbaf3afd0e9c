package remote

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
)

// Token is a model owner's permission for one data owner to use the
// workers that accept the model owner's tokens (WorkerOptions.TokenIssuers,
// `worker --token-issuer`), until it expires: the alternative to listing
// every data owner with --allow. The data owner presents it in the header
// of every request; the worker checks that the Noise-authenticated peer is
// the one the token names, that the issuer is one it accepts, that the
// signature is the issuer's and that the token has not expired.
type Token struct {
	// Issuer is the model owner's peer id (the key that signs its shard
	// manifests); Peer the data owner's.
	Issuer string `json:"issuer"`
	Peer   string `json:"peer"`
	// Expires is the end of validity, in Unix seconds.
	Expires int64 `json:"expires"`
	// Signature is the issuer's Ed25519 signature of the token's other
	// fields (see tokenSignedBytes).
	Signature []byte `json:"signature"`
}

// MaxTokenBytes bounds an encoded token (a file or a header field).
const MaxTokenBytes = 4 << 10

// tokenSigningContext prefixes the signed bytes, so that a token
// signature cannot be replayed as a manifest's or any other libp2p
// signature.
const tokenSigningContext = "ciphercut access token v1\n"

// tokenSignedBytes is what a token's signature covers: the context and the
// token's JSON without its signature.
func tokenSignedBytes(t *Token) ([]byte, error) {
	c := *t
	c.Signature = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(tokenSigningContext), b...), nil
}

// IssueToken signs, with the model owner's key, a token for the data owner
// p valid until expires.
func IssueToken(issuer crypto.PrivKey, p peer.ID, expires time.Time) (*Token, error) {
	id, err := peer.IDFromPrivateKey(issuer)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("token for %q: %w", p, err)
	}
	t := &Token{Issuer: id.String(), Peer: p.String(), Expires: expires.Unix()}
	b, err := tokenSignedBytes(t)
	if err != nil {
		return nil, err
	}
	if t.Signature, err = issuer.Sign(b); err != nil {
		return nil, err
	}
	return t, nil
}

// ExpiresAt is the token's expiry as a time.
func (t *Token) ExpiresAt() time.Time { return time.Unix(t.Expires, 0).UTC() }

// Verify checks the token for the authenticated peer remote at time now:
// issued by one of issuers, for remote, not expired, and signed by its
// issuer. The error says which check failed.
func (t *Token) Verify(issuers []peer.ID, remote peer.ID, now time.Time) error {
	issuer, err := peer.Decode(t.Issuer)
	if err != nil {
		return fmt.Errorf("token with a malformed issuer %q", t.Issuer)
	}
	accepted := false
	for _, i := range issuers {
		accepted = accepted || i == issuer
	}
	if !accepted {
		return fmt.Errorf("token issued by %s, not by a model owner this worker accepts tokens from %v", issuer, issuers)
	}
	if t.Peer != remote.String() {
		return fmt.Errorf("token issued to peer %s, presented by peer %s", t.Peer, remote)
	}
	if !now.Before(t.ExpiresAt()) {
		return fmt.Errorf("token of %s expired at %s", t.Peer, t.ExpiresAt().Format(time.RFC3339))
	}
	pub, err := issuer.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("token issuer %s: %w", issuer, err)
	}
	b, err := tokenSignedBytes(t)
	if err != nil {
		return err
	}
	if ok, err := pub.Verify(b, t.Signature); err != nil || !ok {
		return fmt.Errorf("token of %s: bad signature by %s (forged or altered)", t.Peer, issuer)
	}
	return nil
}

// EncodeToken returns a token file's bytes: its JSON and a newline.
func EncodeToken(t *Token) ([]byte, error) {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeToken parses a token file's bytes strictly (at most MaxTokenBytes,
// one JSON object with exactly the token's fields, valid peer ids, a
// signature); name heads errors. It does not verify the signature: see
// Verify.
func DecodeToken(data []byte, name string) (*Token, error) {
	if len(data) > MaxTokenBytes {
		return nil, fmt.Errorf("%s: %d bytes, a token has at most %d", name, len(data), MaxTokenBytes)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	var t Token
	if err := d.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: not a ciphercut token: %v", name, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%s: not a ciphercut token: trailing data", name)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &t, nil
}

// check validates a token's form: peer ids that decode, a signature.
func (t *Token) check() error {
	if _, err := peer.Decode(t.Issuer); err != nil {
		return fmt.Errorf("token issuer %q: %v", t.Issuer, err)
	}
	if _, err := peer.Decode(t.Peer); err != nil {
		return fmt.Errorf("token peer %q: %v", t.Peer, err)
	}
	if len(t.Signature) == 0 || len(t.Signature) > 1024 {
		return fmt.Errorf("token of %s: missing or oversized signature", t.Peer)
	}
	return nil
}

// WriteToken writes a token file atomically.
func WriteToken(path string, t *Token) error {
	b, err := EncodeToken(t)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

// ReadToken reads a token file.
func ReadToken(path string) (*Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	return DecodeToken(data, path)
}
