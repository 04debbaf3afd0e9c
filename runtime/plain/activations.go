// Activation kernels: Relu, LeakyRelu, PRelu, Sigmoid, HardSigmoid, Tanh,
// Softplus, Elu, Selu, Gelu (erf or tanh form, as in opset 20), the internal
// SiLU (x·sigmoid(x)) and Softmax (opset < 13 coerces the input to 2-D at
// axis; from opset 13 it works along one axis).

package plain

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Relu", unaryKernel(
		func(x float64) float64 {
			if x < 0 {
				return 0
			}
			return x
		},
		func(x int64) int64 { return max(x, 0) }))
	register("LeakyRelu", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		alpha := n.Attrs.Float("alpha", 0.01)
		return floatActivation(in, func(x float64) float64 {
			if x < 0 {
				return alpha * x
			}
			return x
		})
	})
	register("PRelu", kernelPRelu)
	register("Sigmoid", unaryFloatKernel(sigmoid))
	register("HardSigmoid", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		alpha := n.Attrs.Float("alpha", 0.2)
		beta := n.Attrs.Float("beta", 0.5)
		return floatActivation(in, func(x float64) float64 {
			return math.Max(0, math.Min(1, alpha*x+beta))
		})
	})
	register("Tanh", unaryFloatKernel(math.Tanh))
	register("Softplus", unaryFloatKernel(softplus))
	register("Elu", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		alpha := n.Attrs.Float("alpha", 1)
		return floatActivation(in, func(x float64) float64 {
			if x < 0 {
				return alpha * math.Expm1(x)
			}
			return x
		})
	})
	register("Selu", func(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
		alpha := n.Attrs.Float("alpha", 1.67326319217681884765625)
		gamma := n.Attrs.Float("gamma", 1.05070102214813232421875)
		return floatActivation(in, func(x float64) float64 {
			if x <= 0 {
				return gamma * alpha * math.Expm1(x)
			}
			return gamma * x
		})
	})
	register("Gelu", kernelGelu)
	register("SiLU", unaryFloatKernel(func(x float64) float64 { return x * sigmoid(x) }))
	register("Softmax", kernelSoftmax)
}

// floatActivation applies f to the single float input.
func floatActivation(in []*ir.Tensor, f func(float64) float64) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	return []*ir.Tensor{mapFloat(in[0], f)}, nil
}

// sigmoid is the logistic function, evaluated without overflow.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1+exp(x)), evaluated without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// kernelPRelu is ONNX PRelu: x<0 ? slope*x : x, with slope broadcast to X's
// shape (unidirectionally).
func kernelPRelu(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 2); err != nil {
		return nil, err
	}
	x, slope := in[0], in[1]
	shape, err := broadcastShape(x.Shape, slope.Shape)
	if err != nil || !shape.Equal(x.Shape) {
		return nil, fmt.Errorf("slope of shape %v does not broadcast to X's shape %v", slope.Shape, x.Shape)
	}
	var is []int
	if !slope.Shape.Equal(x.Shape) {
		is = broadcastIndex(slope.Shape, x.Shape)
	}
	if !x.DType.IsFloat() && !slope.DType.IsFloat() {
		out := &ir.Tensor{DType: x.DType, Shape: x.Shape.Clone(), Int: make([]int64, len(x.Int))}
		for k, v := range x.Int {
			if v < 0 {
				v *= slope.Int[bcAt(is, k)]
			}
			out.Int[k] = v
		}
		wrapInts(x.DType, out.Int)
		return []*ir.Tensor{out}, nil
	}
	xf, sf := x.Floats(), slope.Floats()
	out := floatLike(x, x.Shape.Clone())
	for k, v := range xf {
		if v < 0 {
			v *= sf[bcAt(is, k)]
		}
		out.Float[k] = v
	}
	return []*ir.Tensor{out}, nil
}

// kernelGelu is ONNX Gelu (opset 20): approximate="none" uses erf,
// approximate="tanh" the tanh approximation.
func kernelGelu(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	switch approx := n.Attrs.String("approximate", "none"); approx {
	case "none":
		return floatActivation(in, func(x float64) float64 {
			return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		})
	case "tanh":
		c := math.Sqrt(2 / math.Pi)
		return floatActivation(in, func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x)))
		})
	default:
		return nil, fmt.Errorf("approximate=%q: want \"none\" or \"tanh\"", approx)
	}
}

// kernelSoftmax is ONNX Softmax. Before opset 13 the input is viewed as 2-D,
// [prod(dims[:axis]), prod(dims[axis:])] (default axis 1), and normalized
// along the second dimension; from opset 13 it is normalized along axis
// (default -1).
func kernelSoftmax(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if err := needInputs(in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	rank := len(x.Shape)
	xf := x.Floats()
	out := floatLike(x, x.Shape.Clone())
	if rank == 0 {
		// A scalar normalizes to 1 (NaN stays NaN).
		if len(xf) == 1 {
			out.Float[0] = math.Exp(xf[0] - xf[0])
		}
		return []*ir.Tensor{out}, nil
	}
	var outer, length, inner int
	if opset < 13 {
		axis := n.Attrs.Int("axis", 1)
		a := int(axis)
		if a < 0 {
			a += rank
		}
		if a < 0 || a > rank {
			return nil, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
		}
		outer, length, inner = 1, 1, 1
		for i, d := range x.Shape {
			if i < a {
				outer *= d
			} else {
				length *= d
			}
		}
	} else {
		a, err := normAxis(n.Attrs.Int("axis", -1), rank)
		if err != nil {
			return nil, err
		}
		outer, length, inner = 1, x.Shape[a], 1
		for i, d := range x.Shape {
			switch {
			case i < a:
				outer *= d
			case i > a:
				inner *= d
			}
		}
	}
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			base := o*length*inner + i
			m := math.Inf(-1)
			for j := 0; j < length; j++ {
				if v := xf[base+j*inner]; v > m || math.IsNaN(v) {
					m = v
				}
			}
			sum := 0.0
			for j := 0; j < length; j++ {
				e := math.Exp(xf[base+j*inner] - m)
				out.Float[base+j*inner] = e
				sum += e
			}
			for j := 0; j < length; j++ {
				out.Float[base+j*inner] /= sum
			}
		}
	}
	return []*ir.Tensor{out}, nil
}
