// Layout and indexing kernels: Flatten, Reshape, Squeeze, Unsqueeze,
// Transpose, Concat, Split, Slice, Pad, Gather, Expand and Tile. They move
// elements without arithmetic, so they work on every dtype (float, integer
// and bool alike) and always return fresh tensors.

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Flatten", kernelFlatten)
	register("Reshape", kernelReshape)
	register("Squeeze", kernelSqueeze)
	register("Unsqueeze", kernelUnsqueeze)
	register("Transpose", kernelTranspose)
	register("Concat", kernelConcat)
	register("Split", kernelSplit)
	register("Slice", kernelSlice)
	register("Pad", kernelPad)
	register("Gather", kernelGather)
	register("Expand", kernelExpand)
	register("Tile", kernelTile)
}

// reshaped returns a copy of t's data with a new shape of the same size.
func reshaped(t *ir.Tensor, shape ir.Shape) (*ir.Tensor, error) {
	if shape.Size() != t.Len() {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", t.Shape, t.Len(), shape)
	}
	out := &ir.Tensor{DType: t.DType, Shape: shape}
	if t.DType.IsFloat() {
		out.Float = append(make([]float64, 0, len(t.Float)), t.Float...)
	} else {
		out.Int = append(make([]int64, 0, len(t.Int)), t.Int...)
	}
	return out, nil
}

// gatherElems builds a tensor of t's dtype and the given shape whose k-th
// element is t's element idx[k], or the fill value where idx[k] < 0.
func gatherElems(t *ir.Tensor, shape ir.Shape, idx []int, fillF float64, fillI int64) *ir.Tensor {
	out := &ir.Tensor{DType: t.DType, Shape: shape}
	if t.DType.IsFloat() {
		out.Float = make([]float64, len(idx))
		for k, i := range idx {
			if i < 0 {
				out.Float[k] = fillF
			} else {
				out.Float[k] = t.Float[i]
			}
		}
	} else {
		out.Int = make([]int64, len(idx))
		for k, i := range idx {
			if i < 0 {
				out.Int[k] = fillI
			} else {
				out.Int[k] = t.Int[i]
			}
		}
	}
	return out
}

// offsetIndex returns, for every element of shape out (row-major), the sum
// over axes a of contrib[a][coordinate a], or -1 where any term is negative.
// contrib[a] has out[a] entries: each input offset an output coordinate
// along axis a contributes.
func offsetIndex(out ir.Shape, contrib [][]int) []int {
	idx := make([]int, 0, max(out.Size(), 0))
	rank := len(out)
	if rank == 0 {
		return append(idx, 0)
	}
	var rec func(a, base int)
	rec = func(a, base int) {
		if a == rank-1 {
			for _, c := range contrib[a] {
				if base < 0 || c < 0 {
					idx = append(idx, -1)
				} else {
					idx = append(idx, base+c)
				}
			}
			return
		}
		for _, c := range contrib[a] {
			if base < 0 || c < 0 {
				rec(a+1, -1)
			} else {
				rec(a+1, base+c)
			}
		}
	}
	rec(0, 0)
	return idx
}

// intsInput returns the integer elements of an optional input (nil when
// absent).
func intsInput(in []*ir.Tensor, i int) []int64 {
	if i < len(in) && in[i] != nil {
		return in[i].Ints()
	}
	return nil
}

// hasInput reports whether optional input i is present.
func hasInput(in []*ir.Tensor, i int) bool { return i < len(in) && in[i] != nil }

