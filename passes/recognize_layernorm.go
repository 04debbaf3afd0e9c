package passes

import (
	"github.com/ciphercut/ciphercut/ir"
)

// RecognizeLayerNorm replaces the decomposition of layer normalization over
// the last axis that torch exports below opset 17,
//
//	mean = ReduceMean(x, axes=[-1])
//	d    = Sub(x, mean)
//	v    = ReduceMean(Pow(d, 2), axes=[-1])      (or Mul(d, d))
//	n    = Div(d, Sqrt(Add(v, eps)))              (Add in either order)
//	y    = Add(Mul(n, gamma), beta)               (either order; both optional)
//
// by LayerNormalization(x, gamma, beta) {axis=-1, epsilon=eps}, which takes
// over y. The axes may be given as the attribute (opset < 18) or as a
// constant second input, as -1 or rank-1; keepdims must be 1. gamma and beta
// are constants broadcasting over the last axis; a missing gamma becomes
// ones. Every intermediate value must be read only inside the pattern and
// not be a graph output; x's last dimension must be known (run InferShapes
// first).
func RecognizeLayerNorm(g *ir.Graph) error {
	return rewrite(g, recognizeLayerNorm)
}

func recognizeLayerNorm(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, rm1 *ir.Node) (bool, error) {
	if rm1.Op != "ReduceMean" || len(rm1.Outputs) != 1 {
		return false, nil
	}
	x := rm1.Inputs[0]
	if x == nil || x.IsConst() || len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] <= 0 || !meanOverLastAxis(rm1, len(x.Shape)) {
		return false, nil
	}
	rank, c := len(x.Shape), x.Shape[len(x.Shape)-1]
	next := func(v *ir.Value, op string) *ir.Node {
		n := soleUser(g, uses, v)
		if n == nil || n.Op != op || len(n.Outputs) != 1 {
			return nil
		}
		return n
	}
	// d = x - mean
	mean := rm1.Outputs[0]
	sub := next(mean, "Sub")
	if sub == nil || sub.Inputs[0] != x || sub.Inputs[1] != mean {
		return false, nil
	}
	d := sub.Outputs[0]
	du := users(uses, d)
	if len(du) != 2 || g.IsOutput(d) {
		return false, nil
	}
	// var = mean(d²); the square and the division are d's two readers.
	var sq, div *ir.Node
	for _, u := range du {
		switch {
		case u.Op == "Pow" && len(u.Inputs) == 2 && u.Inputs[0] == d && isScalarNear(u.Inputs[1], 2, 1e-6, d.Shape),
			u.Op == "Mul" && len(u.Inputs) == 2 && u.Inputs[0] == d && u.Inputs[1] == d:
			sq = u
		case u.Op == "Div" && len(u.Inputs) == 2 && u.Inputs[0] == d:
			div = u
		}
	}
	if sq == nil || div == nil || len(sq.Outputs) != 1 {
		return false, nil
	}
	rm2 := next(sq.Outputs[0], "ReduceMean")
	if rm2 == nil || !meanOverLastAxis(rm2, rank) {
		return false, nil
	}
	v := rm2.Outputs[0]
	addEps := next(v, "Add")
	if addEps == nil {
		return false, nil
	}
	epsV := other(addEps, v)
	eps, ok := scalarConst(epsV)
	if !ok || len(epsV.Const.Shape) > rank {
		return false, nil
	}
	sqrt := next(addEps.Outputs[0], "Sqrt")
	if sqrt == nil || next(sqrt.Outputs[0], "Div") != div || div.Inputs[1] != sqrt.Outputs[0] {
		return false, nil
	}
	dead := []*ir.Node{rm1, sub, sq, rm2, addEps, sqrt, div}
	y := div.Outputs[0]
	// Optional affine part.
	var gamma, beta *ir.Value
	if mul := next(y, "Mul"); mul != nil {
		if gamma = lastAxisParam(nm, other(mul, y), rank, c); gamma != nil {
			dead = append(dead, mul)
			y = mul.Outputs[0]
		}
	}
	if add := next(y, "Add"); add != nil {
		if beta = lastAxisParam(nm, other(add, y), rank, c); beta != nil {
			dead = append(dead, add)
			y = add.Outputs[0]
		}
	}
	if !y.Shape.Equal(x.Shape) && y.Shape != nil {
		return false, nil
	}
	if gamma == nil {
		ones := make([]float64, c)
		for i := range ones {
			ones[i] = 1
		}
		gamma = newConst(nm.value(rm1.Name+"_ln_scale"), &ir.Tensor{DType: floatDType(x.DType), Shape: ir.Shape{c}, Float: ones})
	}
	ln := &ir.Node{
		Name:    nm.node(rm1.Name + "_layernorm"),
		Op:      "LayerNormalization",
		Inputs:  []*ir.Value{x, gamma},
		Outputs: []*ir.Value{y},
		Attrs: ir.Attrs{
			"axis":    {Kind: ir.AttrInt, Int: -1},
			"epsilon": {Kind: ir.AttrFloat, Float: eps},
		},
	}
	if beta != nil {
		ln.Inputs = append(ln.Inputs, beta)
	}
	y.Producer = ln
	replaceNodes(g, ln, dead...)
	return true, nil
}

// meanOverLastAxis reports whether the ReduceMean rm averages its input of
// rank rank over the last axis only, keeping it.
func meanOverLastAxis(rm *ir.Node, rank int) bool {
	if rm.Attrs.Int("keepdims", 1) != 1 || len(rm.Outputs) != 1 {
		return false
	}
	axes := rm.Attrs.Ints("axes", nil)
	if !rm.Attrs.Has("axes") {
		a := rm.Input(1)
		if !a.IsConst() {
			return false
		}
		axes = a.Const.Ints()
	}
	return len(axes) == 1 && (axes[0] == -1 || axes[0] == int64(rank-1))
}

// lastAxisParam returns a constant [c] with the data of v when v broadcasts
// over the last axis of a rank-rank tensor whose last dimension is c; v
// itself when it already has shape [c].
func lastAxisParam(nm *namer, v *ir.Value, rank, c int) *ir.Value {
	data, ok := lastAxisVector(v, rank, c)
	if !ok {
		return nil
	}
	if v.Const.Shape.Equal(ir.Shape{c}) {
		return v
	}
	return newConst(nm.value(v.Name+"_ln"), &ir.Tensor{DType: v.Const.DType, Shape: ir.Shape{c}, Float: data})
}
