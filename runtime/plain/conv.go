// Convolution kernel of the plaintext interpreter: ONNX Conv over 1, 2 or 3
// (or more) spatial axes with strides, pads, dilations, groups (depthwise
// included) and auto_pad, computed as im2col followed by one BLAS Dgemm per
// image and group. The spatial-geometry helpers here are shared with the
// pooling kernels.

package plain

import (
	"fmt"
	"sync"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Conv", convKernel)
}

// spatialGeom is the resolved geometry of a sliding-window op along its
// spatial axes.
type spatialGeom struct {
	in, out, kernel, stride, dilation []int
	padBegin, padEnd                  []int
}

// attrInts reads an integer-list attribute of length rank, defaulting every
// element to def when absent.
func attrInts(n *ir.Node, name string, rank int, def int) ([]int, error) {
	out := make([]int, rank)
	v := n.Attrs.Ints(name, nil)
	if v == nil {
		for i := range out {
			out[i] = def
		}
		return out, nil
	}
	if len(v) != rank {
		return nil, fmt.Errorf("attribute %s has %d values, want %d", name, len(v), rank)
	}
	for i, x := range v {
		out[i] = int(x)
	}
	return out, nil
}

// resolveGeom computes output sizes and the begin/end pads of a sliding
// window over the spatial sizes in, following ONNX's rules for auto_pad,
// pads, strides, dilations and (for pooling) ceil_mode.
func resolveGeom(n *ir.Node, in, kernel []int, useDilations, ceil bool) (*spatialGeom, error) {
	nd := len(in)
	g := &spatialGeom{in: in, kernel: kernel, out: make([]int, nd),
		padBegin: make([]int, nd), padEnd: make([]int, nd)}
	var err error
	if g.stride, err = attrInts(n, "strides", nd, 1); err != nil {
		return nil, err
	}
	if useDilations {
		if g.dilation, err = attrInts(n, "dilations", nd, 1); err != nil {
			return nil, err
		}
	} else {
		g.dilation = make([]int, nd)
		for i := range g.dilation {
			g.dilation[i] = 1
		}
	}
	for i := 0; i < nd; i++ {
		if g.stride[i] < 1 || g.dilation[i] < 1 || kernel[i] < 1 {
			return nil, fmt.Errorf("strides %v, dilations %v and kernel %v must be positive", g.stride, g.dilation, kernel)
		}
	}
	autoPad := n.Attrs.String("auto_pad", "NOTSET")
	switch autoPad {
	case "NOTSET", "":
		pads := n.Attrs.Ints("pads", nil)
		if pads != nil && len(pads) != 2*nd {
			return nil, fmt.Errorf("attribute pads has %d values, want %d", len(pads), 2*nd)
		}
		for i := 0; i < nd; i++ {
			if pads != nil {
				g.padBegin[i], g.padEnd[i] = int(pads[i]), int(pads[i+nd])
			}
			if g.padBegin[i] < 0 || g.padEnd[i] < 0 {
				return nil, fmt.Errorf("negative pads %v", pads)
			}
			ek := (kernel[i]-1)*g.dilation[i] + 1
			span := in[i] + g.padBegin[i] + g.padEnd[i] - ek
			if span < 0 {
				return nil, fmt.Errorf("kernel %v (dilations %v) is larger than the padded input %v", kernel, g.dilation, in)
			}
			if ceil {
				o := (span+g.stride[i]-1)/g.stride[i] + 1
				// The last window must start inside the input or the
				// begin padding, not in the end padding.
				if (o-1)*g.stride[i] >= in[i]+g.padBegin[i] {
					o--
				}
				g.out[i] = o
			} else {
				g.out[i] = span/g.stride[i] + 1
			}
		}
	case "VALID":
		for i := 0; i < nd; i++ {
			ek := (kernel[i]-1)*g.dilation[i] + 1
			if in[i] < ek {
				return nil, fmt.Errorf("kernel %v (dilations %v) is larger than the input %v", kernel, g.dilation, in)
			}
			g.out[i] = (in[i]-ek)/g.stride[i] + 1
		}
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < nd; i++ {
			ek := (kernel[i]-1)*g.dilation[i] + 1
			o := (in[i] + g.stride[i] - 1) / g.stride[i]
			total := max(0, (o-1)*g.stride[i]+ek-in[i])
			g.out[i] = o
			if autoPad == "SAME_UPPER" {
				g.padBegin[i] = total / 2
			} else {
				g.padBegin[i] = total - total/2
			}
			g.padEnd[i] = total - g.padBegin[i]
		}
	default:
		return nil, unsupported("auto_pad %q", autoPad)
	}
	return g, nil
}

