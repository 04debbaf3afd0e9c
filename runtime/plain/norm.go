// Normalization kernels of the plaintext interpreter: inference-mode
// BatchNormalization (including the pre-opset-9 per-activation variant,
// spatial=0) and LayerNormalization (opset 17 semantics, with the optional
// Mean and InvStdDev outputs).

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("BatchNormalization", batchNormKernel)
	register("LayerNormalization", layerNormKernel)
}

// normFloatInput checks that input i is present, well formed and floating.
func normFloatInput(in []*ir.Tensor, i int, name string) (*ir.Tensor, error) {
	if i >= len(in) || in[i] == nil {
		return nil, fmt.Errorf("missing input %s", name)
	}
	t := in[i]
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("input %s: %v", name, err)
	}
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("input %s has element type %s, want a float type", name, t.DType)
	}
	return t, nil
}

// batchNormKernel: Y = (X - mean) / sqrt(var + epsilon) * scale + B with the
// statistics given as inputs, per channel (axis 1) or, for spatial=0 before
// opset 9, per activation.
func batchNormKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	names := []string{"X", "scale", "B", "input_mean", "input_var"}
	ts := make([]*ir.Tensor, len(names))
	for i, name := range names {
		t, err := normFloatInput(in, i, name)
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	extra := countOutputs(n) > 1
	if opset >= 14 {
		if n.Attrs.Int("training_mode", 0) != 0 {
			return nil, unsupported("training-mode BatchNormalization")
		}
		if extra {
			return nil, fmt.Errorf("BatchNormalization has running-statistics outputs but training_mode is 0")
		}
	} else if extra {
		return nil, unsupported("training-mode BatchNormalization")
	}
	if opset < 7 {
		return nil, unsupported("BatchNormalization before opset 7")
	}
	x := ts[0]
	if len(x.Shape) < 2 {
		return nil, fmt.Errorf("BatchNormalization input X must have rank >= 2 (N, C, ...), got shape %v", x.Shape)
	}
	c := x.Shape[1]
	sp := x.Shape[2:].Size()
	perActivation := opset < 9 && n.Attrs.Int("spatial", 1) == 0
	width := c // parameters per sample
	if perActivation {
		width = c * sp
	}
	for i := 1; i < len(ts); i++ {
		if ts[i].Len() != width {
			want := ir.Shape{c}
			if perActivation {
				want = append(want, x.Shape[2:]...)
			}
			return nil, fmt.Errorf("BatchNormalization input %s has shape %v, want %v", names[i], ts[i].Shape, want)
		}
	}
	eps := n.Attrs.Float("epsilon", 1e-5)
	// Fold into y = x*mul + add per parameter slot.
	scale, bias, mean, variance := ts[1].Float, ts[2].Float, ts[3].Float, ts[4].Float
	mul := make([]float64, width)
	add := make([]float64, width)
	for j := 0; j < width; j++ {
		mul[j] = scale[j] / math.Sqrt(variance[j]+eps)
		add[j] = bias[j] - mean[j]*mul[j]
	}
	y := floatLike(x, x.Shape.Clone())
	xf := x.Float
	for b := 0; b < x.Shape[0]; b++ {
		for ch := 0; ch < c; ch++ {
			off := (b*c + ch) * sp
			xs, ys := xf[off:off+sp], y.Float[off:off+sp]
			if perActivation {
				ms, as := mul[ch*sp:(ch+1)*sp], add[ch*sp:(ch+1)*sp]
				for i, v := range xs {
					ys[i] = v*ms[i] + as[i]
				}
				continue
			}
			m, a := mul[ch], add[ch]
			for i, v := range xs {
				ys[i] = v*m + a
			}
		}
	}
	return []*ir.Tensor{y}, nil
}

// layerNormKernel normalizes X over its axes [axis, rank) to zero mean and
// unit variance, then scales by Scale and shifts by the optional B (both
// broadcast to X.shape[axis:]). Outputs Y and, when requested, Mean and
// InvStdDev of shape X.shape[:axis] + [1]*(rank-axis).
func layerNormKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	x, err := normFloatInput(in, 0, "X")
	if err != nil {
		return nil, err
	}
	scale, err := normFloatInput(in, 1, "Scale")
	if err != nil {
		return nil, err
	}
	var bias *ir.Tensor
	if len(in) > 2 && in[2] != nil {
		if bias, err = normFloatInput(in, 2, "B"); err != nil {
			return nil, err
		}
	}
	rank := len(x.Shape)
	if rank == 0 {
		return nil, fmt.Errorf("LayerNormalization input X must have rank >= 1")
	}
	axis, err := normAxis(n.Attrs.Int("axis", -1), rank)
	if err != nil {
		return nil, fmt.Errorf("LayerNormalization: %v", err)
	}
	eps := n.Attrs.Float("epsilon", 1e-5)
	stash := n.Attrs.Int("stash_type", 1)
	normShape := x.Shape[axis:]
	d := normShape.Size()
	rows := x.Shape[:axis].Size()
	if err := checkUnidirectional(scale.Shape, normShape); err != nil {
		return nil, fmt.Errorf("LayerNormalization Scale: %v", err)
	}
	sIdx := broadcastIndex(scale.Shape, normShape)
	var bIdx []int
	if bias != nil {
		if err := checkUnidirectional(bias.Shape, normShape); err != nil {
			return nil, fmt.Errorf("LayerNormalization B: %v", err)
		}
		bIdx = broadcastIndex(bias.Shape, normShape)
	}
	y := floatLike(x, x.Shape.Clone())
	statShape := x.Shape[:axis].Clone()
	for range normShape {
		statShape = append(statShape, 1)
	}
	statType := ir.Float32
	if stash != 1 {
		statType = x.DType
	}
	means := &ir.Tensor{DType: statType, Shape: statShape, Float: make([]float64, rows)}
	inv := &ir.Tensor{DType: statType, Shape: statShape.Clone(), Float: make([]float64, rows)}
	for r := 0; r < rows; r++ {
		xs, ys := x.Float[r*d:(r+1)*d], y.Float[r*d:(r+1)*d]
		mean := 0.0
		for _, v := range xs {
			mean += v
		}
		mean /= float64(d)
		variance := 0.0
		for _, v := range xs {
			variance += (v - mean) * (v - mean)
		}
		variance /= float64(d)
		is := 1 / math.Sqrt(variance+eps)
		for i, v := range xs {
			ys[i] = (v - mean) * is * scale.Float[sIdx[i]]
			if bias != nil {
				ys[i] += bias.Float[bIdx[i]]
			}
		}
		means.Float[r], inv.Float[r] = mean, is
	}
	return []*ir.Tensor{y, means, inv}, nil
}
