package passes

import (
	"github.com/ciphercut/ciphercut/ir"
)

// FuseMatMulAdd turns fully connected layers into Dense nodes: Dense(X, W, B)
// computes X·W + B over the last axis of X, with W a constant [K, M] and B an
// optional constant [M].
//
//   - MatMul(X, W) with W a constant 2-D float matrix becomes Dense(X, W).
//   - Gemm(A, B, C) with transA=0 and B constant becomes Dense(A, W, bias)
//     with W = alpha*B (transposed when transB=1) and bias = beta*C; C must
//     be absent or broadcastable to [M] (shape [], [1], [M], [1, M] or
//     [1, 1]).
//   - A Dense whose output is read only by an Add of a constant that
//     broadcasts over the last axis (all dimensions 1 but the last, which is
//     M or 1, and rank at most the output's) absorbs the Add into its bias;
//     the Add's operands may come in either order.
//
// So MatMul+Add and Gemm+Add chains end as one Dense that takes over the
// last node's output value. Other MatMuls and Gemms stay.
func FuseMatMulAdd(g *ir.Graph) error {
	return rewrite(g, fuseDense)
}

func fuseDense(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, n *ir.Node) (bool, error) {
	switch n.Op {
	case "MatMul":
		return matMulToDense(n), nil
	case "Gemm":
		return gemmToDense(nm, n), nil
	case "Dense":
		return absorbAdd(g, nm, uses, n), nil
	}
	return false, nil
}

func matMulToDense(n *ir.Node) bool {
	x, w := n.Input(0), n.Input(1)
	if len(n.Inputs) != 2 || x == nil || x.IsConst() || !isMatrix(w) || len(n.Outputs) != 1 {
		return false
	}
	if x.Shape != nil && len(x.Shape) < 1 {
		return false
	}
	n.Op = "Dense"
	n.Attrs = nil
	return true
}

func gemmToDense(nm *namer, n *ir.Node) bool {
	a, b, c := n.Input(0), n.Input(1), n.Input(2)
	if a == nil || a.IsConst() || !isMatrix(b) || n.Attrs.Int("transA", 0) != 0 || len(n.Outputs) != 1 {
		return false
	}
	alpha, beta := n.Attrs.Float("alpha", 1), n.Attrs.Float("beta", 1)
	transB := n.Attrs.Int("transB", 0) != 0
	bt := b.Const
	m := bt.Shape[1]
	if transB {
		m = bt.Shape[0]
	}
	var bias *ir.Value
	if c != nil {
		data, ok := lastAxisVector(c, 2, m)
		if !ok {
			return false
		}
		for i := range data {
			data[i] *= beta
		}
		bias = newConst(nm.value(c.Name+"_dense"), &ir.Tensor{DType: floatDType(c.DType), Shape: ir.Shape{m}, Float: data})
	}
	w := b
	if transB || alpha != 1 {
		wt := transpose2D(bt, transB)
		for i := range wt.Float {
			wt.Float[i] *= alpha
		}
		w = newConst(nm.value(b.Name+"_dense"), wt)
	}
	n.Op = "Dense"
	n.Attrs = nil
	n.Inputs = []*ir.Value{a, w}
	if bias != nil {
		n.Inputs = append(n.Inputs, bias)
	}
	return true
}

// absorbAdd merges Add(Dense(...), const) into the Dense's bias.
func absorbAdd(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, d *ir.Node) bool {
	out := d.Outputs[0]
	add := soleUser(g, uses, out)
	if add == nil || add.Op != "Add" || !isMatrix(d.Input(1)) {
		return false
	}
	c := other(add, out)
	if c == nil || c == out {
		return false
	}
	m := d.Inputs[1].Const.Shape[1]
	rank := 1
	if out.Shape != nil {
		rank = len(out.Shape)
	}
	data, ok := lastAxisVector(c, rank, m)
	if !ok {
		return false
	}
	if old := d.Input(2); old != nil {
		prev, ok := lastAxisVector(old, 1, m)
		if !ok {
			return false
		}
		for i := range data {
			data[i] += prev[i]
		}
	}
	bias := c // when the Add's constant is already a bias vector
	if !c.Const.Shape.Equal(ir.Shape{m}) || d.Input(2) != nil {
		bias = newConst(nm.value(c.Name+"_dense"), &ir.Tensor{DType: floatDType(c.DType), Shape: ir.Shape{m}, Float: data})
	}
	d.Inputs = append(d.Inputs[:2], bias)
	y := add.Outputs[0]
	d.Outputs[0] = y
	y.Producer = d
	replaceNodes(g, nil, add)
	return true
}

// isMatrix reports whether v is a 2-D float constant.
func isMatrix(v *ir.Value) bool {
	return v.IsConst() && v.Const.DType.IsFloat() && len(v.Const.Shape) == 2
}

// transpose2D returns a copy of the matrix t, transposed when trans is set.
func transpose2D(t *ir.Tensor, trans bool) *ir.Tensor {
	if !trans {
		return t.Clone()
	}
	r, c := t.Shape[0], t.Shape[1]
	out := &ir.Tensor{DType: t.DType, Shape: ir.Shape{c, r}, Float: make([]float64, r*c)}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out.Float[j*r+i] = t.Float[i*c+j]
		}
	}
	return out
}
