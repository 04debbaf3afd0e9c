package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// KeyCache stores serialized evaluation keys on disk, content-addressed by
// their SHA-256 (file <hex>.evk), within a byte quota: storing a key set
// evicts the least recently used others until the total fits, and fits on
// the disk. A data owner that comes back with the same keys skips the
// upload.
type KeyCache struct {
	dir   string
	quota int64
	mu    sync.Mutex
	// free is the disk space left in dir (-1: unknown); tests replace it.
	free func(dir string) int64
}

// NewKeyCache opens (creating it) the cache directory dir with a quota in
// bytes.
func NewKeyCache(dir string, quota int64) (*KeyCache, error) {
	if quota <= 0 {
		return nil, fmt.Errorf("key cache %s: quota %d bytes", dir, quota)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key cache: %w", err)
	}
	return &KeyCache{dir: dir, quota: quota, free: diskFree}, nil
}

// validHash reports whether s is a lowercase hex SHA-256.
func validHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func (c *KeyCache) path(hash string) string { return filepath.Join(c.dir, hash+".evk") }

// Has reports whether the keys of that hash are cached, marking them used.
func (c *KeyCache) Has(hash string) bool {
	if !validHash(hash) {
		return false
	}
	now := time.Now()
	return os.Chtimes(c.path(hash), now, now) == nil
}

// Map returns the cached keys of that hash, memory-mapped read-only where
// the system allows it, marking them used; call release when done with
// the bytes.
func (c *KeyCache) Map(hash string) (data []byte, release func(), err error) {
	if !validHash(hash) {
		return nil, nil, fmt.Errorf("key cache: %q is not a SHA-256", hash)
	}
	c.Has(hash)
	return mapFile(c.path(hash))
}

// Store copies exactly size bytes from r into the cache under hash,
// checking the SHA-256 as it goes; the keys become visible only when
// complete and matching. It refuses a size over the quota and evicts least
// recently used entries to make room.
func (c *KeyCache) Store(hash string, size int64, r io.Reader) error {
	if !validHash(hash) {
		return fmt.Errorf("key cache: %q is not a SHA-256", hash)
	}
	if err := c.MakeRoom(size, hash); err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".upload-*")
	if err != nil {
		return fmt.Errorf("key cache: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("key cache: receiving keys: %w", err)
	}
	if n != size {
		return fmt.Errorf("key cache: received %d bytes of keys, announced %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hash {
		return fmt.Errorf("key cache: the keys received hash to %s, announced %s", got, hash)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.evict(size, hash, false); err != nil { // within the quota beside uploads that ran alongside
		return err
	}
	if err := os.Rename(tmp, c.path(hash)); err != nil {
		return fmt.Errorf("key cache: %w", err)
	}
	return nil
}

// Remove drops the keys of that hash (keys that failed validation).
func (c *KeyCache) Remove(hash string) {
	if validHash(hash) {
		os.Remove(c.path(hash))
	}
}

// MakeRoom evicts the least recently used entries (other than keep) until
// size more bytes fit within the quota and on the disk, before an upload
// starts; it fails, naming the space needed, when they cannot (a size over
// the quota among them).
func (c *KeyCache) MakeRoom(size int64, keep string) error {
	if size <= 0 || size > c.quota {
		return fmt.Errorf("key cache: %d bytes of keys, the cache quota is %d (this worker caches at most that)", size, c.quota)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evict(size, keep, true)
}

// evict removes the least recently used entries (other than keep) until
// room more bytes fit in the quota and, with disk, on the disk. Called with
// mu held.
func (c *KeyCache) evict(room int64, keep string, disk bool) error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("key cache: %w", err)
	}
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var all []entry
	total := int64(0)
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".evk") || strings.TrimSuffix(name, ".evk") == keep {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, entry{filepath.Join(c.dir, name), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	onDisk := func() bool {
		free := c.free(c.dir)
		return !disk || free < 0 || free >= room
	}
	if free := c.free(c.dir); disk && free >= 0 && free+total < room {
		// Evicting every other entry would not make room: keep them.
		return fmt.Errorf("key cache %s: %d bytes of keys do not fit on its disk: %d bytes free, %d more in other cached keys",
			c.dir, room, free, total)
	}
	for _, e := range all {
		if total+room <= c.quota && onDisk() {
			break
		}
		if err := os.Remove(e.path); err != nil {
			return fmt.Errorf("key cache: evicting %s: %w", e.path, err)
		}
		total -= e.size
	}
	if !onDisk() { // evicted files still open elsewhere keep their space
		return fmt.Errorf("key cache %s: %d bytes of keys do not fit on its disk: %d bytes free with no other keys cached",
			c.dir, room, c.free(c.dir))
	}
	return nil
}

// Size is the total size of the cached keys.
func (c *KeyCache) Size() int64 {
	ents, _ := os.ReadDir(c.dir)
	total := int64(0)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".evk") {
			total += info.Size()
		}
	}
	return total
}
