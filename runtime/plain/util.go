package plain

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
)

// unsupported reports an attribute variant a kernel does not implement;
// EvalNode fills in the node, op and opset.
func unsupported(format string, args ...any) error {
	return &ir.UnsupportedError{Reason: fmt.Sprintf(format, args...)}
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	a := int(axis)
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return a, nil
}

// strides returns row-major element strides of shape.
func strides(shape ir.Shape) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// broadcastShape is the NumPy multidirectional broadcast of the shapes.
func broadcastShape(shapes ...ir.Shape) (ir.Shape, error) {
	rank := 0
	for _, s := range shapes {
		if len(s) > rank {
			rank = len(s)
		}
	}
	out := make(ir.Shape, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			switch {
			case d == out[off+i] || d == 1:
			case out[off+i] == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("shapes %v cannot be broadcast together", shapes)
			}
		}
	}
	return out, nil
}

// broadcastIndex returns, for every element of out (row-major), the flat index
// of the corresponding element of a tensor of shape in broadcast to out.
func broadcastIndex(in, out ir.Shape) []int {
	n := out.Size()
	idx := make([]int, n)
	rank := len(out)
	off := rank - len(in)
	inStr := strides(in)
	// Effective stride per output axis: 0 where the input is broadcast.
	eff := make([]int, rank)
	for i := 0; i < len(in); i++ {
		if in[i] != 1 {
			eff[off+i] = inStr[i]
		}
	}
	counter := make([]int, rank)
	pos := 0
	for k := 0; k < n; k++ {
		idx[k] = pos
		for a := rank - 1; a >= 0; a-- {
			counter[a]++
			pos += eff[a]
			if counter[a] < out[a] {
				break
			}
			pos -= eff[a] * counter[a]
			counter[a] = 0
		}
	}
	return idx
}

// floatLike returns a new float tensor with t's float dtype and the given shape.
func floatLike(t *ir.Tensor, shape ir.Shape) *ir.Tensor {
	d := t.DType
	if !d.IsFloat() {
		d = ir.Float32
	}
	return &ir.Tensor{DType: d, Shape: shape, Float: make([]float64, shape.Size())}
}

// presentInputs drops omitted (nil) inputs of a variadic op and requires at
// least one.
func presentInputs(in []*ir.Tensor) ([]*ir.Tensor, error) {
	var ts []*ir.Tensor
	for _, t := range in {
		if t != nil {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("needs at least one input")
	}
	return ts, nil
}

// optionalInput returns input i, or nil when it is absent or omitted.
func optionalInput(in []*ir.Tensor, i int) *ir.Tensor {
	if i < len(in) {
		return in[i]
	}
	return nil
}

// BroadcastIndex returns, for every element of a tensor of shape out
// (row-major), the flat index of the element of a tensor of shape in that
// NumPy broadcasting maps onto it (the index map of Expand and of the
// elementwise kernels).
func BroadcastIndex(in, out ir.Shape) []int { return broadcastIndex(in, out) }