// convKernel implements Conv: X [N, C, D1..Dn], W [M, C/group, k1..kn],
// optional B [M]; Y [N, M, O1..On].
func convKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("Conv needs inputs X and W")
	}
	x, w := in[0], in[1]
	for i, t := range []*ir.Tensor{x, w} {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("input %d: %v", i, err)
		}
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("Conv input %d has element type %s, want a float type", i, t.DType)
		}
	}
	rank := len(x.Shape)
	if rank < 3 {
		return nil, fmt.Errorf("Conv input X must have rank >= 3 (N, C, spatial...), got shape %v", x.Shape)
	}
	if len(w.Shape) != rank {
		return nil, fmt.Errorf("Conv weight shape %v does not match the rank of X %v", w.Shape, x.Shape)
	}
	nd := rank - 2
	batch, c := x.Shape[0], x.Shape[1]
	m, cg := w.Shape[0], w.Shape[1]
	group := int(n.Attrs.Int("group", 1))
	if group < 1 {
		return nil, fmt.Errorf("Conv group %d must be positive", group)
	}
	if cg*group != c {
		return nil, fmt.Errorf("Conv: X has %d channels but W%v with group %d expects %d", c, w.Shape, group, cg*group)
	}
	if m%group != 0 {
		return nil, fmt.Errorf("Conv: %d output channels are not divisible by group %d", m, group)
	}
	kernel := []int(w.Shape[2:].Clone())
	if ks := n.Attrs.Ints("kernel_shape", nil); ks != nil {
		if len(ks) != nd {
			return nil, fmt.Errorf("Conv kernel_shape %v does not have %d values", ks, nd)
		}
		for i, k := range ks {
			if int(k) != kernel[i] {
				return nil, fmt.Errorf("Conv kernel_shape %v does not match W%v", ks, w.Shape)
			}
		}
	}
	g, err := resolveGeom(n, []int(x.Shape[2:]), kernel, true, false)
	if err != nil {
		return nil, fmt.Errorf("Conv: %w", err)
	}
	var bias []float64
	if len(in) > 2 && in[2] != nil {
		if err := in[2].Validate(); err != nil {
			return nil, fmt.Errorf("input B: %v", err)
		}
		if len(in[2].Shape) != 1 || in[2].Shape[0] != m {
			return nil, fmt.Errorf("Conv bias shape %v, want [%d]", in[2].Shape, m)
		}
		bias = in[2].Floats()
	}

	outShape := ir.Shape{batch, m}
	outShape = append(outShape, g.out...)
	y := floatLike(x, outShape)
	p := ir.Shape(g.out).Size()
	inSize := ir.Shape(g.in).Size()
	ksize := ir.Shape(kernel).Size()
	mg := m / group
	rows := cg * ksize
	xf, wf := x.Floats(), w.Floats()

	// A 1×1 kernel with unit strides and no padding reads X as it is.
	direct := ksize == 1
	for i := 0; i < nd; i++ {
		if g.stride[i] != 1 || g.padBegin[i] != 0 || g.padEnd[i] != 0 || g.out[i] != g.in[i] {
			direct = false
		}
	}
	var col []float64
	if !direct {
		buf := convGetScratch(rows * p)
		defer convScratch.Put(buf)
		col = (*buf)[:rows*p]
	}
	for b := 0; b < batch; b++ {
		for gi := 0; gi < group; gi++ {
			xOff := (b*c + gi*cg) * inSize
			yOff := (b*m + gi*mg) * p
			ys := y.Float[yOff : yOff+mg*p]
			beta := 0.0
			if bias != nil {
				for j := 0; j < mg; j++ {
					v := bias[gi*mg+j]
					row := ys[j*p : (j+1)*p]
					for q := range row {
						row[q] = v
					}
				}
				beta = 1
			}
			src := xf[xOff:]
			if !direct {
				im2col(col, xf[xOff:xOff+cg*inSize], cg, g)
				src = col
			}
			linDgemm(false, false, mg, p, rows, 1, wf[gi*mg*rows:], rows, src, p, beta, ys, p)
		}
	}
	return []*ir.Tensor{y}, nil
}

