// Tests of the linear, convolution, pooling and normalization kernels
// against hand-computed values and naive reference loops.

package plain

import (
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// kbNode builds a node with the given op, attributes and output count.
func kbNode(op string, attrs ir.Attrs, outs int) *ir.Node {
	n := &ir.Node{Name: "n", Op: op, Attrs: attrs}
	for i := 0; i < outs; i++ {
		n.Outputs = append(n.Outputs, &ir.Value{Name: "o", Producer: n})
	}
	return n
}

func kbInts(v ...int64) ir.Attr   { return ir.Attr{Kind: ir.AttrInts, Ints: v} }
func kbInt(v int64) ir.Attr       { return ir.Attr{Kind: ir.AttrInt, Int: v} }
func kbFloat(v float64) ir.Attr   { return ir.Attr{Kind: ir.AttrFloat, Float: v} }
func kbString(v string) ir.Attr   { return ir.Attr{Kind: ir.AttrString, String: v} }
func kbT(shape ...int) *ir.Tensor { return ir.NewFloat(ir.Shape(shape), nil) }

// kbRand returns a float tensor of the given shape with random data.
func kbRand(r *rand.Rand, shape ...int) *ir.Tensor {
	t := kbT(shape...)
	for i := range t.Float {
		t.Float[i] = r.NormFloat64()
	}
	return t
}

// kbSeq returns a tensor holding 1, 2, 3, ...
func kbSeq(shape ...int) *ir.Tensor {
	t := kbT(shape...)
	for i := range t.Float {
		t.Float[i] = float64(i + 1)
	}
	return t
}

func kbEval(t *testing.T, n *ir.Node, opset int64, in ...*ir.Tensor) []*ir.Tensor {
	t.Helper()
	var saved []*ir.Tensor
	for _, x := range in {
		if x != nil {
			saved = append(saved, x.Clone())
		} else {
			saved = append(saved, nil)
		}
	}
	outs, err := EvalNode(n, opset, in)
	if err != nil {
		t.Fatalf("%s: %v", n.Op, err)
	}
	for i, x := range in {
		if x != nil && !kbEqual(x.Float, saved[i].Float, 0) {
			t.Fatalf("%s modified input %d", n.Op, i)
		}
	}
	return outs
}

func kbEqual(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

func kbCheck(t *testing.T, what string, got *ir.Tensor, shape ir.Shape, want []float64) {
	t.Helper()
	if !got.Shape.Equal(shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, shape)
	}
	if !kbEqual(got.Float, want, 1e-9) {
		t.Fatalf("%s: got %v, want %v", what, got.Float, want)
	}
}

// naiveConv is a direct-loop 2-D convolution: x [N,C,H,W], w [M,C/g,KH,KW].
func naiveConv(x, w *ir.Tensor, bias []float64, sh, sw, pt, pl, pb, pr, dh, dw, group int) *ir.Tensor {
	N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	M, CG, KH, KW := w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3]
	OH := (H+pt+pb-((KH-1)*dh+1))/sh + 1
	OW := (W+pl+pr-((KW-1)*dw+1))/sw + 1
	y := kbT(N, M, OH, OW)
	mg := M / group
	for n := 0; n < N; n++ {
		for m := 0; m < M; m++ {
			g := m / mg
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					s := 0.0
					if bias != nil {
						s = bias[m]
					}
					for c := 0; c < CG; c++ {
						for kh := 0; kh < KH; kh++ {
							for kw := 0; kw < KW; kw++ {
								ih := oh*sh - pt + kh*dh
								iw := ow*sw - pl + kw*dw
								if ih < 0 || ih >= H || iw < 0 || iw >= W {
									continue
								}
								s += x.Float[((n*C+g*CG+c)*H+ih)*W+iw] * w.Float[((m*CG+c)*KH+kh)*KW+kw]
							}
						}
					}
					y.Float[((n*M+m)*OH+oh)*OW+ow] = s
				}
			}
		}
	}
	return y
}

func TestConvAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	cases := []struct {
		name                           string
		n, c, h, w, m, kh, kw, g       int
		sh, sw, pt, pl, pb, pr, dh, dw int
		bias                           bool
	}{
		{"plain", 1, 3, 7, 6, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0, 1, 1, false},
		{"pad1", 2, 3, 8, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true},
		{"stride2-asym", 1, 2, 9, 7, 3, 3, 2, 1, 2, 3, 1, 0, 2, 1, 1, 1, true},
		{"dilation", 1, 2, 10, 9, 2, 3, 3, 1, 1, 2, 2, 1, 0, 2, 2, 3, false},
		{"groups", 2, 4, 6, 6, 6, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, true},
		{"depthwise", 1, 5, 7, 7, 5, 3, 3, 5, 2, 2, 1, 1, 1, 1, 1, 1, true},
		{"depthwise-mult", 1, 3, 5, 6, 6, 2, 3, 3, 1, 2, 0, 1, 1, 0, 2, 1, false},
		{"1x1", 2, 4, 5, 5, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, true},
		{"1x1-stride", 1, 4, 5, 5, 3, 1, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, false},
		{"big-pad", 1, 1, 3, 3, 1, 2, 2, 1, 1, 1, 3, 3, 3, 3, 1, 1, false},
	}
	for _, tc := range cases {
		x := kbRand(r, tc.n, tc.c, tc.h, tc.w)
		w := kbRand(r, tc.m, tc.c/tc.g, tc.kh, tc.kw)
		var b *ir.Tensor
		var bf []float64
		if tc.bias {
			b = kbRand(r, tc.m)
			bf = b.Float
		}
		attrs := ir.Attrs{
			"strides":   kbInts(int64(tc.sh), int64(tc.sw)),
			"pads":      kbInts(int64(tc.pt), int64(tc.pl), int64(tc.pb), int64(tc.pr)),
			"dilations": kbInts(int64(tc.dh), int64(tc.dw)),
			"group":     kbInt(int64(tc.g)),
		}
		in := []*ir.Tensor{x, w}
		if b != nil {
			in = append(in, b)
		}
		got := kbEval(t, kbNode("Conv", attrs, 1), 13, in...)[0]
		want := naiveConv(x, w, bf, tc.sh, tc.sw, tc.pt, tc.pl, tc.pb, tc.pr, tc.dh, tc.dw, tc.g)
		if !got.Shape.Equal(want.Shape) || !kbEqual(got.Float, want.Float, 1e-9) {
			t.Errorf("%s: shape %v want %v; values differ", tc.name, got.Shape, want.Shape)
		}
	}
}

func TestConvRandomAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for iter := 0; iter < 300; iter++ {
		g := 1 + r.Intn(3)
		cg, mg := 1+r.Intn(3), 1+r.Intn(3)
		kh, kw := 1+r.Intn(4), 1+r.Intn(4)
		dh, dw := 1+r.Intn(3), 1+r.Intn(3)
		sh, sw := 1+r.Intn(3), 1+r.Intn(3)
		pt, pl, pb, pr := r.Intn(4), r.Intn(4), r.Intn(4), r.Intn(4)
		h := max(1, (kh-1)*dh+1-pt-pb+r.Intn(6))
		w := max(1, (kw-1)*dw+1-pl-pr+r.Intn(6))
		x := kbRand(r, 1+r.Intn(2), g*cg, h, w)
		wt := kbRand(r, g*mg, cg, kh, kw)
		attrs := ir.Attrs{
			"strides":   kbInts(int64(sh), int64(sw)),
			"pads":      kbInts(int64(pt), int64(pl), int64(pb), int64(pr)),
			"dilations": kbInts(int64(dh), int64(dw)),
			"group":     kbInt(int64(g)),
		}
		got := kbEval(t, kbNode("Conv", attrs, 1), 13, x, wt)[0]
		want := naiveConv(x, wt, nil, sh, sw, pt, pl, pb, pr, dh, dw, g)
		if !got.Shape.Equal(want.Shape) || !kbEqual(got.Float, want.Float, 1e-9) {
			t.Fatalf("iteration %d (%v): shape %v want %v; values differ", iter, attrs.Summary(), got.Shape, want.Shape)
		}
	}
}

