// Reduction kernels: ReduceSum and ReduceMean with keepdims and
// noop_with_empty_axes. The axes are an attribute before opset 13
// (ReduceSum) or 18 (ReduceMean) and an optional input from then on.

package plain

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("ReduceSum", reduceKernel(false, 13))
	register("ReduceMean", reduceKernel(true, 18))
}

// reduceAxes resolves a reduction's axes: it returns a per-axis mask, or nil
// for "no reduction" (empty axes with noop_with_empty_axes=1).
func reduceAxes(n *ir.Node, opset, inputSince int64, in []*ir.Tensor, rank int) ([]bool, error) {
	var axes []int64
	given := false
	if a, ok := n.Attrs["axes"]; ok {
		axes, given = a.Ints, true
	}
	if len(in) > 1 && in[1] != nil {
		axes, given = in[1].Ints(), true
	}
	mask := make([]bool, rank)
	if !given || len(axes) == 0 {
		if opset >= inputSince && n.Attrs.Int("noop_with_empty_axes", 0) != 0 {
			return nil, nil
		}
		for i := range mask {
			mask[i] = true
		}
		return mask, nil
	}
	for _, ax := range axes {
		a, err := normAxis(ax, rank)
		if err != nil {
			return nil, err
		}
		if mask[a] {
			return nil, fmt.Errorf("axis %d repeated in axes %v", ax, axes)
		}
		mask[a] = true
	}
	return mask, nil
}

// ReduceAxes resolves the axes of a ReduceSum or ReduceMean node n on an
// input of the given rank, with in its input tensors (the axes input from
// the opset where it replaces the attribute): a per-axis mask, or nil for no
// reduction (empty axes with noop_with_empty_axes=1).
func ReduceAxes(n *ir.Node, opset int64, in []*ir.Tensor, rank int) ([]bool, error) {
	since := int64(13)
	if n.Op == "ReduceMean" {
		since = 18
	}
	return reduceAxes(n, opset, since, in, rank)
}

// reduceKernel builds ReduceSum (mean=false) or ReduceMean (mean=true);
// inputSince is the opset from which axes is an input.
func reduceKernel(mean bool, inputSince int64) Kernel {
	return func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		if err := needInputs(in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		rank := len(x.Shape)
		mask, err := reduceAxes(n, opset, inputSince, in, rank)
		if err != nil {
			return nil, err
		}
		if mask == nil {
			return []*ir.Tensor{x.Clone()}, nil
		}
		keep := n.Attrs.Int("keepdims", 1) != 0
		// Output shape with kept unit axes, used for indexing.
		kshape := make(ir.Shape, rank)
		var oshape ir.Shape
		count := 1
		for i, d := range x.Shape {
			if mask[i] {
				kshape[i] = 1
				count *= d
				if keep {
					oshape = append(oshape, 1)
				}
			} else {
				kshape[i] = d
				oshape = append(oshape, d)
			}
		}
		if oshape == nil {
			oshape = ir.Shape{}
		}
		size := kshape.Size()
		// Map each input element to its output element.
		kstr := strides(kshape)
		eff := make([]int, rank)
		for i := range eff {
			if !mask[i] {
				eff[i] = kstr[i]
			}
		}
		counter := make([]int, rank)
		pos := 0
		if x.DType.IsFloat() {
			acc := make([]float64, size)
			for _, v := range x.Float {
				acc[pos] += v
				pos = reduceStep(x.Shape, eff, counter, pos)
			}
			if mean {
				for i := range acc {
					acc[i] /= float64(count)
				}
			}
			return []*ir.Tensor{{DType: x.DType, Shape: oshape, Float: acc}}, nil
		}
		acc := make([]int64, size)
		for _, v := range x.Int {
			acc[pos] += v
			pos = reduceStep(x.Shape, eff, counter, pos)
		}
		if mean {
			if count == 0 {
				return nil, fmt.Errorf("integer mean over an empty axis")
			}
			for i := range acc {
				acc[i] /= int64(count)
			}
		}
		wrapInts(x.DType, acc)
		return []*ir.Tensor{{DType: x.DType, Shape: oshape, Int: acc}}, nil
	}
}

// reduceStep advances a row-major counter over shape by one element and
// returns the updated position under the effective strides eff.
func reduceStep(shape ir.Shape, eff, counter []int, pos int) int {
	for a := len(shape) - 1; a >= 0; a-- {
		counter[a]++
		pos += eff[a]
		if counter[a] < shape[a] {
			return pos
		}
		pos -= eff[a] * counter[a]
		counter[a] = 0
	}
	return pos
}
