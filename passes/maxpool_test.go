package passes

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

func TestDecomposeMaxPool(t *testing.T) {
	cases := []struct {
		name  string
		shape []int
		attrs ir.Attrs
	}{
		{"2x2s2", []int{1, 2, 6, 6}, ir.Attrs{"kernel_shape": intsAttr(2, 2), "strides": intsAttr(2, 2)}},
		{"3x3s1p1", []int{1, 2, 5, 5}, ir.Attrs{"kernel_shape": intsAttr(3, 3), "pads": intsAttr(1, 1, 1, 1)}},
		{"3x3s2p1_batch2", []int{2, 3, 7, 7}, ir.Attrs{"kernel_shape": intsAttr(3, 3), "strides": intsAttr(2, 2), "pads": intsAttr(1, 1, 1, 1)}},
		{"asym_pads", []int{1, 1, 6, 5}, ir.Attrs{"kernel_shape": intsAttr(3, 2), "strides": intsAttr(2, 1), "pads": intsAttr(0, 1, 2, 0)}},
		{"ceil_mode", []int{1, 1, 5, 5}, ir.Attrs{"kernel_shape": intsAttr(2, 2), "strides": intsAttr(2, 2), "ceil_mode": intAttr(1)}},
		{"same_upper", []int{1, 2, 6, 6}, ir.Attrs{"kernel_shape": intsAttr(3, 3), "strides": intsAttr(2, 2), "auto_pad": stringAttr("SAME_UPPER")}},
		{"same_lower", []int{1, 1, 5, 5}, ir.Attrs{"kernel_shape": intsAttr(2, 2), "auto_pad": stringAttr("SAME_LOWER")}},
		{"valid", []int{1, 1, 7, 7}, ir.Attrs{"kernel_shape": intsAttr(3, 3), "strides": intsAttr(3, 3), "auto_pad": stringAttr("VALID")}},
		{"2x3s1x2", []int{1, 2, 6, 7}, ir.Attrs{"kernel_shape": intsAttr(2, 3), "strides": intsAttr(1, 2)}},
		{"1x1s2", []int{1, 2, 6, 6}, ir.Attrs{"kernel_shape": intsAttr(1, 1), "strides": intsAttr(2, 2)}},
		{"dilated", []int{1, 1, 7, 7}, ir.Attrs{"kernel_shape": intsAttr(2, 2), "dilations": intsAttr(2, 2)}},
		{"1d", []int{1, 2, 9}, ir.Attrs{"kernel_shape": intsAttr(3), "strides": intsAttr(2), "pads": intsAttr(1, 1)}},
		{"3d", []int{1, 1, 4, 4, 4}, ir.Attrs{"kernel_shape": intsAttr(2, 2, 2), "strides": intsAttr(2, 2, 2)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBuilder("maxpool", 13)
			x := b.input("x", c.shape...)
			y := b.op("MaxPool", c.attrs, x)
			z := b.op("Add", nil, y, b.scalar("one", 1)) // a reader after the pool
			g := b.output(z)
			if err := InferShapes(g); err != nil {
				t.Fatal(err)
			}
			before := g.Clone()
			if err := DecomposeMaxPool(g); err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(g); err != nil {
				t.Fatalf("after the pass: %v\n%s", err, dump(t, g))
			}
			taps, abs := 1, 0
			for _, k := range c.attrs.Ints("kernel_shape", nil) {
				taps *= int(k)
			}
			for _, n := range g.Nodes {
				switch n.Op {
				case "MaxPool":
					t.Fatal("a MaxPool is left")
				case "Abs":
					abs++
				}
			}
			if abs != taps-1 {
				t.Errorf("%d Abs nodes for %d taps, want %d", abs, taps, taps-1)
			}
			if !g.Outputs[0].Shape.Equal(before.Outputs[0].Shape) {
				t.Errorf("output shape %v, want %v", g.Outputs[0].Shape, before.Outputs[0].Shape)
			}
			r := rand.New(rand.NewPCG(uint64(len(c.name)), 3))
			for trial := 0; trial < 3; trial++ {
				in := ir.NewFloat(ir.Shape(c.shape), nil)
				for i := range in.Float {
					in.Float[i] = 8*r.Float64() - 4
					if trial == 2 {
						in.Float[i] = math.Round(in.Float[i]) // ties
					}
				}
				feeds := map[string]*ir.Tensor{"x": in}
				want, err := plain.Run(before, feeds, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := plain.Run(g, feeds, nil)
				if err != nil {
					t.Fatal(err)
				}
				w, gv := want[z.Name], got[z.Name]
				if !gv.Shape.Equal(w.Shape) {
					t.Fatalf("shape %v, want %v", gv.Shape, w.Shape)
				}
				for i := range w.Float {
					if d := math.Abs(w.Float[i] - gv.Float[i]); d > 1e-12 {
						t.Fatalf("element %d: %g, want %g", i, gv.Float[i], w.Float[i])
					}
				}
			}
		})
	}
}

func TestDecomposeMaxPoolUnsupported(t *testing.T) {
	cases := []struct {
		name  string
		attrs ir.Attrs
		index bool
	}{
		{"dilated_padded", ir.Attrs{"kernel_shape": intsAttr(2, 2), "dilations": intsAttr(2, 2), "pads": intsAttr(1, 1, 1, 1)}, false},
		{"window_in_padding", ir.Attrs{"kernel_shape": intsAttr(2, 2), "pads": intsAttr(2, 2, 2, 2)}, false},
		{"indices", ir.Attrs{"kernel_shape": intsAttr(2, 2)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBuilder("maxpool", 13)
			x := b.input("x", 1, 1, 6, 6)
			y := b.op("MaxPool", c.attrs, x)
			outs := []*ir.Value{y}
			if c.index {
				n := y.Producer
				idx := &ir.Value{Name: "indices", Producer: n}
				n.Outputs = append(n.Outputs, idx)
				outs = append(outs, idx)
			}
			g := b.output(outs...)
			if err := InferShapes(g); err != nil {
				t.Fatal(err)
			}
			err := DecomposeMaxPool(g)
			var ue *ir.UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want an *ir.UnsupportedError", err)
			}
			if ue.Node != y.Producer.Name {
				t.Errorf("error names node %q, want %q", ue.Node, y.Producer.Name)
			}
			t.Log(err)
		})
	}
}
