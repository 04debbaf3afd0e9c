package passes

import (
	"bytes"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// TestProbeCacheSameProgram lowers a graph whose polynomial folds its change
// of variable into the probed matrix (which the lowering modifies in place)
// without a cache, then twice with one: the three programs are the same.
func TestProbeCacheSameProgram(t *testing.T) {
	build := func() *ir.Graph {
		b := newBuilder("cache", 13)
		x := b.input("x", 1, 4)
		h := b.op("Dense", nil, x, b.konst("w1", ir.Shape{4, 8}), b.konst("b1", ir.Shape{8}))
		h = b.op("Poly", ir.Attrs{"func": stringAttr("Square"), "a": floatAttr(-3), "b": floatAttr(3),
			"coeffs": {Kind: ir.AttrFloats, Floats: []float64{4.5, 0, 4.5}}}, h)
		h = b.op("Dense", nil, h, b.konst("w3", ir.Shape{8, 2}), b.konst("b3", ir.Shape{2}))
		g := b.output(h)
		if err := InferShapes(g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	dump := func(cache *ProbeCache) string {
		prog, err := LowerCKKS(build(), LowerOptions{Probes: cache})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := ckksir.Dump(&b, prog); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	want := dump(nil)
	cache := NewProbeCache()
	if got := dump(cache); got != want {
		t.Errorf("first lowering with a cache differs:\n%s\nwant:\n%s", got, want)
	}
	if len(cache.m) == 0 {
		t.Fatal("nothing cached")
	}
	if got := dump(cache); got != want {
		t.Errorf("lowering from the cache differs:\n%s\nwant:\n%s", got, want)
	}
}
