package passes

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
)

// DecomposeMaxPool rewrites every MaxPool into operations CKKS can evaluate:
// one strided Slice per window tap (kernel_shape elements in all), combined
// by a balanced tree of pairwise maxima
//
//	max(a, b) = 0.5·(a+b) + 0.5·|a-b|
//
// built from Add, Sub, Abs and Mul by the constant 0.5 (the Abs nodes are
// later replaced by polynomials, see ApproximateActivations). A window of k
// taps costs ceil(log2 k) Abs levels.
//
// Padding (explicit pads, SAME_* auto_pad or ceil_mode's partial windows)
// becomes a Pad in "edge" mode before the taps: a padded position repeats
// the nearest input element, which lies in every window that contains the
// padded position, so it never changes a window's maximum. That needs every
// window to overlap the input (begin pads smaller than the kernel) and no
// dilation; dilated pooling is accepted only when it needs no padding.
//
// Any number of spatial axes is accepted (input [N, C, spatial...]); float
// inputs only. MaxPool with its Indices output in use, and the variants
// above, give an *ir.UnsupportedError naming the node. The result equals
// MaxPool in the reference interpreter up to float64 rounding. Input shapes
// must be known (run InferShapes first).
func DecomposeMaxPool(g *ir.Graph) error {
	nm := newNamer(g)
	var out []*ir.Node
	changed := false
	for _, n := range g.Nodes {
		if n.Op != "MaxPool" {
			out = append(out, n)
			continue
		}
		repl, err := decomposeMaxPool(g, nm, n)
		if err != nil {
			return err
		}
		out = append(out, repl...)
		changed = true
	}
	if !changed {
		return nil
	}
	g.Nodes = out
	return g.Sort()
}