func TestConv1DAnd3D(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	// 1-D conv as a 2-D conv with height 1.
	x := kbRand(r, 2, 3, 11)
	w := kbRand(r, 4, 3, 3)
	attrs := ir.Attrs{"strides": kbInts(2), "pads": kbInts(1, 2), "dilations": kbInts(2)}
	got := kbEval(t, kbNode("Conv", attrs, 1), 13, x, w)[0]
	x2 := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 3, 1, 11}, Float: x.Float}
	w2 := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{4, 3, 1, 3}, Float: w.Float}
	want := naiveConv(x2, w2, nil, 1, 2, 0, 1, 0, 2, 1, 2, 1)
	kbCheck(t, "conv1d", got, ir.Shape{2, 4, want.Shape[3]}, want.Float)

	// 3-D conv with depth-1 kernel equals per-slice 2-D convs.
	x3 := kbRand(r, 1, 2, 3, 5, 5)
	w3 := kbRand(r, 2, 2, 1, 3, 3)
	attrs = ir.Attrs{"pads": kbInts(0, 1, 1, 0, 1, 1)}
	got = kbEval(t, kbNode("Conv", attrs, 1), 13, x3, w3)[0]
	if !got.Shape.Equal(ir.Shape{1, 2, 3, 5, 5}) {
		t.Fatalf("conv3d shape %v", got.Shape)
	}
	w2d := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 2, 3, 3}, Float: w3.Float}
	for d := 0; d < 3; d++ {
		slice := kbT(1, 2, 5, 5)
		for c := 0; c < 2; c++ {
			copy(slice.Float[c*25:(c+1)*25], x3.Float[(c*3+d)*25:(c*3+d+1)*25])
		}
		ref := naiveConv(slice, w2d, nil, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		for m := 0; m < 2; m++ {
			if !kbEqual(got.Float[(m*3+d)*25:(m*3+d+1)*25], ref.Float[m*25:(m+1)*25], 1e-9) {
				t.Fatalf("conv3d slice %d channel %d differs", d, m)
			}
		}
	}
}

func TestConvAutoPad(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	x := kbRand(r, 1, 1, 5, 6)
	w := kbRand(r, 1, 1, 3, 4)
	// SAME_UPPER, stride 2: out 3x3; total pads H: (3-1)*2+3-5=2 -> 1,1;
	// W: (3-1)*2+4-6=2 -> 1,1.
	got := kbEval(t, kbNode("Conv", ir.Attrs{"auto_pad": kbString("SAME_UPPER"), "strides": kbInts(2, 2)}, 1), 13, x, w)[0]
	want := naiveConv(x, w, nil, 2, 2, 1, 1, 1, 1, 1, 1, 1)
	kbCheck(t, "same_upper", got, ir.Shape{1, 1, 3, 3}, want.Float)
	// Stride 1: out 5x6; total pads H 2 -> 1,1; W 3 -> upper 1,2, lower 2,1.
	got = kbEval(t, kbNode("Conv", ir.Attrs{"auto_pad": kbString("SAME_UPPER")}, 1), 13, x, w)[0]
	want = naiveConv(x, w, nil, 1, 1, 1, 1, 1, 2, 1, 1, 1)
	kbCheck(t, "same_upper s1", got, ir.Shape{1, 1, 5, 6}, want.Float)
	got = kbEval(t, kbNode("Conv", ir.Attrs{"auto_pad": kbString("SAME_LOWER")}, 1), 13, x, w)[0]
	want = naiveConv(x, w, nil, 1, 1, 1, 2, 1, 1, 1, 1, 1)
	kbCheck(t, "same_lower s1", got, ir.Shape{1, 1, 5, 6}, want.Float)
	got = kbEval(t, kbNode("Conv", ir.Attrs{"auto_pad": kbString("VALID"), "pads": kbInts(1, 1, 1, 1)}, 1), 13, x, w)[0]
	want = naiveConv(x, w, nil, 1, 1, 0, 0, 0, 0, 1, 1, 1)
	kbCheck(t, "valid", got, ir.Shape{1, 1, 3, 3}, want.Float)
}

