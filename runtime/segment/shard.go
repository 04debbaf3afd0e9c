package segment

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// Shard is what a worker serves: one segment of a plan.
type Shard struct {
	// PlanID is the hex SHA-256 of the plan file the segment comes from.
	PlanID    string
	ModelName string
	// Index, Count, Start and End are those of the Segment.
	Index, Count, Start, End int
	// Program is the segment's program.
	Program *ckksir.Program
}

// NewShard wraps a segment of the plan planID.
func NewShard(planID, model string, s *Segment) *Shard {
	return &Shard{PlanID: planID, ModelName: model, Index: s.Index, Count: s.Count, Start: s.Start, End: s.End, Program: s.Program}
}

// shardMagic opens a shard file, followed by the SHA-256 of the payload
// and the payload, gob(Shard).
const shardMagic = "CIPHERCUT-SHARD\x01\n"

// EncodeShard returns the bytes of a shard file.
func EncodeShard(s *Shard) ([]byte, error) { return seal(shardMagic, "shard", s) }

// seal returns magic, the SHA-256 of the payload and the payload, gob(v):
// the layout of shard and data-owner plan files.
func seal(magic, what string, v any) ([]byte, error) {
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(v); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	sum := sha256.Sum256(payload.Bytes())
	out := append([]byte(magic), sum[:]...)
	return append(out, payload.Bytes()...), nil
}

// unseal checks the magic and checksum of a file sealed as a what and
// decodes its payload into v; name heads errors. A corrupt payload that
// makes gob panic is an error too.
func unseal(data []byte, magic, what, name string, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: corrupt %s: %v", name, what, r)
		}
	}()
	if !bytes.HasPrefix(data, []byte(magic)) {
		return fmt.Errorf("%s: not a ciphercut %s (bad magic)", name, what)
	}
	rest := data[len(magic):]
	if len(rest) < sha256.Size {
		return fmt.Errorf("%s: truncated %s", name, what)
	}
	if sum := sha256.Sum256(rest[sha256.Size:]); !bytes.Equal(sum[:], rest[:sha256.Size]) {
		return fmt.Errorf("%s: corrupt %s (checksum mismatch)", name, what)
	}
	if err := gob.NewDecoder(bytes.NewReader(rest[sha256.Size:])).Decode(v); err != nil {
		return fmt.Errorf("%s: corrupt %s: %v", name, what, err)
	}
	return nil
}

// DecodeShard decodes and checks a shard file's bytes; name heads errors.
func DecodeShard(data []byte, name string) (s *Shard, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%s: invalid shard: %v", name, r)
		}
	}()
	s = new(Shard)
	if err := unseal(data, shardMagic, "shard", name, s); err != nil {
		return nil, err
	}
	if s.Program == nil || s.Index < 0 || s.Index >= s.Count || s.Start < 0 || s.End <= s.Start {
		return nil, fmt.Errorf("%s: invalid shard (segment %d of %d, instructions [%d, %d))", name, s.Index, s.Count, s.Start, s.End)
	}
	for i, ins := range s.Program.Instrs {
		for _, m := range ins.Matrices {
			if m == nil {
				return nil, fmt.Errorf("%s: invalid shard: instruction %d has a missing matrix", name, i)
			}
		}
	}
	if err := ckksir.Verify(s.Program); err != nil {
		return nil, fmt.Errorf("%s: invalid shard: %v", name, err)
	}
	return s, nil
}

// ReadShard reads a shard file.
func ReadShard(path string) (*Shard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading shard: %w", err)
	}
	return DecodeShard(data, path)
}

// Manifest lists the segments of a split plan: what a data owner needs,
// beside its plan, to run the pipeline (the cuts) and to check the shards
// (their hashes).
type Manifest struct {
	PlanID string `json:"plan_id"`
	Model  string `json:"model"`
	// Cuts are the instruction indices the program is cut before.
	Cuts   []int           `json:"cuts"`
	Shards []ManifestShard `json:"shards"`
	// Workers, when set, lists per segment index (decimal) the peer ids of
	// the workers the model owner vouches for; Signer is the model owner's
	// peer id and Signature its signature of the manifest (see
	// runtime/remote's SignManifest).
	Workers   map[string][]string `json:"workers,omitempty"`
	Signer    string              `json:"signer,omitempty"`
	Signature []byte              `json:"signature,omitempty"`
}

// ManifestShard is one shard file of a manifest.
type ManifestShard struct {
	Index  int    `json:"index"`
	Start  int    `json:"start"`
	End    int    `json:"end"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// ManifestFile is the manifest's name in a shard directory.
const ManifestFile = "manifest.json"

// WriteShards writes one shard file per segment (shard-<k>.bin) and the
// manifest into dir, creating it.
func WriteShards(dir, planID, model string, segs []*Segment) (*Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &Manifest{PlanID: planID, Model: model}
	for _, s := range segs {
		if s.Index > 0 {
			m.Cuts = append(m.Cuts, s.Start)
		}
		data, err := EncodeShard(NewShard(planID, model, s))
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("shard-%d.bin", s.Index)
		if err := writeAtomic(filepath.Join(dir, name), data); err != nil {
			return nil, err
		}
		m.Shards = append(m.Shards, ManifestShard{Index: s.Index, Start: s.Start, End: s.End, File: name, SHA256: ShardSum(data)})
	}
	return m, WriteManifest(filepath.Join(dir, ManifestFile), m)
}

// WriteManifest writes a manifest file atomically.
func WriteManifest(path string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(data, '\n'))
}

// ReadManifest reads a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &m, nil
}

// writeAtomic writes a file readers may see, atomically.
func writeAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o644) }

// PlanID is the id of a plan file's bytes: their hex SHA-256.
func PlanID(planFile []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(planFile))
}
