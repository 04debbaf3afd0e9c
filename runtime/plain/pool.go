// Pooling kernels of the plaintext interpreter: AveragePool, MaxPool (with
// its optional Indices output) and GlobalAveragePool over any number of
// spatial axes, with ONNX's kernel_shape, strides, pads, auto_pad,
// ceil_mode, dilations, count_include_pad and storage_order.

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("AveragePool", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		return poolKernel(n, opset, in, false)
	})
	register("MaxPool", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		return poolKernel(n, opset, in, true)
	})
	register("GlobalAveragePool", globalAveragePoolKernel)
}

// poolWindows lists, for every output position of one [spatial...] plane,
// the row-major offsets of the input elements under its window, and the
// element count of the window within the padded input (for
// count_include_pad).
type poolWindows struct {
	start  []int // offsets of window o are offs[start[o]:start[o+1]]
	offs   []int
	padCnt []int
}

// buildPoolWindows enumerates the windows of geometry g.
func buildPoolWindows(g *spatialGeom) *poolWindows {
	nd := len(g.in)
	p := ir.Shape(g.out).Size()
	inStr := strides(ir.Shape(g.in))
	// Per axis and output index: the valid input positions and the number
	// of taps inside the padded extent [-padBegin, in+padEnd).
	valid := make([][][]int, nd)
	padded := make([][]int, nd)
	for a := 0; a < nd; a++ {
		valid[a] = make([][]int, g.out[a])
		padded[a] = make([]int, g.out[a])
		for o := 0; o < g.out[a]; o++ {
			for t := 0; t < g.kernel[a]; t++ {
				pos := o*g.stride[a] - g.padBegin[a] + t*g.dilation[a]
				if pos >= -g.padBegin[a] && pos < g.in[a]+g.padEnd[a] {
					padded[a][o]++
				}
				if pos >= 0 && pos < g.in[a] {
					valid[a][o] = append(valid[a][o], pos*inStr[a])
				}
			}
		}
	}
	w := &poolWindows{start: make([]int, p+1), padCnt: make([]int, p)}
	oIdx := make([]int, nd)
	tIdx := make([]int, nd)
	for o := 0; o < p; o++ {
		w.start[o] = len(w.offs)
		cnt, empty := 1, false
		for a := 0; a < nd; a++ {
			cnt *= padded[a][oIdx[a]]
			if len(valid[a][oIdx[a]]) == 0 {
				empty = true
			}
		}
		w.padCnt[o] = cnt
		if !empty {
			// Cartesian product of the per-axis valid offsets.
			clear(tIdx)
			for {
				off := 0
				for a := 0; a < nd; a++ {
					off += valid[a][oIdx[a]][tIdx[a]]
				}
				w.offs = append(w.offs, off)
				a := nd - 1
				for ; a >= 0; a-- {
					if tIdx[a]++; tIdx[a] < len(valid[a][oIdx[a]]) {
						break
					}
					tIdx[a] = 0
				}
				if a < 0 {
					break
				}
			}
		}
		for a := nd - 1; a >= 0; a-- {
			if oIdx[a]++; oIdx[a] < g.out[a] {
				break
			}
			oIdx[a] = 0
		}
	}
	w.start[p] = len(w.offs)
	return w
}