func TestConvErrors(t *testing.T) {
	x := kbT(1, 4, 5, 5)
	for name, w := range map[string]*ir.Tensor{
		"channels": kbT(2, 3, 3, 3),
		"rank":     kbT(2, 4, 3),
		"too big":  kbT(2, 4, 6, 6),
	} {
		if _, err := EvalNode(kbNode("Conv", nil, 1), 13, []*ir.Tensor{x, w}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := EvalNode(kbNode("Conv", ir.Attrs{"group": kbInt(3)}, 1), 13, []*ir.Tensor{x, kbT(3, 1, 3, 3)}); err == nil {
		t.Error("bad group: no error")
	}
	if _, err := EvalNode(kbNode("Conv", nil, 1), 13, []*ir.Tensor{x, kbT(2, 4, 3, 3), kbT(3)}); err == nil {
		t.Error("bad bias: no error")
	}
}

func TestMatMulBroadcast(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	naive := func(a []float64, b []float64, m, k, n int) []float64 {
		out := make([]float64, m*n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				for l := 0; l < k; l++ {
					out[i*n+j] += a[i*k+l] * b[l*n+j]
				}
			}
		}
		return out
	}
	mm := kbNode("MatMul", nil, 1)
	// [2,1,3,4] x [3,4,5] -> [2,3,3,5]
	a := kbRand(r, 2, 1, 3, 4)
	b := kbRand(r, 3, 4, 5)
	got := kbEval(t, mm, 13, a, b)[0]
	if !got.Shape.Equal(ir.Shape{2, 3, 3, 5}) {
		t.Fatalf("shape %v", got.Shape)
	}
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			want := naive(a.Float[i*12:(i+1)*12], b.Float[j*20:(j+1)*20], 3, 4, 5)
			if !kbEqual(got.Float[(i*3+j)*15:(i*3+j+1)*15], want, 1e-12) {
				t.Fatalf("batch %d,%d differs", i, j)
			}
		}
	}
	// Batched A times a matrix (folded path).
	a = kbRand(r, 2, 3, 4)
	b = kbRand(r, 4, 5)
	got = kbEval(t, mm, 13, a, b)[0]
	kbCheck(t, "fold", got, ir.Shape{2, 3, 5}, append(naive(a.Float[:12], b.Float, 3, 4, 5), naive(a.Float[12:], b.Float, 3, 4, 5)...))
	// Matrix times batched B.
	a = kbRand(r, 3, 4)
	b = kbRand(r, 2, 4, 5)
	got = kbEval(t, mm, 13, a, b)[0]
	kbCheck(t, "bcast A", got, ir.Shape{2, 3, 5}, append(naive(a.Float, b.Float[:20], 3, 4, 5), naive(a.Float, b.Float[20:], 3, 4, 5)...))
	// 1-D operands.
	v := kbSeq(3)
	mat := kbSeq(3, 2)
	kbCheck(t, "vec-mat", kbEval(t, mm, 13, v, mat)[0], ir.Shape{2}, []float64{22, 28})
	kbCheck(t, "mat-vec", kbEval(t, mm, 13, kbSeq(2, 3), v)[0], ir.Shape{2}, []float64{14, 32})
	kbCheck(t, "vec-vec", kbEval(t, mm, 13, v, v)[0], ir.Shape{}, []float64{14})
	kbCheck(t, "batch-vec", kbEval(t, mm, 13, kbSeq(2, 2, 3), v)[0], ir.Shape{2, 2}, []float64{14, 32, 50, 68})
	// Integer operands stay integer.
	ai := ir.NewInt(ir.Shape{2, 2}, []int64{1, 2, 3, 4})
	gi := kbEval(t, mm, 13, ai, ai)[0]
	if gi.DType != ir.Int64 || gi.Int[0] != 7 || gi.Int[3] != 22 {
		t.Fatalf("int matmul: %+v", gi)
	}
	for name, pair := range map[string][2]*ir.Tensor{
		"inner": {kbT(2, 3), kbT(4, 2)},
		"batch": {kbT(2, 2, 3), kbT(3, 3, 2)},
	} {
		if _, err := EvalNode(mm, 13, pair[:]); err == nil {
			t.Errorf("%s mismatch: no error", name)
		}
	}
}

