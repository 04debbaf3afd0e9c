// Elementwise kernels: broadcast arithmetic (Add, Sub, Mul, Div, Pow), unary
// math (Sqrt, Neg, Abs, Exp, Reciprocal, Erf), variadic Sum/Min/Max, Clip,
// Equal and Where. Float tensors are computed in float64 and keep their float
// dtype; integer tensors are computed in int64 and wrapped to their declared
// width (so UINT8 arithmetic wraps as in NumPy and ONNX Runtime).

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Add", binaryKernel(
		func(a, b float64) float64 { return a + b },
		func(a, b int64) (int64, bool) { return a + b, true }))
	register("Sub", binaryKernel(
		func(a, b float64) float64 { return a - b },
		func(a, b int64) (int64, bool) { return a - b, true }))
	register("Mul", binaryKernel(
		func(a, b float64) float64 { return a * b },
		func(a, b int64) (int64, bool) { return a * b, true }))
	register("Div", binaryKernel(
		func(a, b float64) float64 { return a / b },
		func(a, b int64) (int64, bool) {
			if b == 0 {
				return 0, false
			}
			return a / b, true // truncation toward zero, as in C
		}))
	register("Pow", kernelPow)

	register("Sqrt", unaryFloatKernel(math.Sqrt))
	register("Exp", unaryFloatKernel(math.Exp))
	register("Erf", unaryFloatKernel(math.Erf))
	register("Reciprocal", unaryFloatKernel(func(x float64) float64 { return 1 / x }))
	register("Neg", unaryKernel(
		func(x float64) float64 { return -x },
		func(x int64) int64 { return -x }))
	register("Abs", unaryKernel(math.Abs, func(x int64) int64 {
		if x < 0 {
			return -x
		}
		return x
	}))

	register("Sum", variadicKernel(
		func(a, b float64) float64 { return a + b },
		func(a, b int64) int64 { return a + b }))
	register("Min", variadicKernel(
		func(a, b float64) float64 {
			if math.IsNaN(a) || math.IsNaN(b) {
				return math.NaN()
			}
			return math.Min(a, b)
		},
		func(a, b int64) int64 { return min(a, b) }))
	register("Max", variadicKernel(
		func(a, b float64) float64 {
			if math.IsNaN(a) || math.IsNaN(b) {
				return math.NaN()
			}
			return math.Max(a, b)
		},
		func(a, b int64) int64 { return max(a, b) }))

	register("Clip", kernelClip)
	register("Equal", kernelEqual)
	register("Where", kernelWhere)
}

// wrapInt reduces v to the range of the integer dtype d, with two's-complement
// wrap-around; Bool becomes 0 or 1.
func wrapInt(d ir.DType, v int64) int64 {
	switch d {
	case ir.Int32:
		return int64(int32(v))
	case ir.Int16:
		return int64(int16(v))
	case ir.Int8:
		return int64(int8(v))
	case ir.Uint8:
		return int64(uint8(v))
	case ir.Bool:
		if v != 0 {
			return 1
		}
		return 0
	}
	return v
}

// wrapInts applies wrapInt to every element of s in place.
func wrapInts(d ir.DType, s []int64) {
	if d == ir.Int64 {
		return
	}
	for i, v := range s {
		s[i] = wrapInt(d, v)
	}
}

// needInputs checks that the first k inputs are present.
func needInputs(in []*ir.Tensor, k int) error {
	if len(in) < k {
		return fmt.Errorf("got %d inputs, want at least %d", len(in), k)
	}
	for i := 0; i < k; i++ {
		if in[i] == nil {
			return fmt.Errorf("required input %d is missing", i)
		}
	}
	return nil
}

// bcastPlan broadcasts the shapes of ts together and returns the output
// shape and, per tensor, the index map from output elements to its elements
// (nil where the tensor already has the output shape).
func bcastPlan(ts ...*ir.Tensor) (ir.Shape, [][]int, error) {
	shapes := make([]ir.Shape, len(ts))
	for i, t := range ts {
		shapes[i] = t.Shape
	}
	out, err := broadcastShape(shapes...)
	if err != nil {
		return nil, nil, err
	}
	idx := make([][]int, len(ts))
	for i, t := range ts {
		if !t.Shape.Equal(out) {
			idx[i] = bcastIndexFast(t.Shape, out)
		}
	}
	return out, idx, nil
}

