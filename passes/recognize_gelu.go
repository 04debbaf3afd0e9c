package passes

import (
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

// geluTol is the absolute tolerance on the constants of a decomposed GELU
// (exporters write them as float32).
const geluTol = 1e-6

// RecognizeGELU replaces the erf form of GELU that torch exports,
//
//	y = x * 0.5 * (1 + erf(x / sqrt(2)))
//
// by Gelu(x) {approximate="none"}, which takes over y. Accepted shapes: the
// Erf input is Div(x, √2) or Mul(x, 1/√2) (either operand order); the Erf is
// followed by Add(·, 1) (either order), giving t; the product of x, 0.5 and t
// is any association of two Muls: (x*t)*0.5, x*(t*0.5) or (x*0.5)*t, with
// any operand order, where *0.5 may also be a Div by 2. Constants must hold
// one element, within 1e-6 of the expected value, and not broaden x's shape.
// Every intermediate value must be read by the next node of the pattern only
// and not be a graph output.
func RecognizeGELU(g *ir.Graph) error {
	return rewrite(g, recognizeGELU)
}

func recognizeGELU(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, erf *ir.Node) (bool, error) {
	if erf.Op != "Erf" || len(erf.Inputs) != 1 || len(erf.Outputs) != 1 {
		return false, nil
	}
	// x / √2
	scaled := erf.Inputs[0]
	sc := scaled.Producer
	if sc == nil || soleUser(g, uses, scaled) != erf {
		return false, nil
	}
	x := scaleOperand(sc, math.Sqrt2, "Div")
	if x == nil {
		x = scaleOperand(sc, 1/math.Sqrt2, "Mul")
	}
	if x == nil || x.IsConst() {
		return false, nil
	}
	// 1 + erf(·)
	e := erf.Outputs[0]
	add := soleUser(g, uses, e)
	if add == nil || add.Op != "Add" || len(add.Outputs) != 1 || !isScalarNear(other(add, e), 1, geluTol, x.Shape) {
		return false, nil
	}
	t := add.Outputs[0]
	// x * 0.5 * t in any association.
	m1 := soleUser(g, uses, t)
	if m1 == nil || m1.Op != "Mul" || len(m1.Outputs) != 1 {
		return false, nil
	}
	o1 := other(m1, t)
	var y *ir.Value
	dead := []*ir.Node{sc, erf, add, m1}
	switch {
	case o1 == x || isScalarNear(o1, 0.5, geluTol, x.Shape):
		// (x*t)*0.5 or (t*0.5)*x: one more node with the missing factor.
		p := m1.Outputs[0]
		m2 := soleUser(g, uses, p)
		if m2 == nil || len(m2.Outputs) != 1 {
			return false, nil
		}
		if o1 == x && scaleOperand(m2, 0.5, "Mul") != p && scaleOperand(m2, 2, "Div") != p ||
			o1 != x && (m2.Op != "Mul" || other(m2, p) != x) {
			return false, nil
		}
		y = m2.Outputs[0]
		dead = append(dead, m2)
	default:
		// (x*0.5)*t
		h := o1
		if h == nil || h.Producer == nil {
			return false, nil
		}
		m0 := h.Producer
		if soleUser(g, uses, h) != m1 ||
			scaleOperand(m0, 0.5, "Mul") != x && scaleOperand(m0, 2, "Div") != x {
			return false, nil
		}
		y = m1.Outputs[0]
		dead = append(dead, m0)
	}
	if x.Shape != nil && y.Shape != nil && !x.Shape.Equal(y.Shape) {
		return false, nil
	}
	gelu := &ir.Node{
		Name:    nm.node(erf.Name + "_gelu"),
		Op:      "Gelu",
		Inputs:  []*ir.Value{x},
		Outputs: []*ir.Value{y},
		Attrs:   ir.Attrs{"approximate": {Kind: ir.AttrString, String: "none"}},
	}
	y.Producer = gelu
	replaceNodes(g, gelu, dead...)
	return true, nil
}

// scaleOperand returns v when n is op(v, c) (or, for Mul, op(c, v)) with c a
// one-element constant within geluTol of want that does not broaden v's
// shape; otherwise nil.
func scaleOperand(n *ir.Node, want float64, op string) *ir.Value {
	if n.Op != op || len(n.Inputs) != 2 {
		return nil
	}
	for i, c := range n.Inputs {
		if i == 0 && op != "Mul" {
			continue
		}
		v := n.Inputs[1-i]
		if v != nil && !v.IsConst() && isScalarNear(c, want, geluTol, v.Shape) {
			return v
		}
	}
	return nil
}
