package passes

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// builder assembles small graphs for tests. Values and nodes get sequential
// names.
type builder struct {
	g *ir.Graph
	k int
}

func newBuilder(name string, opset int64) *builder {
	return &builder{g: &ir.Graph{Name: name, Opset: opset}}
}

// input adds a float32 graph input; -1 dimensions are symbolic ("N").
func (b *builder) input(name string, shape ...int) *ir.Value {
	v := &ir.Value{Name: name, DType: ir.Float32, Shape: ir.Shape(shape)}
	for i, d := range shape {
		if d < 0 {
			if v.DimNames == nil {
				v.DimNames = make([]string, len(shape))
			}
			v.DimNames[i] = "N"
		}
	}
	b.g.Inputs = append(b.g.Inputs, v)
	return v
}

// konst returns a float32 constant; with no data, deterministic pseudo-random
// values in [-1, 1].
func (b *builder) konst(name string, shape ir.Shape, data ...float64) *ir.Value {
	if data == nil {
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(h.Sum64(), uint64(shape.Size())))
		data = make([]float64, shape.Size())
		for i := range data {
			data[i] = math.Round((2*r.Float64()-1)*1000) / 1000
		}
	}
	return newConst(name, ir.NewFloat(shape, data))
}

// ints returns an int64 constant.
func (b *builder) ints(name string, data ...int64) *ir.Value {
	return newConst(name, ir.NewInt(ir.Shape{len(data)}, data))
}

// scalar returns a rank-0 float32 constant.
func (b *builder) scalar(name string, x float64) *ir.Value {
	return newConst(name, ir.NewFloat(ir.Shape{}, []float64{x}))
}

// op appends a node with one output and returns that output.
func (b *builder) op(op string, attrs ir.Attrs, ins ...*ir.Value) *ir.Value {
	b.k++
	n := &ir.Node{Name: fmt.Sprintf("%s_%d", op, b.k), Op: op, Inputs: ins, Attrs: attrs}
	out := &ir.Value{Name: fmt.Sprintf("%s_%d", strings.ToLower(op), b.k), Producer: n}
	n.Outputs = []*ir.Value{out}
	b.g.Nodes = append(b.g.Nodes, n)
	return out
}

func (b *builder) output(vs ...*ir.Value) *ir.Graph {
	b.g.Outputs = append(b.g.Outputs, vs...)
	return b.g
}

func intAttr(v int64) ir.Attr         { return ir.Attr{Kind: ir.AttrInt, Int: v} }
func floatAttr(v float64) ir.Attr     { return ir.Attr{Kind: ir.AttrFloat, Float: v} }
func intsAttr(v ...int64) ir.Attr     { return ir.Attr{Kind: ir.AttrInts, Ints: v} }
func stringAttr(v string) ir.Attr     { return ir.Attr{Kind: ir.AttrString, String: v} }
func tensorAttr(t *ir.Tensor) ir.Attr { return ir.Attr{Kind: ir.AttrTensor, Tensor: t} }

func dump(t *testing.T, g *ir.Graph) string {
	t.Helper()
	var b strings.Builder
	if err := ir.Dump(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkGolden compares got with testdata/name.golden, or rewrites the file
// under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// randomFeeds returns inputs for g with values uniform in [-2, 2].
func randomFeeds(g *ir.Graph, seed uint64) map[string]*ir.Tensor {
	r := rand.New(rand.NewPCG(seed, 7))
	feeds := map[string]*ir.Tensor{}
	for _, in := range g.Inputs {
		s := in.Shape.Clone()
		for i := range s {
			if s[i] < 0 {
				s[i] = 2
			}
		}
		t := ir.NewFloat(s, nil)
		for i := range t.Float {
			t.Float[i] = 4*r.Float64() - 2
		}
		feeds[in.Name] = t
	}
	return feeds
}

// sameResults checks that before and after compute the same outputs, within
// 1e-9, on a few random inputs.
func sameResults(t *testing.T, before, after *ir.Graph) {
	t.Helper()
	for seed := uint64(1); seed <= 3; seed++ {
		feeds := randomFeeds(after, seed)
		want, err := plain.Run(before, feeds, nil)
		if err != nil {
			t.Fatalf("before: %v", err)
		}
		got, err := plain.Run(after, feeds, nil)
		if err != nil {
			t.Fatalf("after: %v", err)
		}
		for _, o := range before.Outputs {
			w, g := want[o.Name], got[o.Name]
			if g == nil {
				t.Fatalf("output %q missing after the pass", o.Name)
			}
			if !g.Shape.Equal(w.Shape) {
				t.Fatalf("output %q: shape %v, want %v", o.Name, g.Shape, w.Shape)
			}
			wf, gf := w.Floats(), g.Floats()
			d := 0.0
			for i := range wf {
				d = max(d, math.Abs(wf[i]-gf[i]))
			}
			if d >= 1e-9 || math.IsNaN(d) {
				t.Errorf("output %q differs by %g", o.Name, d)
			}
		}
	}
}

// passCase is one golden test of a rewrite pass.
type passCase struct {
	name  string
	build func() *ir.Graph
}

// runPassCases runs pass on every case's graph (after InferShapes), checks
// ir.Verify, compares the dumps before and after with the golden file
// testdata/<prefix>_<case>.golden and the results on random inputs.
func runPassCases(t *testing.T, prefix string, pass func(*ir.Graph) error, cases []passCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := c.build()
			if err := ir.Verify(g); err != nil {
				t.Fatalf("test graph: %v", err)
			}
			if err := InferShapes(g); err != nil {
				t.Fatal(err)
			}
			before := g.Clone()
			text := "-- before --\n" + dump(t, g)
			if err := pass(g); err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(g); err != nil {
				t.Fatalf("after the pass: %v\n%s", err, dump(t, g))
			}
			text += "-- after --\n" + dump(t, g)
			checkGolden(t, prefix+"_"+c.name, text)
			sameResults(t, before, g)
		})
	}
}
