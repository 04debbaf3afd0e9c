package passes

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// pcRandomGraph builds a random affine graph on an input [1, p, q]: a chain
// of products with constant matrices on either side, transposes, sums
// broadcast back (summing maps), replications, slices, concatenations,
// gathers, pads, residual additions and constant additions and scalings,
// with one intermediate value as a second output. A Conv, which has no read
// rule, is inserted with probability 1/4.
func pcRandomGraph(seed uint64) *ir.Graph {
	r := rand.New(rand.NewPCG(seed, 7))
	b := newBuilder("probe", 17)
	p, q := 2+r.IntN(4), 2+r.IntN(4)
	v := b.input("x", 1, p, q)
	k := 0
	name := func(s string) string { k++; return s + string(rune('a'+k%26)) + string(rune('a'+k/26)) }
	var outs []*ir.Value
	var prev *ir.Value
	prevP, prevQ := 0, 0
	for step := range 4 + r.IntN(5) {
		if step == 2 {
			outs = append(outs, v)
		}
		oldV, oldP, oldQ := v, p, q
		switch r.IntN(13) {
		case 0:
			q2 := 1 + r.IntN(5)
			v = b.op("MatMul", nil, v, b.konst(name("w"), ir.Shape{q, q2}))
			q = q2
		case 1:
			p2 := 1 + r.IntN(5)
			v = b.op("MatMul", nil, b.konst(name("w"), ir.Shape{p2, p}), v)
			p = p2
		case 2:
			v = b.op("Transpose", ir.Attrs{"perm": intsAttr(0, 2, 1)}, v)
			p, q = q, p
		case 3:
			s := b.op("ReduceSum", ir.Attrs{"keepdims": intAttr(1)}, v, b.ints(name("axes"), 2))
			v = b.op("Expand", nil, s, b.ints(name("shape"), 1, int64(p), int64(q)))
		case 4:
			v = b.op("Add", nil, v, b.konst(name("c"), ir.Shape{p, q}))
		case 5:
			v = b.op("Mul", nil, v, b.scalar(name("s"), 0.5+r.Float64()))
		case 6:
			if prev != nil && prevP == p && prevQ == q {
				v = b.op("Add", nil, v, prev)
			} else {
				v = b.op("Sub", nil, v, b.konst(name("c"), ir.Shape{q}))
			}
		case 7:
			if q > 1 {
				v = b.op("Slice", nil, v, b.ints(name("st"), 1), b.ints(name("en"), int64(q)), b.ints(name("ax"), 2))
				q--
			}
		case 8:
			v = b.op("Concat", ir.Attrs{"axis": intAttr(1)}, v, v)
			p *= 2
		case 9:
			rep := 1 + r.IntN(3)
			u := b.op("Unsqueeze", nil, v, b.ints(name("ax"), 2))
			e := b.op("Expand", nil, u, b.ints(name("shape"), 1, int64(p), int64(rep), int64(q)))
			v = b.op("Reshape", nil, e, b.ints(name("shape"), 1, int64(p*rep), int64(q)))
			p *= rep
		case 10:
			idx := []int64{int64(r.IntN(q)), int64(r.IntN(q)), int64(r.IntN(q))}
			v = b.op("Gather", ir.Attrs{"axis": intAttr(2)}, v, b.ints(name("idx"), idx...))
			q = 3
		case 11:
			v = b.op("Pad", nil, v, b.ints(name("pads"), 0, 0, 1, 0, 0, 2), b.scalar(name("pv"), 0.25))
			q += 3
		case 12:
			if r.IntN(4) == 0 && p > 1 && q > 1 {
				x4 := b.op("Reshape", nil, v, b.ints(name("shape"), 1, 1, int64(p), int64(q)))
				c := b.op("Conv", nil, x4, b.konst(name("k"), ir.Shape{1, 1, 2, 2}))
				v = b.op("Reshape", nil, c, b.ints(name("shape"), 1, int64(p-1), int64(q-1)))
				p, q = p-1, q-1
			} else {
				v = b.op("ReduceMean", ir.Attrs{"keepdims": intAttr(1), "axes": intsAttr(1)}, v)
				p = 1
			}
		}
		prev, prevP, prevQ = oldV, oldP, oldQ
	}
	outs = append(outs, v)
	return b.output(outs...)
}

// TestProbeColoring checks that probing many columns per run (colored
// probes, batched or not, and whole tensors) gives exactly the matrices of
// probing one column at a time, on random affine graphs, with exact read sets
// of elementwise sums and with coarse ones.
func TestProbeColoring(t *testing.T) {
	t.Run("exact", func(t *testing.T) { pcCheckColoring(t) })
	t.Run("coarse", func(t *testing.T) {
		defer func(v int) { lowerProbeExactSums = v }(lowerProbeExactSums)
		lowerProbeExactSums = 0
		pcCheckColoring(t)
	})
}

// pcCheckColoring compares colored and one-column probes on random graphs.
func pcCheckColoring(t *testing.T) {
	colored := 0
	for seed := range uint64(120) {
		g := pcRandomGraph(seed)
		if err := InferShapes(g); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		base := g.Clone()
		for _, batch := range []int{0, 1} {
			color := lowerColorColumns(base, batch)
			want, err := lowerProbeColumns(base, base, batch, nil)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if color == nil {
				continue
			}
			colored++
			got, err := lowerProbeColumns(base, base, batch, color)
			if err != nil {
				t.Fatalf("seed %d batch %d: colored probe: %v", seed, batch, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d batch %d: colored probe (%d colors for %d columns) differs from one column per probe",
					seed, batch, len(color.groups), len(color.color))
			}
			if batch == 1 {
				bg := g.Clone()
				for _, x := range bg.Inputs {
					x.Shape[0] = -1
				}
				got, err := lowerProbeColumns(base, bg, 1+len(color.groups)/2, color)
				if err == nil && !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d: batched colored probe differs from one column per probe", seed)
				}
			}
		}
		if _, err := lowerProbe(g, false); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d colored probes", colored)
	if colored < 100 {
		t.Errorf("only %d of 240 probes were colored", colored)
	}
}

// TestProbeColoringReplication checks the colors of a replication map and a
// summing map: as many colors as the row length, not the columns.
func TestProbeColoringReplication(t *testing.T) {
	b := newBuilder("rep", 17)
	x := b.input("x", 1, 8, 4)
	y := b.op("MatMul", nil, x, b.konst("w", ir.Shape{4, 4}))
	u := b.op("Unsqueeze", nil, y, b.ints("ax", 2))
	e := b.op("Expand", nil, u, b.ints("shape", 1, 8, 8, 4))
	s := b.op("ReduceSum", ir.Attrs{"keepdims": intAttr(0)}, e, b.ints("axes", 2))
	g := b.output(e, s)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	color := lowerColorColumns(g, 1)
	if color == nil || len(color.groups) != 4 {
		t.Fatalf("replication of rows of 4: got %v colors, want 4", color)
	}
}
