package compiler

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"os"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// PlanFormatVersion is the plan file format this ciphercut writes and reads.
// It changes whenever the Plan struct or the CKKS IR (ckksir.Version)
// changes incompatibly; other versions are refused. Version 2 added split
// plans (Stages, Split); version 3 stores matrix diagonals compactly
// (ckksir.Diagonal).
const PlanFormatVersion = 3

// planMagic opens every plan file.
const planMagic = "CIPHERCUT-PLAN\n"

// planHeaderSize is the size of the header: magic, format version (uint32
// LE), SHA-256 of the payload, payload length (uint64 LE).
const planHeaderSize = len(planMagic) + 4 + sha256.Size + 8

// Plan is a compiled model: what an encrypted run needs, and the plaintext
// reference it is checked against.
type Plan struct {
	// FormatVersion is PlanFormatVersion when written.
	FormatVersion int
	// ModelName and ModelSHA256 (hex, of the ONNX file) identify the model.
	ModelName   string
	ModelSHA256 string
	// Graph is ir.Graph.MarshalBinary of the approximated canonical tensor
	// graph: the plaintext reference the encrypted results are compared
	// with.
	Graph []byte
	// Program is the CKKS program of a plan that encrypts the whole model;
	// nil in a split plan.
	Program *ckksir.Program
	// Stages, in a split plan (compiled with --cut or --client-aided), are
	// run in order (see Stage); nil otherwise.
	Stages []Stage
	// Split records how the split was chosen (the policy, the link and the
	// costed alternatives), for `ciphercut report`; nil when the plan was
	// compiled without a split.
	Split *SplitReport
	// Approximations is a text report of the activation approximations.
	Approximations string
	// Vocab is a language model's vocabulary, token id i being Vocab[i]
	// (from the vocab.json beside the model), for `ciphercut generate`;
	// nil for other models.
	Vocab []string
	// Notes are free-form remarks of the compiler.
	Notes []string
}

// EncodePlan returns the bytes of a plan file holding p: the magic
// "CIPHERCUT-PLAN\n", the format version (uint32 little-endian), the SHA-256
// of the payload, the payload length (uint64 little-endian) and the payload,
// gob(Plan) with FormatVersion set to PlanFormatVersion.
func EncodePlan(p *Plan) ([]byte, error) {
	if p == nil || (p.Program == nil && len(p.Stages) == 0) {
		return nil, errors.New("encoding plan: no program and no stages")
	}
	if p.FormatVersion != 0 && p.FormatVersion != PlanFormatVersion {
		return nil, fmt.Errorf("encoding plan: format v%d, this ciphercut writes v%d", p.FormatVersion, PlanFormatVersion)
	}
	c := *p
	c.FormatVersion = PlanFormatVersion
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(&c); err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	sum := sha256.Sum256(payload.Bytes())
	out := make([]byte, 0, planHeaderSize+payload.Len())
	out = append(out, planMagic...)
	out = binary.LittleEndian.AppendUint32(out, PlanFormatVersion)
	out = append(out, sum[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(payload.Len()))
	return append(out, payload.Bytes()...), nil
}

// WritePlan writes p to path atomically: to a temporary file in the same
// directory, synced to disk, then renamed over path, so that path never
// holds a partly written plan.
func WritePlan(path string, p *Plan) error {
	data, err := EncodePlan(p)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	return nil
}

// ReadPlan reads and checks the plan file at path (see DecodePlan).
func ReadPlan(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	return DecodePlan(data, path)
}

// DecodePlan decodes the bytes of a plan file; name (the file's path) heads
// every error, which says in one line what is wrong: not a plan (bad
// magic), another format version, truncated, corrupt (checksum mismatch or
// undecodable payload), or an invalid program or reference graph
// (ckksir.Verify, ir.UnmarshalGraph).
func DecodePlan(data []byte, name string) (p *Plan, err error) {
	defer func() {
		// The checks below are meant to catch every malformed plan; a panic
		// in a decoder still must not crash the caller.
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%s: corrupt plan: %v", name, r)
		}
	}()
	if len(data) < len(planMagic) || string(data[:len(planMagic)]) != planMagic {
		return nil, fmt.Errorf("%s: not a ciphercut plan (bad magic)", name)
	}
	if len(data) < len(planMagic)+4 {
		return nil, fmt.Errorf("%s: truncated plan (%d bytes, header needs %d)", name, len(data), planHeaderSize)
	}
	if v := binary.LittleEndian.Uint32(data[len(planMagic):]); v != PlanFormatVersion {
		return nil, fmt.Errorf("%s: plan format v%d, this ciphercut reads v%d; recompile the model with `ciphercut compile`", name, v, PlanFormatVersion)
	}
	if len(data) < planHeaderSize {
		return nil, fmt.Errorf("%s: truncated plan (%d bytes, header needs %d)", name, len(data), planHeaderSize)
	}
	sum := data[len(planMagic)+4 : len(planMagic)+4+sha256.Size]
	size := binary.LittleEndian.Uint64(data[planHeaderSize-8:])
	payload := data[planHeaderSize:]
	switch {
	case uint64(len(payload)) < size:
		return nil, fmt.Errorf("%s: truncated plan (%d of %d payload bytes)", name, len(payload), size)
	case uint64(len(payload)) > size:
		return nil, fmt.Errorf("%s: corrupt plan (%d bytes after the payload)", name, uint64(len(payload))-size)
	}
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%s: corrupt plan (checksum mismatch)", name)
	}
	p = new(Plan)
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(p); err != nil {
		return nil, fmt.Errorf("%s: corrupt plan: decoding: %v", name, err)
	}
	if p.FormatVersion != PlanFormatVersion {
		return nil, fmt.Errorf("%s: corrupt plan (payload says format v%d, header v%d)", name, p.FormatVersion, PlanFormatVersion)
	}
	switch {
	case p.Program == nil && len(p.Stages) == 0:
		return nil, fmt.Errorf("%s: invalid plan: no program", name)
	case p.Program != nil && len(p.Stages) > 0:
		return nil, fmt.Errorf("%s: invalid plan: both a program and %d stages", name, len(p.Stages))
	}
	if p.Program != nil {
		if err := verifyProgram(p.Program); err != nil {
			return nil, fmt.Errorf("%s: invalid plan: %v", name, err)
		}
	}
	ref, err := ir.UnmarshalGraph(p.Graph)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid plan: reference graph: %v", name, err)
	}
	if err := verifyStages(p.Stages, ref); err != nil {
		return nil, fmt.Errorf("%s: invalid plan: %v", name, err)
	}
	return p, nil
}

// verifyProgram checks a program read from a plan file.
func verifyProgram(prog *ckksir.Program) error {
	for i, ins := range prog.Instrs {
		for _, m := range ins.Matrices {
			if m == nil {
				return fmt.Errorf("instruction %d has a missing matrix", i)
			}
		}
	}
	return ckksir.Verify(prog)
}
