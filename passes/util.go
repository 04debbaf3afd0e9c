package passes

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir"
)

// namer hands out value and node names that are unused in a graph.
type namer struct{ used map[string]bool }

func newNamer(g *ir.Graph) *namer {
	nm := &namer{used: map[string]bool{}}
	for _, v := range g.Values() {
		nm.used[v.Name] = true
	}
	for _, n := range g.Nodes {
		nm.used["node:"+n.Name] = true
	}
	return nm
}

// value returns base, or base_2, base_3, ... when base is taken, and reserves
// it.
func (nm *namer) value(base string) string { return nm.fresh("", base) }

// node is value for node names (a separate name space).
func (nm *namer) node(base string) string { return nm.fresh("node:", base) }

func (nm *namer) fresh(space, base string) string {
	name := base
	for i := 2; nm.used[space+name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	nm.used[space+name] = true
	return name
}

// newConst returns a constant value holding t.
func newConst(name string, t *ir.Tensor) *ir.Value {
	return &ir.Value{Name: name, DType: t.DType, Shape: t.Shape.Clone(), Const: t}
}

// users returns the distinct nodes reading v, in node order.
func users(uses map[*ir.Value][]*ir.Node, v *ir.Value) []*ir.Node {
	return distinct(uses[v])
}

// distinct returns the distinct elements of xs, in order of first
// appearance (xs itself when it has fewer than two).
func distinct[T comparable](xs []T) []T {
	if len(xs) < 2 {
		return xs
	}
	var out []T
	for _, x := range xs {
		dup := false
		for _, y := range out {
			dup = dup || x == y
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}

// soleUser returns the only node reading v, or nil when v has other readers
// or is a graph output (so that it cannot be rewritten away).
func soleUser(g *ir.Graph, uses map[*ir.Value][]*ir.Node, v *ir.Value) *ir.Node {
	us := users(uses, v)
	if len(us) != 1 || g.IsOutput(v) {
		return nil
	}
	return us[0]
}

// producedBy returns v's producer when it is an op node, else nil.
func producedBy(v *ir.Value, op string) *ir.Node {
	if v == nil || v.Producer == nil || v.Producer.Op != op {
		return nil
	}
	return v.Producer
}

// other returns the input of the two-input node n that is not v, or nil
// when v is not one of its two inputs. When both inputs are v, it returns v.
func other(n *ir.Node, v *ir.Value) *ir.Value {
	if len(n.Inputs) != 2 {
		return nil
	}
	switch v {
	case n.Inputs[0]:
		return n.Inputs[1]
	case n.Inputs[1]:
		return n.Inputs[0]
	}
	return nil
}

// scalarConst returns the value of a constant holding one element.
func scalarConst(v *ir.Value) (float64, bool) {
	if !v.IsConst() || v.Const.Len() != 1 {
		return 0, false
	}
	return v.Const.Floats()[0], true
}

// isScalarNear reports whether v is a one-element constant within tol of
// want, and whether broadcasting it against a tensor of shape like keeps that
// shape (its rank is no larger).
func isScalarNear(v *ir.Value, want, tol float64, like ir.Shape) bool {
	x, ok := scalarConst(v)
	if !ok || math.Abs(x-want) > tol {
		return false
	}
	if like == nil {
		return len(v.Const.Shape) == 0
	}
	return len(v.Const.Shape) <= len(like)
}

// lastAxisVector returns the data of a constant that broadcasts over the last
// axis of a tensor of rank rank whose last dimension is m: shape [m], [1] or
// [], optionally with leading ones, and rank at most rank (rank < 0: not
// checked). A size-1 constant is expanded to m elements when m > 0.
func lastAxisVector(v *ir.Value, rank, m int) ([]float64, bool) {
	if !v.IsConst() || !v.Const.DType.IsFloat() {
		return nil, false
	}
	s := v.Const.Shape
	if rank >= 0 && len(s) > rank {
		return nil, false
	}
	for i := 0; i+1 < len(s); i++ {
		if s[i] != 1 {
			return nil, false
		}
	}
	data := v.Const.Float
	switch {
	case len(data) == m:
		return append([]float64(nil), data...), true
	case len(data) == 1 && m > 0:
		out := make([]float64, m)
		for i := range out {
			out[i] = data[0]
		}
		return out, true
	}
	return nil, false
}

// floatDType is the float dtype of values derived from v: v's own when it is
// a float type, else Float32.
func floatDType(d ir.DType) ir.DType {
	if d.IsFloat() {
		return d
	}
	return ir.Float32
}

// replaceNodes puts repl where the last of dead stands in g.Nodes and removes
// the others of dead. repl's inputs must be defined before the first of dead
// (or be constants); the graph stays in topological order.
func replaceNodes(g *ir.Graph, repl *ir.Node, dead ...*ir.Node) {
	kill := make(map[*ir.Node]bool, len(dead))
	for _, n := range dead {
		kill[n] = true
	}
	last := -1
	for i, n := range g.Nodes {
		if kill[n] {
			last = i
		}
	}
	out := g.Nodes[:0]
	for i, n := range g.Nodes {
		switch {
		case i == last && repl != nil:
			out = append(out, repl)
		case kill[n]:
		default:
			out = append(out, n)
		}
	}
	for i := len(out); i < len(g.Nodes); i++ {
		g.Nodes[i] = nil
	}
	g.Nodes = out
}

// rewriteFunc tries one rewrite rooted at n; it reports whether it changed
// the graph. uses is g.Consumers() as of the call.
type rewriteFunc func(g *ir.Graph, nm *namer, uses map[*ir.Value][]*ir.Node, n *ir.Node) (bool, error)

// rewrite applies try at every node, again and again until no rewrite
// applies, recomputing the consumers after each change, and re-sorts g.
func rewrite(g *ir.Graph, try rewriteFunc) error {
	nm := newNamer(g)
	for {
		uses := g.Consumers()
		changed := false
		for _, n := range g.Nodes {
			ok, err := try(g, nm, uses, n)
			if err != nil {
				return err
			}
			if ok {
				changed = true
				break
			}
		}
		if !changed {
			break
		}
	}
	return g.Sort()
}