// kernelFlatten is ONNX Flatten: [prod(dims[:axis]), prod(dims[axis:])].
func kernelFlatten(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	axis := n.Attrs.Int("axis", 1)
	a := int(axis)
	if a < 0 {
		a += rank
	}
	if a < 0 || a > rank {
		return nil, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	outer, inner := 1, 1
	for i, d := range x.Shape {
		if i < a {
			outer *= d
		} else {
			inner *= d
		}
	}
	out, err := reshaped(x, ir.Shape{outer, inner})
	if err != nil {
		return nil, err
	}
	return []*ir.Tensor{out}, nil
}

// kernelReshape is ONNX Reshape: the shape is an attribute before opset 5
// and an input after. 0 copies the input dimension (unless allowzero=1,
// opset 14), one -1 is inferred.
func kernelReshape(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	var spec []int64
	switch {
	case hasInput(in, 1):
		spec = in[1].Ints()
	case n.Attrs.Has("shape"):
		spec = n.Attrs.Ints("shape", nil)
	default:
		return nil, fmt.Errorf("missing shape")
	}
	allowZero := n.Attrs.Int("allowzero", 0) != 0
	shape := make(ir.Shape, len(spec))
	infer := -1
	known := 1
	for i, d := range spec {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("shape %v has more than one -1", spec)
			}
			infer = i
			continue
		case d == 0 && !allowZero:
			if i >= len(x.Shape) {
				return nil, fmt.Errorf("shape %v copies dimension %d of a rank-%d input", spec, i, len(x.Shape))
			}
			shape[i] = x.Shape[i]
		case d < 0:
			return nil, fmt.Errorf("invalid dimension %d in shape %v", d, spec)
		default:
			shape[i] = int(d)
		}
		known *= shape[i]
	}
	if infer >= 0 {
		if known == 0 || x.Len()%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", x.Shape, spec)
		}
		shape[infer] = x.Len() / known
	}
	out, err := reshaped(x, shape)
	if err != nil {
		return nil, err
	}
	return []*ir.Tensor{out}, nil
}

// axesArg reads an axes list given as an attribute (before opset 13) or as
// input 1 (from opset 13); ok is false when neither is present.
func axesArg(n *ir.Node, in []*ir.Tensor) (axes []int64, ok bool) {
	if hasInput(in, 1) {
		return in[1].Ints(), true
	}
	if a, has := n.Attrs["axes"]; has {
		return a.Ints, true
	}
	return nil, false
}

// kernelSqueeze is ONNX Squeeze: removes the given unit axes, or every unit
// axis when none are given.
func kernelSqueeze(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	drop := make([]bool, rank)
	axes, ok := axesArg(n, in)
	if ok && len(axes) > 0 {
		for _, ax := range axes {
			a, err := normAxis(ax, rank)
			if err != nil {
				return nil, err
			}
			if x.Shape[a] != 1 {
				return nil, fmt.Errorf("cannot squeeze axis %d of shape %v", ax, x.Shape)
			}
			drop[a] = true
		}
	} else {
		for i, d := range x.Shape {
			drop[i] = d == 1
		}
	}
	shape := ir.Shape{}
	for i, d := range x.Shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	out, err := reshaped(x, shape)
	if err != nil {
		return nil, err
	}
	return []*ir.Tensor{out}, nil
}

// kernelUnsqueeze is ONNX Unsqueeze: inserts unit axes at the given
// positions of the output (negative ones count from the output's end).
func kernelUnsqueeze(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	axes, ok := axesArg(n, in)
	if !ok {
		return nil, fmt.Errorf("missing axes")
	}
	rank := len(x.Shape) + len(axes)
	unit := make([]bool, rank)
	for _, ax := range axes {
		a, err := normAxis(ax, rank)
		if err != nil {
			return nil, err
		}
		if unit[a] {
			return nil, fmt.Errorf("axis %d repeated in axes %v", ax, axes)
		}
		unit[a] = true
	}
	shape := make(ir.Shape, rank)
	j := 0
	for i := range shape {
		if unit[i] {
			shape[i] = 1
		} else {
			shape[i] = x.Shape[j]
			j++
		}
	}
	out, err := reshaped(x, shape)
	if err != nil {
		return nil, err
	}
	return []*ir.Tensor{out}, nil
}

// kernelTranspose is ONNX Transpose; perm defaults to reversing the axes.
func kernelTranspose(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	perm := n.Attrs.Ints("perm", nil)
	if perm == nil {
		perm = make([]int64, rank)
		for i := range perm {
			perm[i] = int64(rank - 1 - i)
		}
	}
	if len(perm) != rank {
		return nil, fmt.Errorf("perm %v does not match rank %d", perm, rank)
	}
	seen := make([]bool, rank)
	str := strides(x.Shape)
	shape := make(ir.Shape, rank)
	contrib := make([][]int, rank)
	for i, p := range perm {
		a, err := normAxis(p, rank)
		if err != nil || seen[a] {
			return nil, fmt.Errorf("invalid perm %v", perm)
		}
		seen[a] = true
		shape[i] = x.Shape[a]
		contrib[i] = make([]int, shape[i])
		for o := range contrib[i] {
			contrib[i][o] = o * str[a]
		}
	}
	return []*ir.Tensor{gatherElems(x, shape, offsetIndex(shape, contrib), 0, 0)}, nil
}

