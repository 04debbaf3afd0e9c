package passes

import (
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

// FoldBatchNorm folds an inference-mode BatchNormalization into the layer
// computing its input: y = (x-mean)/sqrt(var+eps)*scale + bias is a per-channel
// affine map s*x + t, so the layer's weights for output channel c are scaled
// by s[c] and its bias becomes s[c]*b[c] + t[c]. The layer takes over the
// BatchNormalization's output value (and name).
//
// Preconditions: the layer's output is read by the BatchNormalization only
// and is no graph output; all BatchNormalization parameters and the layer's
// weights and bias are constants; training_mode is 0 and only the first
// output is used. Layers: Conv (any kernel rank and groups; channels are
// axis 1 of its output); Gemm (transA any, transB any, alpha, beta; the
// output's axis 1 is the channel axis; C absent or broadcastable to one row);
// Dense with a rank-2 output (its last axis is then the channel axis).
// BatchNormalizations that do not fit stay.
func FoldBatchNorm(g *ir.Graph) error {
	return rewrite(g, foldBatchNorm)
}

func foldBatchNorm(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, bn *ir.Node) (bool, error) {
	if bn.Op != "BatchNormalization" || len(bn.Inputs) != 5 || bn.Attrs.Int("training_mode", 0) != 0 {
		return false, nil
	}
	for _, o := range bn.Outputs[1:] {
		if o != nil && used(g, o) {
			return false, nil
		}
	}
	x := bn.Inputs[0]
	layer := x.Producer
	if layer == nil || soleUser(g, uses, x) != bn || len(layer.Outputs) != 1 {
		return false, nil
	}
	var c int // channels
	switch layer.Op {
	case "Conv":
		w := layer.Input(1)
		if !w.IsConst() || len(w.Const.Shape) < 1 {
			return false, nil
		}
		c = w.Const.Shape[0]
	case "Gemm", "Dense":
		if len(x.Shape) != 2 {
			return false, nil
		}
		c = x.Shape[1]
	default:
		return false, nil
	}
	s, t, ok := bnAffine(bn, c)
	if !ok {
		return false, nil
	}
	var w, b *ir.Tensor
	switch layer.Op {
	case "Conv":
		w, b, ok = scaleConv(layer, s, t)
	case "Gemm":
		w, b, ok = scaleGemm(layer, s, t)
	case "Dense":
		w, b, ok = scaleDense(layer, s, t)
	}
	if !ok {
		return false, nil
	}
	wv := newConst(nm.value(layer.Inputs[1].Name+"_bnfold"), w)
	bname := bn.Inputs[2].Name + "_bnfold"
	if old := layer.Input(2); old != nil {
		bname = old.Name + "_bnfold"
	}
	bv := newConst(nm.value(bname), b)
	ins := []*ir.Value{layer.Inputs[0], wv, bv}
	if layer.Op == "Gemm" {
		attrs := ir.Attrs{}
		for k, v := range layer.Attrs {
			attrs[k] = v
		}
		attrs["beta"] = ir.Attr{Kind: ir.AttrFloat, Float: 1}
		layer.Attrs = attrs
	}
	layer.Inputs = ins
	y := bn.Outputs[0]
	layer.Outputs[0] = y
	y.Producer = layer
	replaceNodes(g, nil, bn)
	return true, nil
}

// bnAffine returns the per-channel scale s and shift t of an inference
// BatchNormalization with c channels.
func bnAffine(bn *ir.Node, c int) (s, t []float64, ok bool) {
	var p [4][]float64 // scale, bias, mean, var
	for i := range p {
		if p[i], ok = lastAxisVector(bn.Inputs[1+i], 1, c); !ok {
			return nil, nil, false
		}
	}
	eps := bn.Attrs.Float("epsilon", 1e-5)
	s, t = make([]float64, c), make([]float64, c)
	for i := range s {
		s[i] = p[0][i] / math.Sqrt(p[3][i]+eps)
		t[i] = p[1][i] - p[2][i]*s[i]
	}
	return s, t, true
}

// scaleConv returns the weights of a Conv scaled by s per output channel and
// its bias mapped through s*b + t.
func scaleConv(conv *ir.Node, s, t []float64) (w, b *ir.Tensor, ok bool) {
	wc := conv.Inputs[1].Const
	if !wc.DType.IsFloat() || wc.Shape[0] != len(s) {
		return nil, nil, false
	}
	w = wc.Clone()
	per := len(w.Float) / len(s)
	for oc := range s {
		for i := oc * per; i < (oc+1)*per; i++ {
			w.Float[i] *= s[oc]
		}
	}
	bias := make([]float64, len(s))
	if bv := conv.Input(2); bv != nil {
		if bias, ok = lastAxisVector(bv, 1, len(s)); !ok {
			return nil, nil, false
		}
	}
	return w, affineBias(wc.DType, bias, s, t), true
}

// scaleGemm returns Gemm's B scaled by s per output column and its C as a
// row vector mapped through s*beta*c + t (the new beta is 1).
func scaleGemm(gemm *ir.Node, s, t []float64) (w, b *ir.Tensor, ok bool) {
	bv := gemm.Input(1)
	if !bv.IsConst() || !bv.Const.DType.IsFloat() || len(bv.Const.Shape) != 2 {
		return nil, nil, false
	}
	n := len(s)
	w = bv.Const.Clone()
	rows, cols := w.Shape[0], w.Shape[1]
	transB := gemm.Attrs.Int("transB", 0) != 0
	if transB && rows != n || !transB && cols != n {
		return nil, nil, false
	}
	for r := 0; r < rows; r++ {
		for col := 0; col < cols; col++ {
			if transB {
				w.Float[r*cols+col] *= s[r]
			} else {
				w.Float[r*cols+col] *= s[col]
			}
		}
	}
	bias := make([]float64, n)
	if cv := gemm.Input(2); cv != nil {
		if bias, ok = lastAxisVector(cv, 2, n); !ok {
			return nil, nil, false
		}
		beta := gemm.Attrs.Float("beta", 1)
		for i := range bias {
			bias[i] *= beta
		}
	}
	return w, affineBias(w.DType, bias, s, t), true
}

// scaleDense returns Dense's W [K, M] scaled by s per column and its bias
// mapped through s*b + t.
func scaleDense(d *ir.Node, s, t []float64) (w, b *ir.Tensor, ok bool) {
	wv := d.Input(1)
	if !wv.IsConst() || !wv.Const.DType.IsFloat() || len(wv.Const.Shape) != 2 || wv.Const.Shape[1] != len(s) {
		return nil, nil, false
	}
	w = wv.Const.Clone()
	m := len(s)
	for i := range w.Float {
		w.Float[i] *= s[i%m]
	}
	bias := make([]float64, m)
	if bv := d.Input(2); bv != nil {
		if bias, ok = lastAxisVector(bv, 1, m); !ok {
			return nil, nil, false
		}
	}
	return w, affineBias(w.DType, bias, s, t), true
}

// affineBias returns the vector s*b + t.
func affineBias(d ir.DType, b, s, t []float64) *ir.Tensor {
	out := make([]float64, len(s))
	for i := range out {
		out[i] = s[i]*b[i] + t[i]
	}
	return &ir.Tensor{DType: floatDType(d), Shape: ir.Shape{len(out)}, Float: out}
}