// convScratch recycles im2col buffers (*[]float64) between Conv calls.
var convScratch sync.Pool

// convGetScratch returns a pooled buffer of at least size elements, with
// arbitrary contents.
func convGetScratch(size int) *[]float64 {
	if b, ok := convScratch.Get().(*[]float64); ok && cap(*b) >= size {
		return b
	}
	b := make([]float64, size)
	return &b
}

// im2col fills col, a [channels*prod(kernel), prod(out)] row-major matrix,
// with the input patches: row (c, k) holds, for every output position, the
// input element under kernel tap k of channel c (zero in the padding).
func im2col(col, x []float64, channels int, g *spatialGeom) {
	nd := len(g.in)
	p := ir.Shape(g.out).Size()
	ksize := ir.Shape(g.kernel).Size()
	inSize := ir.Shape(g.in).Size()
	inStr := strides(ir.Shape(g.in))
	last := nd - 1
	outLast := g.out[last]
	outer := p / max(outLast, 1)
	kIdx := make([]int, nd)
	oIdx := make([]int, nd)
	sL, dL, pL, inL := g.stride[last], g.dilation[last], g.padBegin[last], g.in[last]
	for c := 0; c < channels; c++ {
		xc := x[c*inSize : (c+1)*inSize]
		for i := range kIdx {
			kIdx[i] = 0
		}
		for k := 0; k < ksize; k++ {
			row := col[(c*ksize+k)*p : (c*ksize+k+1)*p]
			// Valid output range along the last axis for this tap:
			// 0 <= o*s - pad + k*d < in.
			shift := kIdx[last]*dL - pL
			lo := 0
			if shift < 0 {
				lo = (-shift + sL - 1) / sL
			}
			hi := outLast // exclusive
			if lim := inL - shift; lim <= 0 {
				hi = 0
			} else if h := (lim + sL - 1) / sL; h < hi {
				hi = h
			}
			lo = min(lo, outLast)
			hi = max(hi, lo)
			for i := range oIdx {
				oIdx[i] = 0
			}
			for o := 0; o < outer; o++ {
				seg := row[o*outLast : (o+1)*outLast]
				base, ok := 0, true
				for a := 0; a < last; a++ {
					pos := oIdx[a]*g.stride[a] - g.padBegin[a] + kIdx[a]*g.dilation[a]
					if pos < 0 || pos >= g.in[a] {
						ok = false
						break
					}
					base += pos * inStr[a]
				}
				if !ok || lo >= hi {
					clear(seg)
				} else {
					clear(seg[:lo])
					clear(seg[hi:])
					start := base + shift
					if sL == 1 {
						copy(seg[lo:hi], xc[start+lo:start+hi])
					} else {
						for q := lo; q < hi; q++ {
							seg[q] = xc[start+q*sL]
						}
					}
				}
				for a := last - 1; a >= 0; a-- {
					if oIdx[a]++; oIdx[a] < g.out[a] {
						break
					}
					oIdx[a] = 0
				}
			}
			for a := last; a >= 0; a-- {
				if kIdx[a]++; kIdx[a] < g.kernel[a] {
					break
				}
				kIdx[a] = 0
			}
		}
	}
}