// kernelConcat is ONNX Concat along axis.
func kernelConcat(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	ts, err := presentInputs(in)
	if err != nil {
		return nil, err
	}
	if !n.Attrs.Has("axis") && opset >= 4 {
		return nil, fmt.Errorf("missing axis attribute")
	}
	first := ts[0]
	rank := len(first.Shape)
	a, err := normAxis(n.Attrs.Int("axis", 1), rank)
	if err != nil {
		return nil, err
	}
	shape := first.Shape.Clone()
	shape[a] = 0
	for _, t := range ts {
		if len(t.Shape) != rank || t.DType.IsFloat() != first.DType.IsFloat() {
			return nil, fmt.Errorf("cannot concatenate %s%v with %s%v", first.DType, first.Shape, t.DType, t.Shape)
		}
		for i, d := range t.Shape {
			if i != a && d != first.Shape[i] {
				return nil, fmt.Errorf("cannot concatenate shapes %v and %v along axis %d", first.Shape, t.Shape, a)
			}
		}
		shape[a] += t.Shape[a]
	}
	outer, inner := 1, 1
	for i, d := range shape {
		if i < a {
			outer *= d
		} else if i > a {
			inner *= d
		}
	}
	out := &ir.Tensor{DType: first.DType, Shape: shape}
	if first.DType.IsFloat() {
		out.Float = make([]float64, 0, shape.Size())
		for o := 0; o < outer; o++ {
			for _, t := range ts {
				chunk := t.Shape[a] * inner
				out.Float = append(out.Float, t.Float[o*chunk:(o+1)*chunk]...)
			}
		}
	} else {
		out.Int = make([]int64, 0, shape.Size())
		for o := 0; o < outer; o++ {
			for _, t := range ts {
				chunk := t.Shape[a] * inner
				out.Int = append(out.Int, t.Int[o*chunk:(o+1)*chunk]...)
			}
		}
	}
	return []*ir.Tensor{out}, nil
}

// kernelSplit is ONNX Split along axis: the sizes come from the split
// attribute (before opset 13) or input (from 13); without them the axis is
// split into equal parts, one per output (from opset 18, num_outputs parts
// with a smaller last one).
func kernelSplit(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	a, err := normAxis(n.Attrs.Int("axis", 0), rank)
	if err != nil {
		return nil, err
	}
	dim := x.Shape[a]
	var sizes []int64
	switch {
	case hasInput(in, 1):
		sizes = in[1].Ints()
	case n.Attrs.Has("split"):
		sizes = n.Attrs.Ints("split", nil)
	}
	if len(sizes) == 0 {
		parts := len(n.Outputs)
		if n.Attrs.Has("num_outputs") {
			parts = int(n.Attrs.Int("num_outputs", 0))
		}
		if parts <= 0 {
			return nil, fmt.Errorf("no outputs to split into")
		}
		chunk := (dim + parts - 1) / parts
		if !n.Attrs.Has("num_outputs") && dim%parts != 0 {
			return nil, fmt.Errorf("axis of size %d does not split into %d equal parts", dim, parts)
		}
		sizes = make([]int64, parts)
		left := dim
		for i := range sizes {
			s := min(chunk, left)
			sizes[i] = int64(s)
			left -= s
		}
	}
	total := int64(0)
	for _, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("negative split size in %v", sizes)
		}
		total += s
	}
	if total != int64(dim) {
		return nil, fmt.Errorf("split sizes %v do not add up to %d", sizes, dim)
	}
	if len(n.Outputs) > 0 && len(sizes) != len(n.Outputs) {
		return nil, fmt.Errorf("%d split sizes for %d outputs", len(sizes), len(n.Outputs))
	}
	str := strides(x.Shape)
	outs := make([]*ir.Tensor, len(sizes))
	begin := 0
	for i, s := range sizes {
		shape := x.Shape.Clone()
		shape[a] = int(s)
		contrib := make([][]int, rank)
		for ax := range contrib {
			contrib[ax] = make([]int, shape[ax])
			off := 0
			if ax == a {
				off = begin
			}
			for o := range contrib[ax] {
				contrib[ax][o] = (o + off) * str[ax]
			}
		}
		outs[i] = gatherElems(x, shape, offsetIndex(shape, contrib), 0, 0)
		begin += int(s)
	}
	return outs, nil
}

// clampInt64 bounds v to [lo, hi].
func clampInt64(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}

