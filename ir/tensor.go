// Package ir is ciphercut's tensor-level intermediate representation: a typed
// dataflow graph of values (with shapes, dtypes and optional constant data) and
// nodes (an operator kind with attributes), following ONNX operator semantics.
package ir

import (
	"fmt"
	"strings"
)

// DType is the element type of a tensor value.
type DType uint8

// Element types. Floating values are held as float64 whatever their declared
// width; integer and boolean values are held as int64.
const (
	Undefined DType = iota
	Float32
	Float64
	Float16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
)

var dtypeNames = [...]string{"undefined", "f32", "f64", "f16", "i64", "i32", "i16", "i8", "u8", "bool"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// IsFloat reports whether d is a floating-point type (stored in Tensor.Float).
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 }

// Shape lists a tensor's dimensions, outermost first. A dimension of -1 is not
// known statically (a symbolic or dynamic dimension).
type Shape []int

// Size is the number of elements, or -1 when a dimension is unknown.
func (s Shape) Size() int {
	n := 1
	for _, d := range s {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// Known reports whether every dimension is static.
func (s Shape) Known() bool { return s.Size() >= 0 }

// Equal reports whether two shapes have the same rank and dimensions.
func (s Shape) Equal(t Shape) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s.
func (s Shape) Clone() Shape {
	if s == nil {
		return nil
	}
	return append(Shape{}, s...)
}

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, "x") + "]"
}

// Tensor is a dense, row-major array. Floating data lives in Float, integer
// and boolean data in Int; exactly one of them has Shape.Size() elements.
type Tensor struct {
	DType DType
	Shape Shape
	Float []float64
	Int   []int64
}

// NewFloat returns a float tensor of dtype Float32 with the given shape and
// data (data is used, not copied). A nil data allocates zeros.
func NewFloat(shape Shape, data []float64) *Tensor {
	if data == nil {
		data = make([]float64, shape.Size())
	}
	return &Tensor{DType: Float32, Shape: shape, Float: data}
}

// NewInt returns an Int64 tensor with the given shape and data (data is used,
// not copied). A nil data allocates zeros.
func NewInt(shape Shape, data []int64) *Tensor {
	if data == nil {
		data = make([]int64, shape.Size())
	}
	return &Tensor{DType: Int64, Shape: shape, Int: data}
}

// Len is the number of elements.
func (t *Tensor) Len() int {
	if t.DType.IsFloat() {
		return len(t.Float)
	}
	return len(t.Int)
}

// Floats returns the elements as float64, converting integers.
func (t *Tensor) Floats() []float64 {
	if t.DType.IsFloat() {
		return t.Float
	}
	out := make([]float64, len(t.Int))
	for i, v := range t.Int {
		out[i] = float64(v)
	}
	return out
}

// Ints returns the elements as int64, truncating floats toward zero.
func (t *Tensor) Ints() []int64 {
	if !t.DType.IsFloat() {
		return t.Int
	}
	out := make([]int64, len(t.Float))
	for i, v := range t.Float {
		out[i] = int64(v)
	}
	return out
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{DType: t.DType, Shape: t.Shape.Clone()}
	if t.Float != nil {
		c.Float = append([]float64(nil), t.Float...)
	}
	if t.Int != nil {
		c.Int = append([]int64(nil), t.Int...)
	}
	return c
}

// Validate checks that the data length matches the shape.
func (t *Tensor) Validate() error {
	n := t.Shape.Size()
	if n < 0 {
		return fmt.Errorf("tensor shape %v has unknown dimensions", t.Shape)
	}
	if t.Len() != n {
		return fmt.Errorf("tensor of shape %v holds %d elements, want %d", t.Shape, t.Len(), n)
	}
	return nil
}