// bcastIndexFast is broadcastIndex with shortcuts for the common cases of a
// single element and of a shape that is a suffix of out (a bias vector).
func bcastIndexFast(in, out ir.Shape) []int {
	m, n := in.Size(), out.Size()
	if m == 1 {
		return make([]int, n)
	}
	suffix := len(in) <= len(out)
	for i, lead := 0, true; suffix && i < len(in); i++ {
		d := in[i]
		if lead && d == 1 {
			continue
		}
		lead = false
		suffix = d == out[len(out)-len(in)+i]
	}
	if !suffix || m == 0 {
		return broadcastIndex(in, out)
	}
	idx := make([]int, n)
	for base := 0; base < n; base += m {
		for j := 0; j < m; j++ {
			idx[base+j] = j
		}
	}
	return idx
}

// bcAt maps output element k through an optional index map.
func bcAt(idx []int, k int) int {
	if idx == nil {
		return k
	}
	return idx[k]
}

// floatDType picks the float dtype of the result of an op on a and b.
func floatDType(ts ...*ir.Tensor) ir.DType {
	for _, t := range ts {
		if t.DType.IsFloat() {
			return t.DType
		}
	}
	return ir.Float32
}

// binaryKernel builds a broadcasting two-input kernel. fi returns false on an
// integer error (division by zero).
func binaryKernel(ff func(a, b float64) float64, fi func(a, b int64) (int64, bool)) Kernel {
	return func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		if err := needInputs(in, 2); err != nil {
			return nil, err
		}
		a, b := in[0], in[1]
		shape, idx, err := bcastPlan(a, b)
		if err != nil {
			return nil, err
		}
		size := shape.Size()
		ia, ib := idx[0], idx[1]
		if !a.DType.IsFloat() && !b.DType.IsFloat() {
			d := a.DType
			if d == ir.Bool && b.DType != ir.Bool {
				d = b.DType
			}
			out := &ir.Tensor{DType: d, Shape: shape, Int: make([]int64, size)}
			for k := range out.Int {
				v, ok := fi(a.Int[bcAt(ia, k)], b.Int[bcAt(ib, k)])
				if !ok {
					return nil, fmt.Errorf("integer division by zero")
				}
				out.Int[k] = v
			}
			wrapInts(d, out.Int)
			return []*ir.Tensor{out}, nil
		}
		af, bf := a.Floats(), b.Floats()
		out := &ir.Tensor{DType: floatDType(a, b), Shape: shape, Float: make([]float64, size)}
		switch {
		case ia == nil && ib == nil:
			for k := range out.Float {
				out.Float[k] = ff(af[k], bf[k])
			}
		default:
			for k := range out.Float {
				out.Float[k] = ff(af[bcAt(ia, k)], bf[bcAt(ib, k)])
			}
		}
		return []*ir.Tensor{out}, nil
	}
}

// intPow is base**exp for a non-negative integer exponent, wrapping on
// overflow like fixed-width integer arithmetic.
func intPow(base, exp int64) int64 {
	r := int64(1)
	for exp > 0 {
		if exp&1 == 1 {
			r *= base
		}
		base *= base
		exp >>= 1
	}
	return r
}

// floatToInt converts a float to an integer of dtype d, truncating toward
// zero; NaN becomes 0 and values beyond int64 saturate before wrapping.
func floatToInt(d ir.DType, x float64) int64 {
	switch {
	case math.IsNaN(x):
		return 0
	case x >= 9.223372036854775807e18:
		return wrapInt(d, math.MaxInt64)
	case x <= -9.223372036854775808e18:
		return wrapInt(d, math.MinInt64)
	}
	return wrapInt(d, int64(x))
}

// kernelPow is ONNX Pow: the result has the base's type. Integer bases with
// float exponents are computed in float64 and truncated, as NumPy's
// pow(...).astype(int) in the ONNX reference does.
func kernelPow(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	shape, idx, err := bcastPlan(a, b)
	if err != nil {
		return nil, err
	}
	size := shape.Size()
	ia, ib := idx[0], idx[1]
	if a.DType.IsFloat() {
		bf := b.Floats()
		out := &ir.Tensor{DType: a.DType, Shape: shape, Float: make([]float64, size)}
		for k := range out.Float {
			out.Float[k] = math.Pow(a.Float[bcAt(ia, k)], bf[bcAt(ib, k)])
		}
		return []*ir.Tensor{out}, nil
	}
	out := &ir.Tensor{DType: a.DType, Shape: shape, Int: make([]int64, size)}
	if b.DType.IsFloat() {
		for k := range out.Int {
			out.Int[k] = floatToInt(a.DType, math.Pow(float64(a.Int[bcAt(ia, k)]), b.Float[bcAt(ib, k)]))
		}
		return []*ir.Tensor{out}, nil
	}
	for k := range out.Int {
		base, e := a.Int[bcAt(ia, k)], b.Int[bcAt(ib, k)]
		if e < 0 {
			out.Int[k] = floatToInt(a.DType, math.Pow(float64(base), float64(e)))
			continue
		}
		out.Int[k] = intPow(base, e)
	}
	wrapInts(a.DType, out.Int)
	return []*ir.Tensor{out}, nil
}