// kernelSlice is ONNX Slice: starts/ends/axes are attributes before opset
// 10; from opset 10 starts, ends, axes and steps are inputs. Negative
// indices count from the end, out-of-range ones are clamped, and negative
// steps walk backwards.
func kernelSlice(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	var starts, ends, axes, steps []int64
	if opset < 10 && !hasInput(in, 1) {
		starts = n.Attrs.Ints("starts", nil)
		ends = n.Attrs.Ints("ends", nil)
		axes = n.Attrs.Ints("axes", nil)
		if starts == nil || ends == nil {
			return nil, fmt.Errorf("missing starts or ends attribute")
		}
	} else {
		if err := needInputs(in, 3); err != nil {
			return nil, err
		}
		starts, ends = in[1].Ints(), in[2].Ints()
		axes, steps = intsInput(in, 3), intsInput(in, 4)
	}
	if len(ends) != len(starts) {
		return nil, fmt.Errorf("starts %v and ends %v differ in length", starts, ends)
	}
	if axes == nil {
		axes = make([]int64, len(starts))
		for i := range axes {
			axes[i] = int64(i)
		}
	}
	if steps == nil {
		steps = make([]int64, len(starts))
		for i := range steps {
			steps[i] = 1
		}
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, fmt.Errorf("starts, ends, axes and steps differ in length")
	}
	begin := make([]int64, rank)
	step := make([]int64, rank)
	shape := x.Shape.Clone()
	for i := range step {
		step[i] = 1
	}
	seen := make([]bool, rank)
	for i, ax := range axes {
		a, err := normAxis(ax, rank)
		if err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, fmt.Errorf("axis %d repeated in axes %v", ax, axes)
		}
		seen[a] = true
		d := int64(x.Shape[a])
		s, e, st := starts[i], ends[i], steps[i]
		if st == 0 {
			return nil, fmt.Errorf("step 0 on axis %d", ax)
		}
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		var count int64
		if st > 0 {
			s, e = clampInt64(s, 0, d), clampInt64(e, 0, d)
			if e > s {
				count = (e - s + st - 1) / st
			}
		} else {
			s, e = clampInt64(s, 0, d-1), clampInt64(e, -1, d-1)
			if s > e {
				count = (s - e + (-st) - 1) / (-st)
			}
		}
		begin[a], step[a], shape[a] = s, st, int(count)
	}
	str := strides(x.Shape)
	contrib := make([][]int, rank)
	for a := range contrib {
		contrib[a] = make([]int, shape[a])
		for o := range contrib[a] {
			contrib[a][o] = int(begin[a]+int64(o)*step[a]) * str[a]
		}
	}
	return []*ir.Tensor{gatherElems(x, shape, offsetIndex(shape, contrib), 0, 0)}, nil
}

// kernelPad is ONNX Pad. Before opset 11 pads ("paddings" in opset 1) and
// value are attributes; from 11 pads and constant_value are inputs, and
// from 18 an optional axes input selects the padded axes. Modes: constant,
// reflect, edge and wrap; negative pads crop.
func kernelPad(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	var pads []int64
	fillF := 0.0
	if opset < 11 && !hasInput(in, 1) {
		switch {
		case n.Attrs.Has("pads"):
			pads = n.Attrs.Ints("pads", nil)
		case n.Attrs.Has("paddings"):
			pads = n.Attrs.Ints("paddings", nil)
		default:
			return nil, fmt.Errorf("missing pads attribute")
		}
		fillF = n.Attrs.Float("value", 0)
	} else {
		if err := needInputs(in, 2); err != nil {
			return nil, err
		}
		pads = in[1].Ints()
		if hasInput(in, 2) && in[2].Len() > 0 {
			f, _, err := scalarOf(in[2], "constant_value")
			if err != nil {
				return nil, err
			}
			fillF = f
		}
	}
	fillI := floatToInt(x.DType, fillF)
	if !x.DType.IsFloat() && hasInput(in, 2) && in[2].Len() == 1 && !in[2].DType.IsFloat() {
		fillI = in[2].Int[0]
	}
	// Expand pads to every axis.
	padAxes := make([]int, 0, rank)
	if axes := intsInput(in, 3); axes != nil {
		for _, ax := range axes {
			a, err := normAxis(ax, rank)
			if err != nil {
				return nil, err
			}
			padAxes = append(padAxes, a)
		}
	} else {
		for a := 0; a < rank; a++ {
			padAxes = append(padAxes, a)
		}
	}
	if len(pads) != 2*len(padAxes) {
		return nil, fmt.Errorf("pads %v: want %d values", pads, 2*len(padAxes))
	}
	before := make([]int, rank)
	after := make([]int, rank)
	for i, a := range padAxes {
		before[a] = int(pads[i])
		after[a] = int(pads[i+len(padAxes)])
	}
	mode := n.Attrs.String("mode", "constant")
	switch mode {
	case "constant", "reflect", "edge", "wrap":
	default:
		return nil, unsupported("Pad mode %q", mode)
	}
	str := strides(x.Shape)
	shape := make(ir.Shape, rank)
	contrib := make([][]int, rank)
	for a, d := range x.Shape {
		shape[a] = d + before[a] + after[a]
		if shape[a] < 0 {
			return nil, fmt.Errorf("pads %v crop axis %d of size %d below zero", pads, a, d)
		}
		contrib[a] = make([]int, shape[a])
		for o := range contrib[a] {
			i := o - before[a]
			if i < 0 || i >= d {
				if mode == "constant" {
					contrib[a][o] = -1
					continue
				}
				if d == 0 {
					return nil, fmt.Errorf("cannot %s-pad an empty axis %d", mode, a)
				}
				switch mode {
				case "edge":
					i = min(max(i, 0), d-1)
				case "wrap":
					i = ((i % d) + d) % d
				case "reflect":
					if d == 1 {
						i = 0
						break
					}
					period := 2 * (d - 1)
					i = ((i % period) + period) % period
					if i >= d {
						i = period - i
					}
				}
			}
			contrib[a][o] = i * str[a]
		}
	}
	return []*ir.Tensor{gatherElems(x, shape, offsetIndex(shape, contrib), fillF, fillI)}, nil
}