func TestGemm(t *testing.T) {
	a := kbSeq(2, 3) // [[1 2 3] [4 5 6]]
	b := kbSeq(3, 2) // [[1 2] [3 4] [5 6]]
	ab := []float64{22, 28, 49, 64}
	kbCheck(t, "plain", kbEval(t, kbNode("Gemm", nil, 1), 13, a, b)[0], ir.Shape{2, 2}, ab)
	// Transposes: Aᵀ of a [3,2] and Bᵀ of a [2,3].
	at := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{3, 2}, Float: []float64{1, 4, 2, 5, 3, 6}}
	bt := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 3}, Float: []float64{1, 3, 5, 2, 4, 6}}
	kbCheck(t, "transA", kbEval(t, kbNode("Gemm", ir.Attrs{"transA": kbInt(1)}, 1), 13, at, b)[0], ir.Shape{2, 2}, ab)
	kbCheck(t, "transB", kbEval(t, kbNode("Gemm", ir.Attrs{"transB": kbInt(1)}, 1), 13, a, bt)[0], ir.Shape{2, 2}, ab)
	kbCheck(t, "both", kbEval(t, kbNode("Gemm", ir.Attrs{"transA": kbInt(1), "transB": kbInt(1)}, 1), 13, at, bt)[0], ir.Shape{2, 2}, ab)
	// alpha, beta and broadcast C (row vector, column, scalar).
	attrs := ir.Attrs{"alpha": kbFloat(2), "beta": kbFloat(0.5)}
	c := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2}, Float: []float64{10, 20}}
	kbCheck(t, "row C", kbEval(t, kbNode("Gemm", attrs, 1), 13, a, b, c)[0], ir.Shape{2, 2}, []float64{49, 66, 103, 138})
	c = &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 1}, Float: []float64{10, 20}}
	kbCheck(t, "col C", kbEval(t, kbNode("Gemm", attrs, 1), 13, a, b, c)[0], ir.Shape{2, 2}, []float64{49, 61, 108, 138})
	c = &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{}, Float: []float64{4}}
	kbCheck(t, "scalar C", kbEval(t, kbNode("Gemm", attrs, 1), 13, a, b, c)[0], ir.Shape{2, 2}, []float64{46, 58, 100, 130})
	if _, err := EvalNode(kbNode("Gemm", nil, 1), 13, []*ir.Tensor{a, b, kbT(3)}); err == nil {
		t.Error("bad C: no error")
	}
	if _, err := EvalNode(kbNode("Gemm", nil, 1), 13, []*ir.Tensor{a, a}); err == nil {
		t.Error("bad inner: no error")
	}
}

func TestDense(t *testing.T) {
	x := kbSeq(2, 1, 3)
	w := kbSeq(3, 2)
	b := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2}, Float: []float64{1, -1}}
	kbCheck(t, "dense", kbEval(t, kbNode("Dense", nil, 1), 13, x, w, b)[0], ir.Shape{2, 1, 2}, []float64{23, 27, 50, 63})
	kbCheck(t, "dense no bias", kbEval(t, kbNode("Dense", nil, 1), 13, x, w)[0], ir.Shape{2, 1, 2}, []float64{22, 28, 49, 64})
	if _, err := EvalNode(kbNode("Dense", nil, 1), 13, []*ir.Tensor{x, kbT(2, 2)}); err == nil {
		t.Error("bad W: no error")
	}
}