// mapFloat applies f to every element of a float tensor (integers are
// converted), keeping a float dtype.
func mapFloat(t *ir.Tensor, f func(float64) float64) *ir.Tensor {
	src := t.Floats()
	out := floatLike(t, t.Shape.Clone())
	for i, v := range src {
		out.Float[i] = f(v)
	}
	return out
}

// unaryFloatKernel builds a one-input kernel for a float function.
func unaryFloatKernel(f func(float64) float64) Kernel {
	return func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		if err := needInputs(in, 1); err != nil {
			return nil, err
		}
		return []*ir.Tensor{mapFloat(in[0], f)}, nil
	}
}

// unaryKernel builds a one-input kernel that also works on integer tensors.
func unaryKernel(ff func(float64) float64, fi func(int64) int64) Kernel {
	return func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		if err := needInputs(in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if x.DType.IsFloat() {
			return []*ir.Tensor{mapFloat(x, ff)}, nil
		}
		out := &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Int: make([]int64, len(x.Int))}
		for i, v := range x.Int {
			out.Int[i] = fi(v)
		}
		wrapInts(x.DType, out.Int)
		return []*ir.Tensor{out}, nil
	}
}

// variadicKernel builds Sum/Min/Max: a fold over any number of broadcast
// inputs.
func variadicKernel(ff func(a, b float64) float64, fi func(a, b int64) int64) Kernel {
	return func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		ts, err := presentInputs(in)
		if err != nil {
			return nil, err
		}
		shape, idx, err := bcastPlan(ts...)
		if err != nil {
			return nil, err
		}
		size := shape.Size()
		allInt := true
		for _, t := range ts {
			if t.DType.IsFloat() {
				allInt = false
			}
		}
		if allInt {
			d := ts[0].DType
			out := &ir.Tensor{DType: d, Shape: shape, Int: make([]int64, size)}
			for k := range out.Int {
				out.Int[k] = ts[0].Int[bcAt(idx[0], k)]
			}
			for j := 1; j < len(ts); j++ {
				src, ij := ts[j].Int, idx[j]
				for k := range out.Int {
					out.Int[k] = fi(out.Int[k], src[bcAt(ij, k)])
				}
			}
			wrapInts(d, out.Int)
			return []*ir.Tensor{out}, nil
		}
		out := &ir.Tensor{DType: floatDType(ts...), Shape: shape, Float: make([]float64, size)}
		first := ts[0].Floats()
		for k := range out.Float {
			out.Float[k] = first[bcAt(idx[0], k)]
		}
		for j := 1; j < len(ts); j++ {
			src, ij := ts[j].Floats(), idx[j]
			for k := range out.Float {
				out.Float[k] = ff(out.Float[k], src[bcAt(ij, k)])
			}
		}
		return []*ir.Tensor{out}, nil
	}
}

// scalarOf returns the single element of t as float64 and int64; t must
// hold exactly one element.
func scalarOf(t *ir.Tensor, what string) (float64, int64, error) {
	if t.Len() != 1 {
		return 0, 0, fmt.Errorf("%s must hold one element, got shape %v", what, t.Shape)
	}
	if t.DType.IsFloat() {
		return t.Float[0], floatToInt(ir.Int64, t.Float[0]), nil
	}
	return float64(t.Int[0]), t.Int[0], nil
}

// intRange returns the smallest and largest values of an integer dtype.
func intRange(d ir.DType) (int64, int64) {
	switch d {
	case ir.Int32:
		return math.MinInt32, math.MaxInt32
	case ir.Int16:
		return math.MinInt16, math.MaxInt16
	case ir.Int8:
		return math.MinInt8, math.MaxInt8
	case ir.Uint8:
		return 0, math.MaxUint8
	case ir.Bool:
		return 0, 1
	}
	return math.MinInt64, math.MaxInt64
}