// kernelGather is ONNX Gather along axis; negative indices count from the
// end of the axis.
func kernelGather(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	x, ind := in[0], in[1]
	rank := len(x.Shape)
	a, err := normAxis(n.Attrs.Int("axis", 0), rank)
	if err != nil {
		return nil, err
	}
	indices := ind.Ints()
	dim := x.Shape[a]
	shape := make(ir.Shape, 0, rank-1+len(ind.Shape))
	shape = append(shape, x.Shape[:a]...)
	shape = append(shape, ind.Shape...)
	shape = append(shape, x.Shape[a+1:]...)
	outer, inner := 1, 1
	for i, d := range x.Shape {
		if i < a {
			outer *= d
		} else if i > a {
			inner *= d
		}
	}
	pos := make([]int, len(indices))
	for j, v := range indices {
		if v < 0 {
			v += int64(dim)
		}
		if v < 0 || v >= int64(dim) {
			return nil, fmt.Errorf("index %d out of range for axis of size %d", indices[j], dim)
		}
		pos[j] = int(v)
	}
	idx := make([]int, 0, shape.Size())
	for o := 0; o < outer; o++ {
		for _, p := range pos {
			base := (o*dim + p) * inner
			for i := 0; i < inner; i++ {
				idx = append(idx, base+i)
			}
		}
	}
	return []*ir.Tensor{gatherElems(x, shape, idx, 0, 0)}, nil
}

// kernelExpand is ONNX Expand: broadcasts the input against the given shape
// (in both directions, as NumPy does with input * ones(shape)).
func kernelExpand(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	spec := in[1].Ints()
	target := make(ir.Shape, len(spec))
	for i, d := range spec {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("invalid dimension %d in shape %v", d, spec)
		}
		target[i] = int(d)
	}
	shape, err := broadcastShape(x.Shape, target)
	if err != nil {
		return nil, err
	}
	return []*ir.Tensor{gatherElems(x, shape, broadcastIndex(x.Shape, shape), 0, 0)}, nil
}

// kernelTile is ONNX Tile: repeats[i] copies along axis i.
func kernelTile(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if opset < 6 {
		return nil, unsupported("Tile before opset 6 (tiles/axis inputs)")
	}
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	reps := in[1].Ints()
	rank := len(x.Shape)
	if len(reps) != rank {
		return nil, fmt.Errorf("repeats %v do not match rank %d", reps, rank)
	}
	str := strides(x.Shape)
	shape := make(ir.Shape, rank)
	contrib := make([][]int, rank)
	for a, d := range x.Shape {
		if reps[a] < 0 {
			return nil, fmt.Errorf("negative repeat in %v", reps)
		}
		shape[a] = d * int(reps[a])
		contrib[a] = make([]int, shape[a])
		for o := range contrib[a] {
			contrib[a][o] = (o % d) * str[a]
		}
	}
	return []*ir.Tensor{gatherElems(x, shape, offsetIndex(shape, contrib), 0, 0)}, nil
}