func TestAveragePool(t *testing.T) {
	x := kbSeq(1, 1, 4, 4)
	// ceil_mode: windows at 0 and 2, the second clipped by the input edge.
	attrs := ir.Attrs{"kernel_shape": kbInts(3, 3), "strides": kbInts(2, 2), "ceil_mode": kbInt(1)}
	kbCheck(t, "ceil", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 2, 2}, []float64{6, 7.5, 12, 13.5})
	attrs = ir.Attrs{"kernel_shape": kbInts(3, 3), "strides": kbInts(2, 2)}
	kbCheck(t, "floor", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 1, 1}, []float64{6})
	// pads with and without count_include_pad.
	x = kbSeq(1, 1, 2, 2)
	attrs = ir.Attrs{"kernel_shape": kbInts(2, 2), "pads": kbInts(1, 1, 0, 0)}
	kbCheck(t, "exclude pad", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 2, 2}, []float64{1, 1.5, 2, 2.5})
	attrs["count_include_pad"] = kbInt(1)
	kbCheck(t, "include pad", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 2, 2}, []float64{0.25, 0.75, 1, 2.5})
	// 1-D, SAME_UPPER: in 5, k 2, s 1 -> pads 0,1.
	x = kbSeq(1, 1, 5)
	attrs = ir.Attrs{"kernel_shape": kbInts(2), "auto_pad": kbString("SAME_UPPER")}
	kbCheck(t, "same_upper", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 5}, []float64{1.5, 2.5, 3.5, 4.5, 5})
	attrs["auto_pad"] = kbString("SAME_LOWER")
	kbCheck(t, "same_lower", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 5}, []float64{1, 1.5, 2.5, 3.5, 4.5})
	// ceil_mode with count_include_pad: the overflow beyond the pads is not
	// counted. in 4, k 3, s 2, pads 1,1 -> out ceil(3/2)+1 = 3, windows
	// [-1,1], [1,3], [3,5] (the last counts -1..4 minus overflow 5).
	x = kbSeq(1, 1, 4)
	attrs = ir.Attrs{"kernel_shape": kbInts(3), "strides": kbInts(2), "pads": kbInts(1, 1), "ceil_mode": kbInt(1), "count_include_pad": kbInt(1)}
	kbCheck(t, "ceil include pad", kbEval(t, kbNode("AveragePool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 3}, []float64{3.0 / 3, 9.0 / 3, 4.0 / 2})
}

func TestMaxPool(t *testing.T) {
	x := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{1, 1, 3, 3}, Float: []float64{1, 9, 2, 8, 3, 7, 4, 6, 5}}
	attrs := ir.Attrs{"kernel_shape": kbInts(2, 2), "pads": kbInts(0, 0, 1, 1)}
	outs := kbEval(t, kbNode("MaxPool", attrs, 2), 13, x)
	kbCheck(t, "max", outs[0], ir.Shape{1, 1, 3, 3}, []float64{9, 9, 7, 8, 7, 7, 6, 6, 5})
	if got := outs[1].Int; !equalInts(got, []int64{1, 1, 5, 3, 5, 5, 7, 7, 8}) {
		t.Fatalf("indices %v", got)
	}
	attrs["storage_order"] = kbInt(1)
	outs = kbEval(t, kbNode("MaxPool", attrs, 2), 13, x)
	if got := outs[1].Int; !equalInts(got, []int64{3, 3, 7, 1, 7, 7, 5, 5, 8}) {
		t.Fatalf("column-major indices %v", got)
	}
	// Dilations and ceil mode.
	x = kbSeq(1, 1, 4, 4)
	attrs = ir.Attrs{"kernel_shape": kbInts(2, 2), "dilations": kbInts(2, 2)}
	kbCheck(t, "dilated", kbEval(t, kbNode("MaxPool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 2, 2}, []float64{11, 12, 15, 16})
	attrs = ir.Attrs{"kernel_shape": kbInts(3, 3), "strides": kbInts(2, 2), "ceil_mode": kbInt(1)}
	kbCheck(t, "ceil", kbEval(t, kbNode("MaxPool", attrs, 1), 13, x)[0], ir.Shape{1, 1, 2, 2}, []float64{11, 12, 15, 16})
	// Integer input.
	xi := ir.NewInt(ir.Shape{1, 1, 2, 2}, []int64{3, 1, 4, 2})
	xi.DType = ir.Uint8
	yi := kbEval(t, kbNode("MaxPool", ir.Attrs{"kernel_shape": kbInts(2, 2)}, 1), 13, xi)[0]
	if yi.DType != ir.Uint8 || len(yi.Int) != 1 || yi.Int[0] != 4 {
		t.Fatalf("uint8 maxpool: %+v", yi)
	}
	gap := kbEval(t, kbNode("GlobalAveragePool", nil, 1), 13, kbSeq(1, 2, 2, 2))[0]
	kbCheck(t, "global", gap, ir.Shape{1, 2, 1, 1}, []float64{2.5, 6.5})
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBatchNorm(t *testing.T) {
	x := kbSeq(2, 2, 1, 2)
	p := func(v ...float64) *ir.Tensor { return &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{len(v)}, Float: v} }
	n := kbNode("BatchNormalization", ir.Attrs{"epsilon": kbFloat(0)}, 1)
	got := kbEval(t, n, 15, x, p(1, 2), p(0, 1), p(1, 2), p(4, 1))[0]
	// channel 0: (x-1)/2; channel 1: (x-2)*2+1.
	kbCheck(t, "bn", got, x.Shape, []float64{0, 0.5, 3, 5, 2, 2.5, 11, 13})
	// Training mode is unsupported.
	n = kbNode("BatchNormalization", ir.Attrs{"training_mode": kbInt(1)}, 3)
	_, err := EvalNode(n, 15, []*ir.Tensor{x, p(1, 2), p(0, 1), p(1, 2), p(4, 1)})
	var ue *ir.UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("training mode: %v", err)
	}
	// Per-activation (spatial=0, opset 7).
	n = kbNode("BatchNormalization", ir.Attrs{"epsilon": kbFloat(0), "spatial": kbInt(0)}, 1)
	got = kbEval(t, n, 7, x, p(1, 1, 1, 1), p(0, 0, 0, 0), p(1, 2, 3, 4), p(1, 1, 1, 1))[0]
	kbCheck(t, "bn spatial=0", got, x.Shape, []float64{0, 0, 0, 0, 4, 4, 4, 4})
	if _, err := EvalNode(kbNode("BatchNormalization", nil, 1), 15, []*ir.Tensor{x, p(1), p(0), p(1), p(1)}); err == nil {
		t.Error("bad params: no error")
	}
}

func TestLayerNorm(t *testing.T) {
	x := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2, 2}, Float: []float64{1, 3, 2, 6}}
	scale := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2}, Float: []float64{1, 2}}
	b := &ir.Tensor{DType: ir.Float32, Shape: ir.Shape{2}, Float: []float64{0, 1}}
	outs := kbEval(t, kbNode("LayerNormalization", ir.Attrs{"epsilon": kbFloat(0)}, 3), 17, x, scale, b)
	kbCheck(t, "y", outs[0], x.Shape, []float64{-1, 3, -1, 3})
	kbCheck(t, "mean", outs[1], ir.Shape{2, 1}, []float64{2, 4})
	kbCheck(t, "invstd", outs[2], ir.Shape{2, 1}, []float64{1, 0.5})
	// axis 0 normalizes everything.
	outs = kbEval(t, kbNode("LayerNormalization", ir.Attrs{"axis": kbInt(0), "epsilon": kbFloat(0)}, 3), 17, x, kbSeq(1))
	kbCheck(t, "mean axis0", outs[1], ir.Shape{1, 1}, []float64{3})
	if _, err := EvalNode(kbNode("LayerNormalization", nil, 1), 17, []*ir.Tensor{x, kbT(3)}); err == nil {
		t.Error("bad scale: no error")
	}
}

