// Package npy reads and writes tensors as NumPy .npy files. Reading goes
// through codeberg.org/sbinet/npyio (every dtype NumPy writes for real and
// integer data, either byte order); writing emits format 1.0 headers with
// little-endian float32, float64 or int64 data.
package npy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"codeberg.org/sbinet/npyio/npy"

	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/ir"
)

// maxElements bounds the size a header may claim, so that a corrupt file
// cannot make the reader allocate without limit.
const maxElements = 1 << 30

// Read loads a .npy file. Errors name the file.
func Read(path string) (*ir.Tensor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Decode parses one .npy array held in data. The header's claims are checked
// against len(data) before anything is allocated for them.
func Decode(data []byte) (t *ir.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("malformed .npy data: %v", p)
		}
	}()
	if err := checkHeaderLength(data); err != nil {
		return nil, err
	}
	rd, err := npy.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a valid .npy file: %w", err)
	}
	h := rd.Header
	if h.Descr.Fortran {
		return nil, fmt.Errorf("Fortran-ordered arrays are not supported; save with np.ascontiguousarray")
	}
	shape := ir.Shape(append([]int{}, h.Descr.Shape...))
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return nil, fmt.Errorf("implausible array shape %v", h.Descr.Shape)
		}
		n *= d
	}
	if n > len(data) {
		// Every supported dtype takes at least one byte per element.
		return nil, fmt.Errorf("header claims %d elements but the file holds %d bytes", n, len(data))
	}
	typ := strings.TrimLeft(strings.Trim(h.Descr.Type, "'\""), "<>|=")
	switch typ {
	case "f4":
		var data []float32
		if err := rd.Read(&data); err != nil {
			return nil, fmt.Errorf("reading float32 data: %w", err)
		}
		out := make([]float64, len(data))
		for i, v := range data {
			out[i] = float64(v)
		}
		return check(&ir.Tensor{DType: ir.Float32, Shape: shape, Float: out})
	case "f8":
		var data []float64
		if err := rd.Read(&data); err != nil {
			return nil, fmt.Errorf("reading float64 data: %w", err)
		}
		return check(&ir.Tensor{DType: ir.Float64, Shape: shape, Float: data})
	case "i8":
		var data []int64
		if err := rd.Read(&data); err != nil {
			return nil, fmt.Errorf("reading int64 data: %w", err)
		}
		return check(&ir.Tensor{DType: ir.Int64, Shape: shape, Int: data})
	case "i4":
		var data []int32
		if err := rd.Read(&data); err != nil {
			return nil, fmt.Errorf("reading int32 data: %w", err)
		}
		out := make([]int64, len(data))
		for i, v := range data {
			out[i] = int64(v)
		}
		return check(&ir.Tensor{DType: ir.Int32, Shape: shape, Int: out})
	case "u1", "b1":
		var data []uint8
		if typ == "b1" {
			var b []bool
			if err := rd.Read(&b); err != nil {
				return nil, fmt.Errorf("reading bool data: %w", err)
			}
			data = make([]uint8, len(b))
			for i, v := range b {
				if v {
					data[i] = 1
				}
			}
		} else if err := rd.Read(&data); err != nil {
			return nil, fmt.Errorf("reading uint8 data: %w", err)
		}
		out := make([]int64, len(data))
		for i, v := range data {
			out[i] = int64(v)
		}
		d := ir.Uint8
		if typ == "b1" {
			d = ir.Bool
		}
		return check(&ir.Tensor{DType: d, Shape: shape, Int: out})
	}
	return nil, fmt.Errorf("unsupported .npy dtype %q (want float32, float64, int64, int32, uint8 or bool)", h.Descr.Type)
}

// checkHeaderLength validates the magic string and that the declared header
// fits inside data (format versions 1 to 3).
func checkHeaderLength(data []byte) error {
	if len(data) < 10 || string(data[:6]) != "\x93NUMPY" {
		return fmt.Errorf("not a valid .npy file: missing NUMPY magic")
	}
	var hlen, start int
	switch data[6] {
	case 1:
		hlen, start = int(binary.LittleEndian.Uint16(data[8:10])), 10
	case 2, 3:
		if len(data) < 12 {
			return fmt.Errorf("not a valid .npy file: truncated header")
		}
		hlen, start = int(binary.LittleEndian.Uint32(data[8:12])), 12
	default:
		return fmt.Errorf("unsupported .npy format version %d", data[6])
	}
	if hlen > len(data)-start {
		return fmt.Errorf("not a valid .npy file: header of %d bytes in a %d-byte file", hlen, len(data))
	}
	return nil
}

func check(t *ir.Tensor) (*ir.Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Write stores t as a .npy file atomically (a temporary file in the same
// folder, renamed into place). Float32 tensors are written as float32, other
// float tensors as float64, integer and bool tensors as int64.
func Write(path string, t *ir.Tensor) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, t); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, buf.Bytes(), 0o644)
}

// Encode writes t in .npy format 1.0.
func Encode(w io.Writer, t *ir.Tensor) error {
	var descr string
	var data []byte
	switch {
	case t.DType == ir.Float32:
		descr = "<f4"
		data = make([]byte, 4*len(t.Float))
		for i, v := range t.Float {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(v)))
		}
	case t.DType.IsFloat():
		descr = "<f8"
		data = make([]byte, 8*len(t.Float))
		for i, v := range t.Float {
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(v))
		}
	default:
		descr = "<i8"
		data = make([]byte, 8*len(t.Int))
		for i, v := range t.Int {
			binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
		}
	}
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = fmt.Sprint(d)
	}
	shape := strings.Join(dims, ", ")
	if len(dims) == 1 {
		shape += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape)
	// Magic (6) + version (2) + header length (2) + header + newline, padded
	// with spaces to a multiple of 64 bytes.
	pad := 64 - (10+len(header)+1)%64
	if pad == 64 {
		pad = 0
	}
	header += strings.Repeat(" ", pad) + "\n"
	prefix := []byte("\x93NUMPY\x01\x00")
	prefix = binary.LittleEndian.AppendUint16(prefix, uint16(len(header)))
	for _, part := range [][]byte{prefix, []byte(header), data} {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return nil
}