// poolKernel implements AveragePool (isMax false) and MaxPool.
func poolKernel(n *ir.Node, opset int64, in []*ir.Tensor, isMax bool) ([]*ir.Tensor, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("missing input X")
	}
	x := in[0]
	if err := x.Validate(); err != nil {
		return nil, fmt.Errorf("input X: %v", err)
	}
	if !isMax && !x.DType.IsFloat() {
		return nil, fmt.Errorf("AveragePool input has element type %s, want a float type", x.DType)
	}
	if x.DType == ir.Bool {
		return nil, fmt.Errorf("MaxPool input has element type bool")
	}
	rank := len(x.Shape)
	if rank < 3 {
		return nil, fmt.Errorf("pooling input must have rank >= 3 (N, C, spatial...), got shape %v", x.Shape)
	}
	nd := rank - 2
	ks := n.Attrs.Ints("kernel_shape", nil)
	if len(ks) != nd {
		return nil, fmt.Errorf("kernel_shape %v must have %d values", ks, nd)
	}
	kernel := make([]int, nd)
	for i, k := range ks {
		kernel[i] = int(k)
	}
	ceil := n.Attrs.Int("ceil_mode", 0) != 0
	g, err := resolveGeom(n, []int(x.Shape[2:]), kernel, true, ceil)
	if err != nil {
		return nil, err
	}
	storageOrder := n.Attrs.Int("storage_order", 0)
	if storageOrder != 0 && storageOrder != 1 {
		return nil, fmt.Errorf("storage_order %d must be 0 or 1", storageOrder)
	}
	countPad := n.Attrs.Int("count_include_pad", 0) != 0
	wantIdx := isMax && len(n.Outputs) > 1 && n.Outputs[1] != nil

	w := buildPoolWindows(g)
	planes := x.Shape[0] * x.Shape[1]
	inSize := ir.Shape(g.in).Size()
	p := ir.Shape(g.out).Size()
	outShape := append(ir.Shape{x.Shape[0], x.Shape[1]}, g.out...)
	xf := x.Floats()
	res := make([]float64, planes*p)
	var idx []int64
	var colMajor []int
	if wantIdx {
		idx = make([]int64, planes*p)
		if storageOrder == 1 {
			// Column-major spatial index of every row-major offset.
			colMajor = make([]int, inSize)
			pos := make([]int, nd)
			for off := 0; off < inSize; off++ {
				cm, acc := 0, 1
				for a := 0; a < nd; a++ {
					cm += pos[a] * acc
					acc *= g.in[a]
				}
				colMajor[off] = cm
				for a := nd - 1; a >= 0; a-- {
					if pos[a]++; pos[a] < g.in[a] {
						break
					}
					pos[a] = 0
				}
			}
		}
	}
	for pl := 0; pl < planes; pl++ {
		xp := xf[pl*inSize : (pl+1)*inSize]
		rp := res[pl*p : (pl+1)*p]
		for o := 0; o < p; o++ {
			offs := w.offs[w.start[o]:w.start[o+1]]
			if isMax {
				best, at := math.Inf(-1), -1
				for _, off := range offs {
					if v := xp[off]; at < 0 || v > best {
						best, at = v, off
					}
				}
				rp[o] = best
				if wantIdx {
					if at < 0 {
						idx[pl*p+o] = -1
						continue
					}
					if colMajor != nil {
						at = colMajor[at]
					}
					idx[pl*p+o] = int64(pl*inSize + at)
				}
				continue
			}
			s := 0.0
			for _, off := range offs {
				s += xp[off]
			}
			div := len(offs)
			if countPad {
				div = w.padCnt[o]
			}
			rp[o] = s / float64(div)
		}
	}
	var y *ir.Tensor
	if x.DType.IsFloat() {
		y = &ir.Tensor{DType: x.DType, Shape: outShape, Float: res}
	} else {
		y = linResult(x, outShape, res)
	}
	if wantIdx {
		return []*ir.Tensor{y, ir.NewInt(outShape.Clone(), idx)}, nil
	}
	return []*ir.Tensor{y}, nil
}

// globalAveragePoolKernel averages X [N, C, spatial...] over its spatial
// axes, giving [N, C, 1, ...].
func globalAveragePoolKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("missing input X")
	}
	x := in[0]
	if err := x.Validate(); err != nil {
		return nil, fmt.Errorf("input X: %v", err)
	}
	if !x.DType.IsFloat() {
		return nil, fmt.Errorf("GlobalAveragePool input has element type %s, want a float type", x.DType)
	}
	if len(x.Shape) < 2 {
		return nil, fmt.Errorf("GlobalAveragePool input must have rank >= 2 (N, C, ...), got shape %v", x.Shape)
	}
	outShape := ir.Shape{x.Shape[0], x.Shape[1]}
	for range x.Shape[2:] {
		outShape = append(outShape, 1)
	}
	y := floatLike(x, outShape)
	sp := x.Shape[2:].Size()
	for pl := range y.Float {
		s := 0.0
		for _, v := range x.Float[pl*sp : (pl+1)*sp] {
			s += v
		}
		y.Float[pl] = s / float64(sp)
	}
	return []*ir.Tensor{y}, nil
}
