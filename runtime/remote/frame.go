package remote

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Frame types. Every stream of the protocol is a sequence of frames:
//
//	uint8 type | uint32 length (little-endian) | length bytes of payload
//
// A header frame opens every request and every reply; key chunks,
// ciphertexts and an end frame follow as the header announces.
const (
	// FrameHeader carries a JSON Header.
	FrameHeader byte = 'H'
	// FrameKeys carries one chunk of serialized evaluation keys.
	FrameKeys byte = 'K'
	// FrameCiphertext carries one serialized ciphertext.
	FrameCiphertext byte = 'C'
	// FrameEnd closes a sequence of key chunks or ciphertexts; empty.
	FrameEnd byte = 'Z'
	// FrameProgress may precede a reply's header: a worker sends one every
	// WorkerOptions.Heartbeat while it builds an evaluator and evaluates,
	// so that the data owner's deadline counts silence rather than work.
	// Its payload is the request's elapsed milliseconds (uint64,
	// little-endian).
	FrameProgress byte = 'P'
)

// progressBytes is a progress frame's payload size.
const progressBytes = 8

// frameHeaderSize is the size of a frame's type and length fields.
const frameHeaderSize = 5

// MaxHeaderBytes bounds a header frame; KeyChunkBytes is the size of the
// key chunks a data owner sends (a worker accepts chunks up to that size).
const (
	MaxHeaderBytes = 64 << 10
	KeyChunkBytes  = 1 << 20
)

// Limits bounds the payload of each frame type a reader accepts; a type
// with no entry (or 0) is refused.
type Limits map[byte]uint32

// ErrTooLarge reports a frame longer than its type's limit.
var ErrTooLarge = errors.New("frame exceeds its size limit")

// frameName names a frame type for messages.
func frameName(t byte) string {
	switch t {
	case FrameHeader:
		return "header"
	case FrameKeys:
		return "key chunk"
	case FrameCiphertext:
		return "ciphertext"
	case FrameEnd:
		return "end"
	case FrameProgress:
		return "progress"
	}
	return fmt.Sprintf("unknown frame type 0x%02x", t)
}

// readFrame reads one frame, refusing a type not in limits or a length over
// its limit before allocating anything for the payload. A clean end of
// stream before the frame starts returns io.EOF; anywhere else
// io.ErrUnexpectedEOF.
func readFrame(r *bufio.Reader, limits Limits) (byte, []byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t, n := hdr[0], binary.LittleEndian.Uint32(hdr[1:])
	max, ok := limits[t]
	if !ok || max == 0 && t != FrameEnd {
		if strings.HasPrefix(frameName(t), "unknown") {
			return t, nil, fmt.Errorf("%s", frameName(t))
		}
		return t, nil, fmt.Errorf("unexpected %s frame", frameName(t))
	}
	if n > max {
		return t, nil, fmt.Errorf("%s frame of %d bytes, the limit is %d: %w", frameName(t), n, max, ErrTooLarge)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("%s frame of %d bytes: %w", frameName(t), n, err)
	}
	return t, payload, nil
}

// writeFrame writes one frame.
func writeFrame(w io.Writer, t byte, payload []byte) error {
	if uint64(len(payload)) > 1<<32-1 {
		return fmt.Errorf("%s frame of %d bytes does not fit a frame", frameName(t), len(payload))
	}
	var hdr [frameHeaderSize]byte
	hdr[0] = t
	binary.LittleEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// Tensor announces the ciphertexts of one named value.
type Tensor struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Header is the JSON payload of a header frame. Requests set Op; replies
// set Status.
type Header struct {
	// Op is "keys" (announce, then upload, evaluation keys) or "eval".
	Op string `json:"op,omitempty"`
	// Plan is the hex SHA-256 of the plan file; Segment the segment index.
	Plan    string `json:"plan,omitempty"`
	Segment int    `json:"segment"`
	// Keys is the hex SHA-256 of the serialized evaluation keys; KeyBytes
	// their size.
	Keys     string `json:"keys,omitempty"`
	KeyBytes int64  `json:"key_bytes,omitempty"`
	// Token, on a request, is the model owner's permission for the data
	// owner, for workers that do not list it with --allow.
	Token *Token `json:"token,omitempty"`
	// Request identifies an evaluation, the same on every worker it is
	// replayed to.
	Request string `json:"request,omitempty"`
	// Inputs (request) and Outputs (reply) announce the ciphertext frames
	// that follow, in order.
	Inputs  []Tensor `json:"inputs,omitempty"`
	Outputs []Tensor `json:"outputs,omitempty"`

	// Status is "have" (keys cached), "send" (upload them), "ready",
	// "ok" (outputs follow) or "error".
	Status string `json:"status,omitempty"`
	// Error explains a refusal.
	Error string `json:"error,omitempty"`
	// EvalMillis is the worker's evaluation time.
	EvalMillis int64 `json:"eval_ms,omitempty"`
}

// decodeHeader parses a header payload strictly: unknown fields and
// trailing data are errors.
func decodeHeader(payload []byte) (*Header, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	var h Header
	if err := d.Decode(&h); err != nil {
		return nil, fmt.Errorf("malformed header: %v", err)
	}
	if d.More() {
		return nil, fmt.Errorf("malformed header: trailing data")
	}
	return &h, nil
}

// readHeader reads a frame that must be a header.
func readHeader(r *bufio.Reader) (*Header, error) {
	_, payload, err := readFrame(r, Limits{FrameHeader: MaxHeaderBytes})
	if err != nil {
		return nil, err
	}
	return decodeHeader(payload)
}

// skipProgress reads the progress frames at the head of r, if any (a
// reply's reader then reports whatever else is wrong).
func skipProgress(r *bufio.Reader) error {
	for {
		b, err := r.Peek(1)
		if err != nil || b[0] != FrameProgress {
			return nil
		}
		if _, _, err := readFrame(r, Limits{FrameProgress: progressBytes}); err != nil {
			return err
		}
	}
}

// writeHeader writes a header frame.
func writeHeader(w io.Writer, h *Header) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return writeFrame(w, FrameHeader, b)
}
