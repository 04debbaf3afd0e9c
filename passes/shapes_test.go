package passes

import (
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// dynamicReshape builds the graph torch exports for x.view(x.size(0), -1)
// followed by a linear layer: Shape, Gather, Unsqueeze, Concat, Reshape.
func dynamicReshape() *ir.Graph {
	b := newBuilder("dynamic_reshape", 13)
	x := b.input("x", -1, 3, 4)
	n := b.op("Gather", ir.Attrs{"axis": intAttr(0)}, b.op("Shape", nil, x), newConst("zero", ir.NewInt(ir.Shape{}, []int64{0})))
	shape := b.op("Concat", ir.Attrs{"axis": intAttr(0)}, b.op("Unsqueeze", nil, n, b.ints("axes", 0)), b.ints("minus_one", -1))
	flat := b.op("Reshape", nil, x, shape)
	scale := b.op("Add", nil, b.konst("c1", ir.Shape{12}), b.konst("c2", ir.Shape{12}))
	return b.output(b.op("Mul", nil, flat, scale))
}

func TestInferShapes(t *testing.T) {
	for _, c := range []struct {
		name  string
		batch int
	}{{"default", 0}, {"bound", 3}} {
		t.Run(c.name, func(t *testing.T) {
			g := dynamicReshape()
			text := "-- before --\n" + dump(t, g)
			if c.batch > 0 {
				if err := BindInputs(g, map[string]ir.Shape{"x": {c.batch, 3, 4}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := InferShapes(g); err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(g); err != nil {
				t.Fatal(err)
			}
			text += "-- after --\n" + dump(t, g)
			checkGolden(t, "infer_shapes_"+c.name, text)
			if got := g.Inputs[0].DimNames; len(got) != 3 || got[0] != "N" {
				t.Errorf("input DimNames = %q, want N kept", got)
			}
			for _, v := range g.Values() {
				if !v.Shape.Known() || v.DType == ir.Undefined {
					t.Errorf("value %q: shape %v dtype %v", v.Name, v.Shape, v.DType)
				}
			}
		})
	}
}

func TestInferShapesFrom(t *testing.T) {
	g := dynamicReshape()
	feeds := randomFeeds(g, 1)
	feeds["x"] = ir.NewFloat(ir.Shape{5, 3, 4}, nil)
	if err := InferShapesFrom(g, feeds); err != nil {
		t.Fatal(err)
	}
	if got := g.Outputs[0].Shape; !got.Equal(ir.Shape{5, 12}) {
		t.Errorf("output shape %v, want [5x12]", got)
	}
	if err := InferShapesFrom(g, nil); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("missing sample: error %v", err)
	}
}

func TestInferShapesErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func() *ir.Graph
		bind  map[string]ir.Shape
		want  string
	}{
		{"unknown rank", func() *ir.Graph {
			b := newBuilder("g", 13)
			x := b.input("x")
			x.Shape = nil
			return b.output(b.op("Relu", nil, x))
		}, nil, `input "x" has unknown rank`},
		{"kernel failure", func() *ir.Graph {
			b := newBuilder("g", 13)
			x := b.input("x", -1, 4)
			return b.output(b.op("Reshape", nil, x, b.ints("bad", 3, 3)))
		}, nil, `node "Reshape_1" (Reshape)`},
		{"bind unknown input", dynamicReshape, map[string]ir.Shape{"y": {1}}, `no input "y" (inputs: [x])`},
		{"bind wrong dims", dynamicReshape, map[string]ir.Shape{"x": {2, 4, 4}}, `does not fit input "x"`},
		{"bind symbolic", dynamicReshape, map[string]ir.Shape{"x": {-1, 3, 4}}, `not static`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := c.build()
			err := BindInputs(g, c.bind)
			if err == nil {
				err = InferShapes(g)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestFoldConstants(t *testing.T) {
	runPassCases(t, "fold_constants", FoldConstants, []passCase{
		{"dynamic_reshape", dynamicReshape},
		{"shape_slice", func() *ir.Graph {
			// opset 15 Shape with start and end.
			b := newBuilder("shape_slice", 15)
			x := b.input("x", -1, 2, 3)
			s := b.op("Shape", ir.Attrs{"start": intAttr(-2)}, x)
			return b.output(b.op("Reshape", nil, x, b.op("Concat", ir.Attrs{"axis": intAttr(0)}, b.ints("one", 1), s)))
		}},
		{"constant_of_shape", func() *ir.Graph {
			b := newBuilder("constant_of_shape", 13)
			x := b.input("x", 2, 3)
			fill := ir.NewFloat(ir.Shape{1}, []float64{0.5})
			c := b.op("ConstantOfShape", ir.Attrs{"value": tensorAttr(fill)}, b.op("Shape", nil, x))
			return b.output(b.op("Add", nil, x, c))
		}},
	})
	saved := MaxFoldElements
	MaxFoldElements = 10
	defer func() { MaxFoldElements = saved }()
	runPassCases(t, "fold_constants", FoldConstants, []passCase{
		{"expand_stays", func() *ir.Graph {
			// Expanding 1 element to 32 (over the limit of 10) stays; the
			// shape computation before it folds.
			b := newBuilder("expand_stays", 13)
			x := b.input("x", 4, 8)
			shape := b.op("Shape", nil, x)
			e := b.op("Expand", nil, b.konst("c", ir.Shape{1}), shape)
			return b.output(b.op("Mul", nil, x, e))
		}},
	})
}

func TestFoldConstantsError(t *testing.T) {
	b := newBuilder("bad_reshape", 13)
	x := b.input("x", 2)
	g := b.output(b.op("Add", nil, x, b.op("Reshape", nil, b.konst("c", ir.Shape{2}), b.ints("shape", 3))))
	err := FoldConstants(g)
	if err == nil || !strings.Contains(err.Error(), `node "Reshape_1" (Reshape)`) {
		t.Errorf("error %v, want one naming the Reshape", err)
	}
}