// kernelClip is ONNX Clip: min and max are attributes before opset 11 and
// optional scalar inputs from opset 11.
func kernelClip(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	// From opset 11 the bounds are optional scalar inputs.
	minIn, maxIn := optionalInput(in, 1), optionalInput(in, 2)
	var minF, maxF float64
	var minI, maxI int64
	var err error
	if minIn != nil {
		if minF, minI, err = scalarOf(minIn, "Clip min"); err != nil {
			return nil, err
		}
	}
	if maxIn != nil {
		if maxF, maxI, err = scalarOf(maxIn, "Clip max"); err != nil {
			return nil, err
		}
	}
	if x.DType.IsFloat() {
		lo, hi := math.Inf(-1), math.Inf(1)
		if opset < 11 {
			lo = n.Attrs.Float("min", lo)
			hi = n.Attrs.Float("max", hi)
		}
		if minIn != nil {
			lo = minF
		}
		if maxIn != nil {
			hi = maxF
		}
		// ONNX: y = min(max(x, lo), hi), so hi wins when lo > hi.
		return []*ir.Tensor{mapFloat(x, func(v float64) float64 {
			if v < lo {
				v = lo
			}
			if v > hi {
				v = hi
			}
			return v
		})}, nil
	}
	lo, hi := intRange(x.DType)
	if opset < 11 {
		if a, ok := n.Attrs["min"]; ok {
			lo = floatToInt(ir.Int64, math.Ceil(a.Float))
		}
		if a, ok := n.Attrs["max"]; ok {
			hi = floatToInt(ir.Int64, math.Floor(a.Float))
		}
	}
	if minIn != nil {
		lo = minI
	}
	if maxIn != nil {
		hi = maxI
	}
	out := &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Int: make([]int64, len(x.Int))}
	for i, v := range x.Int {
		out.Int[i] = min(max(v, lo), hi)
	}
	return []*ir.Tensor{out}, nil
}

// kernelEqual is ONNX Equal with a Bool result.
func kernelEqual(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	shape, idx, err := bcastPlan(a, b)
	if err != nil {
		return nil, err
	}
	out := &ir.Tensor{DType: ir.Bool, Shape: shape, Int: make([]int64, shape.Size())}
	ia, ib := idx[0], idx[1]
	if !a.DType.IsFloat() && !b.DType.IsFloat() {
		for k := range out.Int {
			if a.Int[bcAt(ia, k)] == b.Int[bcAt(ib, k)] {
				out.Int[k] = 1
			}
		}
		return []*ir.Tensor{out}, nil
	}
	af, bf := a.Floats(), b.Floats()
	for k := range out.Int {
		if af[bcAt(ia, k)] == bf[bcAt(ib, k)] {
			out.Int[k] = 1
		}
	}
	return []*ir.Tensor{out}, nil
}

// kernelWhere is ONNX Where: condition ? X : Y with three-way broadcasting.
func kernelWhere(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 3); err != nil {
		return nil, err
	}
	c, x, y := in[0], in[1], in[2]
	shape, idx, err := bcastPlan(c, x, y)
	if err != nil {
		return nil, err
	}
	size := shape.Size()
	cond := c.Ints()
	if c.DType.IsFloat() {
		cond = make([]int64, len(c.Float))
		for i, v := range c.Float {
			if v != 0 {
				cond[i] = 1
			}
		}
	}
	ic, ix, iy := idx[0], idx[1], idx[2]
	if x.DType.IsFloat() != y.DType.IsFloat() {
		return nil, fmt.Errorf("X (%s) and Y (%s) must have the same type", x.DType, y.DType)
	}
	if x.DType.IsFloat() {
		out := &ir.Tensor{DType: x.DType, Shape: shape, Float: make([]float64, size)}
		for k := range out.Float {
			if cond[bcAt(ic, k)] != 0 {
				out.Float[k] = x.Float[bcAt(ix, k)]
			} else {
				out.Float[k] = y.Float[bcAt(iy, k)]
			}
		}
		return []*ir.Tensor{out}, nil
	}
	out := &ir.Tensor{DType: x.DType, Shape: shape, Int: make([]int64, size)}
	for k := range out.Int {
		if cond[bcAt(ic, k)] != 0 {
			out.Int[k] = x.Int[bcAt(ix, k)]
		} else {
			out.Int[k] = y.Int[bcAt(iy, k)]
		}
	}
	return []*ir.Tensor{out}, nil
}