// naivePool2D is a direct-loop 2-D pooling of x [N,C,H,W].
func naivePool2D(x *ir.Tensor, isMax bool, k, s, d, pads [2]int, padsEnd [2]int, ceil, countPad bool) *ir.Tensor {
	N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	in := [2]int{H, W}
	var out [2]int
	for a := 0; a < 2; a++ {
		span := in[a] + pads[a] + padsEnd[a] - ((k[a]-1)*d[a] + 1)
		if ceil {
			out[a] = int(math.Ceil(float64(span)/float64(s[a]))) + 1
			if (out[a]-1)*s[a] >= in[a]+pads[a] {
				out[a]--
			}
		} else {
			out[a] = span/s[a] + 1
		}
	}
	y := kbT(N, C, out[0], out[1])
	for nc := 0; nc < N*C; nc++ {
		for oh := 0; oh < out[0]; oh++ {
			for ow := 0; ow < out[1]; ow++ {
				best, sum, cnt, pcnt := math.Inf(-1), 0.0, 0, 0
				for kh := 0; kh < k[0]; kh++ {
					for kw := 0; kw < k[1]; kw++ {
						ih := oh*s[0] - pads[0] + kh*d[0]
						iw := ow*s[1] - pads[1] + kw*d[1]
						if ih >= -pads[0] && ih < H+padsEnd[0] && iw >= -pads[1] && iw < W+padsEnd[1] {
							pcnt++
						}
						if ih < 0 || ih >= H || iw < 0 || iw >= W {
							continue
						}
						v := x.Float[(nc*H+ih)*W+iw]
						best = math.Max(best, v)
						sum += v
						cnt++
					}
				}
				o := &y.Float[(nc*out[0]+oh)*out[1]+ow]
				switch {
				case isMax:
					*o = best
				case countPad:
					*o = sum / float64(pcnt)
				default:
					*o = sum / float64(cnt)
				}
			}
		}
	}
	return y
}

func TestPoolRandomAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	for iter := 0; iter < 300; iter++ {
		isMax := r.Intn(2) == 0
		var k, s, d, pb, pe [2]int
		for a := 0; a < 2; a++ {
			k[a], s[a] = 1+r.Intn(4), 1+r.Intn(3)
			d[a] = 1
			if isMax {
				d[a] = 1 + r.Intn(2)
			}
			pb[a], pe[a] = r.Intn(k[a]), r.Intn(k[a])
		}
		ceil, countPad := r.Intn(2) == 0, r.Intn(2) == 0
		h := (k[0]-1)*d[0] + 1 + r.Intn(6)
		w := (k[1]-1)*d[1] + 1 + r.Intn(6)
		x := kbRand(r, 1+r.Intn(2), 1+r.Intn(2), h, w)
		attrs := ir.Attrs{
			"kernel_shape": kbInts(int64(k[0]), int64(k[1])),
			"strides":      kbInts(int64(s[0]), int64(s[1])),
			"pads":         kbInts(int64(pb[0]), int64(pb[1]), int64(pe[0]), int64(pe[1])),
			"ceil_mode":    kbInt(map[bool]int64{false: 0, true: 1}[ceil]),
		}
		op := "AveragePool"
		if isMax {
			op = "MaxPool"
			attrs["dilations"] = kbInts(int64(d[0]), int64(d[1]))
		} else {
			attrs["count_include_pad"] = kbInt(map[bool]int64{false: 0, true: 1}[countPad])
		}
		got := kbEval(t, kbNode(op, attrs, 1), 12, x)[0]
		want := naivePool2D(x, isMax, k, s, d, pb, pe, ceil, countPad)
		if !got.Shape.Equal(want.Shape) || !kbEqual(got.Float, want.Float, 1e-9) {
			t.Fatalf("iteration %d %s (%v): shape %v want %v; values differ", iter, op, attrs.Summary(), got.Shape, want.Shape)
		}
	}
}