// decomposeMaxPool returns the nodes replacing the MaxPool n; the last one
// takes over n's output.
func decomposeMaxPool(g *ir.Graph, nm *namer, n *ir.Node) ([]*ir.Node, error) {
	unsupported := func(format string, args ...any) error {
		return &ir.UnsupportedError{Node: n.Name, Op: n.Op, Opset: g.Opset, Reason: fmt.Sprintf(format, args...)}
	}
	x := n.Input(0)
	if x == nil || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return nil, fmt.Errorf("%v: needs an input and an output", n)
	}
	if len(n.Outputs) > 1 && n.Outputs[1] != nil {
		if uses := g.Consumers()[n.Outputs[1]]; len(uses) > 0 || g.IsOutput(n.Outputs[1]) {
			return nil, unsupported("the Indices output cannot be computed under encryption")
		}
	}
	if x.DType != ir.Undefined && !x.DType.IsFloat() {
		return nil, unsupported("input of element type %s; only float pooling is decomposed", x.DType)
	}
	if !x.Shape.Known() || len(x.Shape) < 3 {
		return nil, fmt.Errorf("%v: input shape %v must be static with rank >= 3 (run InferShapes)", n, x.Shape)
	}
	nd := len(x.Shape) - 2
	in := []int(x.Shape[2:])
	ks := n.Attrs.Ints("kernel_shape", nil)
	if len(ks) != nd {
		return nil, fmt.Errorf("%v: kernel_shape %v must have %d values", n, ks, nd)
	}
	ints := func(name string, def int) ([]int, error) {
		v := n.Attrs.Ints(name, nil)
		out := make([]int, nd)
		for i := range out {
			out[i] = def
		}
		if v == nil {
			return out, nil
		}
		if len(v) != nd {
			return nil, fmt.Errorf("%v: attribute %s %v must have %d values", n, name, v, nd)
		}
		for i, e := range v {
			out[i] = int(e)
		}
		return out, nil
	}
	stride, err := ints("strides", 1)
	if err != nil {
		return nil, err
	}
	dil, err := ints("dilations", 1)
	if err != nil {
		return nil, err
	}
	kernel := make([]int, nd)
	for i, k := range ks {
		kernel[i] = int(k)
		if kernel[i] < 1 || stride[i] < 1 || dil[i] < 1 {
			return nil, fmt.Errorf("%v: kernel %v, strides %v and dilations %v must be positive", n, kernel, stride, dil)
		}
	}
	// Output sizes and pads, by ONNX's rules (as the interpreter applies
	// them).
	ceil := n.Attrs.Int("ceil_mode", 0) != 0
	padBegin, padEnd, outSize := make([]int, nd), make([]int, nd), make([]int, nd)
	switch autoPad := n.Attrs.String("auto_pad", "NOTSET"); autoPad {
	case "NOTSET", "":
		pads := n.Attrs.Ints("pads", nil)
		if pads != nil && len(pads) != 2*nd {
			return nil, fmt.Errorf("%v: attribute pads has %d values, want %d", n, len(pads), 2*nd)
		}
		for i := 0; i < nd; i++ {
			if pads != nil {
				padBegin[i], padEnd[i] = int(pads[i]), int(pads[i+nd])
			}
			if padBegin[i] < 0 || padEnd[i] < 0 {
				return nil, unsupported("negative pads %v", pads)
			}
			ek := (kernel[i]-1)*dil[i] + 1
			span := in[i] + padBegin[i] + padEnd[i] - ek
			if span < 0 {
				return nil, fmt.Errorf("%v: kernel %v is larger than the padded input %v", n, kernel, in)
			}
			if ceil {
				o := (span+stride[i]-1)/stride[i] + 1
				if (o-1)*stride[i] >= in[i]+padBegin[i] {
					o--
				}
				outSize[i] = o
			} else {
				outSize[i] = span/stride[i] + 1
			}
		}
	case "VALID":
		for i := 0; i < nd; i++ {
			ek := (kernel[i]-1)*dil[i] + 1
			if in[i] < ek {
				return nil, fmt.Errorf("%v: kernel %v is larger than the input %v", n, kernel, in)
			}
			outSize[i] = (in[i]-ek)/stride[i] + 1
		}
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < nd; i++ {
			ek := (kernel[i]-1)*dil[i] + 1
			o := (in[i] + stride[i] - 1) / stride[i]
			total := max(0, (o-1)*stride[i]+ek-in[i])
			outSize[i] = o
			if autoPad == "SAME_UPPER" {
				padBegin[i] = total / 2
			} else {
				padBegin[i] = total - total/2
			}
			padEnd[i] = total - padBegin[i]
		}
	default:
		return nil, unsupported("auto_pad %q", autoPad)
	}
	// The padded extent the taps read: begin pads, then enough at the end
	// for the last window (ceil_mode may need more than pads gives; extra
	// end pads no window reads are dropped).
	padded := false
	for i := 0; i < nd; i++ {
		ek := (kernel[i]-1)*dil[i] + 1
		padEnd[i] = max(0, (outSize[i]-1)*stride[i]+ek-in[i]-padBegin[i])
		if padBegin[i] > 0 || padEnd[i] > 0 {
			padded = true
		}
	}
	if padded {
		for i := 0; i < nd; i++ {
			if dil[i] != 1 {
				return nil, unsupported("dilations %v with padding (edge padding needs contiguous windows)", dil)
			}
			// Every window must overlap the input for edge padding to be
			// neutral: the first begins before the input's end, the last
			// ends after its start.
			if padBegin[i] >= kernel[i] || (outSize[i]-1)*stride[i]-padBegin[i] > in[i]-1 {
				return nil, unsupported("a pooling window lies entirely in the padding (kernel %v, pads %v/%v)", kernel, padBegin, padEnd)
			}
		}
	}
	out := n.Outputs[0]
	dtype := x.DType
	if dtype == ir.Undefined {
		dtype = ir.Float32
	}
	base := n.Name
	var nodes []*ir.Node
	newValue := func(suffix string, shape ir.Shape) *ir.Value {
		return &ir.Value{Name: nm.value(out.Name + suffix), DType: dtype, Shape: shape}
	}
	addNode := func(op, suffix string, outv *ir.Value, ins ...*ir.Value) *ir.Node {
		m := &ir.Node{Name: nm.node(base + suffix), Op: op, Inputs: ins, Outputs: []*ir.Value{outv}, Attrs: ir.Attrs{}}
		outv.Producer = m
		nodes = append(nodes, m)
		return m
	}
	src := x
	if padded {
		pads := make([]int64, 2*(nd+2))
		shape := x.Shape.Clone()
		for i := 0; i < nd; i++ {
			pads[2+i], pads[nd+4+i] = int64(padBegin[i]), int64(padEnd[i])
			shape[2+i] += padBegin[i] + padEnd[i]
		}
		pv := newConst(nm.value(base+"/pads"), ir.NewInt(ir.Shape{len(pads)}, pads))
		src = newValue("/padded", shape)
		p := addNode("Pad", "/pad", src, x, pv)
		p.Attrs["mode"] = ir.Attr{Kind: ir.AttrString, String: "edge"}
	}
	// One Slice per tap: on every spatial axis, start t·dilation, step
	// stride, outSize elements.
	outShape := append(ir.Shape{x.Shape[0], x.Shape[1]}, outSize...)
	axes := make([]int64, nd)
	steps := make([]int64, nd)
	for i := range axes {
		axes[i], steps[i] = int64(2+i), int64(stride[i])
	}
	axesV := newConst(nm.value(base+"/axes"), ir.NewInt(ir.Shape{nd}, axes))
	stepsV := newConst(nm.value(base+"/steps"), ir.NewInt(ir.Shape{nd}, steps))
	var taps []*ir.Value
	tap := make([]int, nd)
	for {
		starts, ends := make([]int64, nd), make([]int64, nd)
		suffix := "/tap"
		for i := 0; i < nd; i++ {
			starts[i] = int64(tap[i] * dil[i])
			ends[i] = starts[i] + int64((outSize[i]-1)*stride[i]+1)
			suffix += fmt.Sprintf("_%d", tap[i])
		}
		sv := newConst(nm.value(base+suffix+"/starts"), ir.NewInt(ir.Shape{nd}, starts))
		ev := newConst(nm.value(base+suffix+"/ends"), ir.NewInt(ir.Shape{nd}, ends))
		t := newValue(suffix, outShape.Clone())
		addNode("Slice", suffix, t, src, sv, ev, axesV, stepsV)
		taps = append(taps, t)
		a := nd - 1
		for ; a >= 0; a-- {
			if tap[a]++; tap[a] < kernel[a] {
				break
			}
			tap[a] = 0
		}
		if a < 0 {
			break
		}
	}
	// Balanced tree of pairwise maxima; the root takes over the output.
	half := newConst(nm.value(base+"/half"), ir.NewFloat(ir.Shape{}, []float64{0.5}))
	level := 0
	for len(taps) > 1 {
		level++
		var next []*ir.Value
		for i := 0; i+1 < len(taps); i += 2 {
			a, b := taps[i], taps[i+1]
			suffix := fmt.Sprintf("/max%d_%d", level, i/2)
			sum := newValue(suffix+"/sum", outShape.Clone())
			addNode("Add", suffix+"/sum", sum, a, b)
			mean := newValue(suffix+"/mean", outShape.Clone())
			addNode("Mul", suffix+"/mean", mean, sum, half)
			diff := newValue(suffix+"/diff", outShape.Clone())
			addNode("Sub", suffix+"/diff", diff, a, b)
			abs := newValue(suffix+"/abs", outShape.Clone())
			addNode("Abs", suffix+"/abs", abs, diff)
			hab := newValue(suffix+"/halfabs", outShape.Clone())
			addNode("Mul", suffix+"/halfabs", hab, abs, half)
			var m *ir.Value
			if len(taps) == 2 {
				m = out
			} else {
				m = newValue(suffix, outShape.Clone())
			}
			addNode("Add", suffix, m, mean, hab)
			next = append(next, m)
		}
		if len(taps)%2 == 1 {
			next = append(next, taps[len(taps)-1])
		}
		taps = next
	}
	if taps[0] != out {
		// A one-element window: the single tap is the output.
		last := nodes[len(nodes)-1]
		last.Outputs[0] = out
		out.Producer = last
	}
	if out.Shape == nil {
		out.Shape = outShape
	}
	return nodes, nil
}
