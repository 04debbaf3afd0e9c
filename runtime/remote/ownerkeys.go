package remote

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// SecretKeyFile is the data owner's secret key in its key directory
// (OwnerOptions.KeyDir, `run --keys DIR`), mode 0600.
const SecretKeyFile = "secret.key"

// ownerClient returns the data owner's client on the plan's interface:
// with no key directory a fresh secret key; else the one in
// dir/secret.key, drawn and written there (mode 0600, atomically) on first
// use. loaded reports whether it was read. A key file others can read is
// refused.
func ownerClient(dir string, op *segment.OwnerPlan) (c *ckks.Client, fingerprint string, loaded bool, err error) {
	if dir == "" {
		c, err = ckks.NewInterfaceClient(op.Program, &ckks.KeyNeeds{})
		return c, "", false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", false, fmt.Errorf("key directory: %w", err)
	}
	path := filepath.Join(dir, SecretKeyFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if c, err = ckks.NewInterfaceClient(op.Program, &ckks.KeyNeeds{}); err != nil {
			return nil, "", false, err
		}
		var buf bytes.Buffer
		if err := c.WriteSecretKey(&buf); err != nil {
			return nil, "", false, err
		}
		if err := atomicfile.Write(path, buf.Bytes(), 0o600); err != nil {
			return nil, "", false, err
		}
		data = buf.Bytes()
	case err != nil:
		return nil, "", false, fmt.Errorf("secret key: %w", err)
	default:
		info, err := os.Stat(path)
		if err != nil {
			return nil, "", false, err
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, "", false, fmt.Errorf("%s: the secret key is readable by others (mode %04o); chmod 600 it", path, info.Mode().Perm())
		}
		if c, err = ckks.NewInterfaceClientWithSecretKey(op.Program, &ckks.KeyNeeds{}, data); err != nil {
			return nil, "", false, fmt.Errorf("%s: %w", path, err)
		}
		loaded = true
	}
	// The evaluation key files carry the key file's fingerprint, so that a
	// new secret key never pairs with the keys of an old one.
	sum := sha256.Sum256(data)
	return c, hex.EncodeToString(sum[:8]), loaded, nil
}

// segmentKeys returns the segment's evaluation keys, the path of their
// file (empty without a key directory), the hex SHA-256 of their
// serialization and its size: generated with sc, or, with a key
// directory, read from dir/evk-<fingerprint>-<plan>-<index>.bin where an
// earlier run wrote them (validated against the segment's key needs), so
// that workers holding them in their caches need no upload. loaded
// reports whether they were read.
func segmentKeys(dir, fingerprint, planID string, index int, sc *ckks.Client, progress func(done, total int)) (evk *ckks.EvaluationKeys, path, hash string, size int64, loaded bool, err error) {
	if dir != "" {
		plan := planID
		if len(plan) > 16 {
			plan = plan[:16]
		}
		path = filepath.Join(dir, fmt.Sprintf("evk-%s-%s-%d.bin", fingerprint, plan, index))
		if data, release, err := mapFile(path); err == nil {
			sum := sha256.Sum256(data)
			evk, err := sc.UnmarshalEvaluationKeys(data)
			release() // the decoded keys do not alias the mapped bytes
			if err != nil {
				return nil, "", "", 0, false, fmt.Errorf("%s: %w (delete it to generate the keys again)", path, err)
			}
			return evk, path, hex.EncodeToString(sum[:]), int64(len(data)), true, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", "", 0, false, err
		}
	}
	if evk, err = sc.EvaluationKeys(progress); err != nil {
		return nil, "", "", 0, false, err
	}
	h := sha256.New()
	if path == "" {
		size, err = evk.WriteTo(h)
		return evk, "", hex.EncodeToString(h.Sum(nil)), size, false, err
	}
	size, err = atomicfile.WriteStream(path, 0o600, func(w io.Writer) (int64, error) { return evk.WriteTo(io.MultiWriter(w, h)) })
	return evk, path, hex.EncodeToString(h.Sum(nil)), size, false, err
}

// holdersFile, in a key directory, lists the workers that held the data
// owner's evaluation keys: peer id to key hashes.
const holdersFile = "workers.json"

// loadHolders reads the key directory's holders file; a missing file is
// an empty list, an unreadable one is logged and ignored (it only orders
// the providers tried).
func loadHolders(dir string, lg *log.Logger) map[peer.ID]map[string]bool {
	out := map[peer.ID]map[string]bool{}
	if dir == "" {
		return out
	}
	path := filepath.Join(dir, holdersFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	var list map[string][]string
	if err == nil {
		err = json.Unmarshal(data, &list)
	}
	if err != nil {
		lg.Printf("%s: %v; ignoring it (it only tells which workers hold the keys)", path, err)
		return out
	}
	for p, hashes := range list {
		id, err := peer.Decode(p)
		if err != nil {
			lg.Printf("%s: peer %q: %v; ignoring it", path, p, err)
			continue
		}
		out[id] = map[string]bool{}
		for _, h := range hashes {
			if validHash(h) {
				out[id][h] = true
			}
		}
	}
	return out
}

// saveHolders writes the holders file of the key directory, if any;
// o.mu must be held. A failure is logged: the file is a hint.
func (o *Owner) saveHolders() {
	if o.opts.KeyDir == "" {
		return
	}
	list := map[string][]string{}
	for p, hashes := range o.holders {
		for h, ok := range hashes {
			if ok {
				list[p.String()] = append(list[p.String()], h)
			}
		}
		slices.Sort(list[p.String()])
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err == nil {
		err = atomicfile.Write(filepath.Join(o.opts.KeyDir, holdersFile), append(data, '\n'), 0o600)
	}
	if err != nil {
		o.log.Printf("saving the workers holding the keys: %v", err)
	}
}
