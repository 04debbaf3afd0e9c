package passes

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// BindInputs fixes the shapes of graph inputs, by input name, before
// InferShapes: typically to choose the batch size of a symbolic leading
// dimension. Each shape must be static, have the input's rank (when known)
// and agree with its static dimensions. The inputs' DimNames are kept, so the
// symbolic names stay visible after binding.
func BindInputs(g *ir.Graph, shapes map[string]ir.Shape) error {
	byName := make(map[string]*ir.Value, len(g.Inputs))
	for _, in := range g.Inputs {
		byName[in.Name] = in
	}
	for name, s := range shapes {
		in, ok := byName[name]
		if !ok {
			names := make([]string, len(g.Inputs))
			for i, in := range g.Inputs {
				names[i] = in.Name
			}
			return fmt.Errorf("bind inputs: graph %q has no input %q (inputs: %v)", g.Name, name, names)
		}
		if !s.Known() {
			return fmt.Errorf("bind inputs: shape %v for input %q is not static", s, name)
		}
		if in.Shape != nil {
			bad := len(in.Shape) != len(s)
			for i := 0; !bad && i < len(s); i++ {
				bad = in.Shape[i] >= 0 && in.Shape[i] != s[i]
			}
			if bad {
				return fmt.Errorf("bind inputs: shape %v does not fit input %q of shape %v", s, name, in.Shape)
			}
		}
		in.Shape = s.Clone()
	}
	return nil
}

// InferShapes fills in the Shape and DType of every value of g by abstract
// evaluation: it runs the reference interpreter on zero-filled inputs and
// records what every node produces.
//
// Precondition: every input has a known rank. Symbolic or unknown input
// dimensions (-1) are bound to 1 unless BindInputs set them before; the
// inputs' shapes are overwritten with the bound ones, so that from here on g
// is specialized to those input shapes (the inputs' DimNames still name the
// symbolic axes). Every node needs an interpreter kernel, and no node may
// fail on zero inputs; errors name the node. A graph whose shapes depend on
// input values (a shape, index or step fed as an input) may fail on zeros:
// InferShapesFrom takes sample inputs instead.
func InferShapes(g *ir.Graph) error {
	feeds := make(map[string]*ir.Tensor, len(g.Inputs))
	for _, in := range g.Inputs {
		if in.Shape == nil {
			return fmt.Errorf("infer shapes: input %q has unknown rank; give it a shape with BindInputs", in.Name)
		}
		if in.DType == ir.Undefined {
			return fmt.Errorf("infer shapes: input %q has no element type", in.Name)
		}
		s := in.Shape.Clone()
		for i, d := range s {
			if d < 0 {
				s[i] = 1
			}
		}
		t := &ir.Tensor{DType: in.DType, Shape: s}
		if in.DType.IsFloat() {
			t.Float = make([]float64, s.Size())
		} else {
			t.Int = make([]int64, s.Size())
		}
		feeds[in.Name] = t
	}
	return InferShapesFrom(g, feeds)
}

// InferShapesFrom is InferShapes evaluating the graph on the given sample
// inputs, by input name, instead of zeros: every input needs one, and g is
// specialized to their shapes. Shapes that depend on input values hold for
// these values only.
func InferShapesFrom(g *ir.Graph, feeds map[string]*ir.Tensor) error {
	for _, in := range g.Inputs {
		t, ok := feeds[in.Name]
		if !ok {
			return fmt.Errorf("infer shapes: no sample for input %q", in.Name)
		}
		if err := plain.CheckInput(in, t); err != nil {
			return fmt.Errorf("infer shapes: %w", err)
		}
		in.Shape = t.Shape.Clone()
		if in.Shape == nil {
			in.Shape = ir.Shape{}
		}
		if in.DimNames != nil && len(in.DimNames) != len(in.Shape) {
			in.DimNames = nil
		}
	}
	for _, v := range g.Values() {
		if v.IsConst() {
			setShape(v, v.Const)
		}
	}
	var missing error
	observe := func(n *ir.Node, outs []*ir.Tensor) {
		for i, o := range n.Outputs {
			if o == nil {
				continue
			}
			if i >= len(outs) || outs[i] == nil {
				if missing == nil {
					missing = fmt.Errorf("infer shapes: %v: kernel produced no output %d %q", n, i, o.Name)
				}
				continue
			}
			setShape(o, outs[i])
		}
	}
	if _, err := plain.Run(g, feeds, &plain.Options{Observe: observe}); err != nil {
		return fmt.Errorf("infer shapes: %w", err)
	}
	return missing
}

// setShape records t's shape and dtype on v, dropping DimNames that no longer
// fit the rank.
func setShape(v *ir.Value, t *ir.Tensor) {
	v.Shape = t.Shape.Clone()
	if v.Shape == nil {
		v.Shape = ir.Shape{}
	}
	v.DType = t.DType
	if v.DimNames != nil && len(v.DimNames) != len(v.Shape) {
		v.DimNames = nil
	}
}
