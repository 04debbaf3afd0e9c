package passes

import (
	"math"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

func TestRemoveIdentity(t *testing.T) {
	runPassCases(t, "remove_identity", RemoveIdentity, []passCase{
		{"chain", func() *ir.Graph {
			b := newBuilder("chain", 13)
			x := b.input("x", 2, 3)
			y := b.op("Identity", nil, b.op("Relu", nil, x))
			z := b.op("Dropout", nil, y, b.scalar("ratio", 0.5))
			return b.output(b.op("Neg", nil, z))
		}},
		{"graph_output", func() *ir.Graph {
			// The Relu's output takes the name of the graph output.
			b := newBuilder("graph_output", 13)
			x := b.input("x", 2, 3)
			r := b.op("Relu", nil, x)
			return b.output(b.op("Identity", nil, r), b.op("Neg", nil, r))
		}},
		{"input_output", func() *ir.Graph {
			// Identity of a graph input stays: renaming would change the
			// model's interface.
			b := newBuilder("input_output", 13)
			x := b.input("x", 2, 3)
			return b.output(b.op("Identity", nil, x), b.op("Neg", nil, x))
		}},
		{"const_output", func() *ir.Graph {
			b := newBuilder("const_output", 13)
			x := b.input("x", 3)
			return b.output(b.op("Identity", nil, b.konst("c", ir.Shape{3})), b.op("Neg", nil, x))
		}},
		{"dropout_mask", func() *ir.Graph {
			b := newBuilder("dropout_mask", 13)
			x := b.input("x", 2, 2)
			d := b.op("Dropout", nil, x)
			mask := &ir.Value{Name: "mask", Producer: d.Producer}
			d.Producer.Outputs = append(d.Producer.Outputs, mask)
			return b.output(b.op("Relu", nil, d), b.op("Where", nil, mask, x, b.op("Neg", nil, x)))
		}},
	})
}

func TestRemoveIdentityKeepsTrainingDropout(t *testing.T) {
	b := newBuilder("training", 13)
	x := b.input("x", 2, 2)
	train := newConst("train", &ir.Tensor{DType: ir.Bool, Shape: ir.Shape{}, Int: []int64{1}})
	g := b.output(b.op("Relu", nil, b.op("Dropout", nil, x, b.scalar("ratio", 0.5), train)))
	if err := RemoveIdentity(g); err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 2 || g.Nodes[0].Op != "Dropout" {
		t.Errorf("training-mode Dropout removed:\n%s", dump(t, g))
	}
}

func TestPrune(t *testing.T) {
	runPassCases(t, "prune", Prune, []passCase{
		{"dead_branch", func() *ir.Graph {
			b := newBuilder("dead_branch", 13)
			x := b.input("x", 2, 3)
			r := b.op("Relu", nil, x)
			b.op("Exp", nil, b.op("Neg", nil, r)) // read by nothing
			return b.output(b.op("Abs", nil, r))
		}},
	})
}

func TestFoldBatchNorm(t *testing.T) {
	bn := func(b *builder, x *ir.Value, c int, eps float64) *ir.Value {
		varc := b.konst("var", ir.Shape{c})
		for i := range varc.Const.Float {
			varc.Const.Float[i] = math.Abs(varc.Const.Float[i]) + 0.1
		}
		return b.op("BatchNormalization", ir.Attrs{"epsilon": floatAttr(eps)}, x,
			b.konst("gamma", ir.Shape{c}), b.konst("beta", ir.Shape{c}), b.konst("mean", ir.Shape{c}), varc)
	}
	runPassCases(t, "fold_batchnorm", FoldBatchNorm, []passCase{
		{"conv", func() *ir.Graph {
			b := newBuilder("conv", 13)
			x := b.input("x", -1, 2, 5, 5)
			c := b.op("Conv", ir.Attrs{"pads": intsAttr(1, 1, 1, 1)}, x, b.konst("w", ir.Shape{3, 2, 3, 3}), b.konst("b", ir.Shape{3}))
			return b.output(b.op("Relu", nil, bn(b, c, 3, 1e-5)))
		}},
		{"conv_nobias_grouped", func() *ir.Graph {
			b := newBuilder("conv_nobias_grouped", 13)
			x := b.input("x", 1, 4, 4, 4)
			c := b.op("Conv", ir.Attrs{"group": intAttr(2)}, x, b.konst("w", ir.Shape{4, 2, 2, 2}))
			return b.output(bn(b, c, 4, 1e-3))
		}},
		{"gemm", func() *ir.Graph {
			b := newBuilder("gemm", 13)
			x := b.input("x", 2, 3)
			y := b.op("Gemm", ir.Attrs{"transB": intAttr(1), "alpha": floatAttr(0.5), "beta": floatAttr(2)},
				x, b.konst("w", ir.Shape{4, 3}), b.konst("c", ir.Shape{1, 4}))
			return b.output(bn(b, y, 4, 1e-5))
		}},
		{"dense", func() *ir.Graph {
			b := newBuilder("dense", 13)
			x := b.input("x", 2, 3)
			y := b.op("Dense", nil, x, b.konst("w", ir.Shape{3, 4}), b.konst("b", ir.Shape{4}))
			return b.output(bn(b, y, 4, 1e-5))
		}},
		{"shared_conv_output", func() *ir.Graph {
			// The Conv output is read twice: the BatchNormalization stays.
			b := newBuilder("shared_conv_output", 13)
			x := b.input("x", 1, 2, 3, 3)
			c := b.op("Conv", nil, x, b.konst("w", ir.Shape{2, 2, 1, 1}))
			return b.output(b.op("Add", nil, bn(b, c, 2, 1e-5), c))
		}},
	})
}

func TestFuseMatMulAdd(t *testing.T) {
	runPassCases(t, "fuse_matmul_add", FuseMatMulAdd, []passCase{
		{"matmul_add", func() *ir.Graph {
			b := newBuilder("matmul_add", 14)
			x := b.input("x", -1, 3, 4)
			m := b.op("MatMul", nil, x, b.konst("w", ir.Shape{4, 5}))
			y := b.op("Add", nil, b.konst("bias", ir.Shape{5}), m) // torch puts the bias first
			return b.output(b.op("Relu", nil, y))
		}},
		{"matmul_add_bcast", func() *ir.Graph {
			b := newBuilder("matmul_add_bcast", 14)
			x := b.input("x", 3, 4)
			m := b.op("MatMul", nil, x, b.konst("w", ir.Shape{4, 5}))
			return b.output(b.op("Add", nil, m, b.konst("bias", ir.Shape{1, 1})))
		}},
		{"lone_matmul", func() *ir.Graph {
			b := newBuilder("lone_matmul", 14)
			x := b.input("x", 2, 4)
			m := b.op("MatMul", nil, x, b.konst("w", ir.Shape{4, 3}))
			// A per-row constant is no bias: the Add stays.
			return b.output(b.op("Add", nil, m, b.konst("rows", ir.Shape{2, 3})))
		}},
		{"shared_matmul_output", func() *ir.Graph {
			b := newBuilder("shared_matmul_output", 14)
			x := b.input("x", 2, 4)
			m := b.op("MatMul", nil, x, b.konst("w", ir.Shape{4, 3}))
			return b.output(b.op("Add", nil, m, b.konst("bias", ir.Shape{3})), m)
		}},
		{"gemm", func() *ir.Graph {
			b := newBuilder("gemm", 13)
			x := b.input("x", -1, 3)
			y := b.op("Gemm", ir.Attrs{"transB": intAttr(1), "alpha": floatAttr(0.5), "beta": floatAttr(2)},
				x, b.konst("w", ir.Shape{4, 3}), b.konst("c", ir.Shape{4}))
			return b.output(y)
		}},
		{"gemm_add", func() *ir.Graph {
			b := newBuilder("gemm_add", 13)
			x := b.input("x", 2, 3)
			y := b.op("Gemm", nil, x, b.konst("w", ir.Shape{3, 4}))
			return b.output(b.op("Add", nil, y, b.konst("bias", ir.Shape{4})))
		}},
		{"gemm_full_c", func() *ir.Graph {
			// C [2, 4] is not a bias vector: the Gemm stays.
			b := newBuilder("gemm_full_c", 13)
			x := b.input("x", 2, 3)
			return b.output(b.op("Gemm", nil, x, b.konst("w", ir.Shape{3, 4}), b.konst("c", ir.Shape{2, 4})))
		}},
	})
}

func TestRecognizeSiLU(t *testing.T) {
	runPassCases(t, "recognize_silu", RecognizeSiLU, []passCase{
		{"both_orders", func() *ir.Graph {
			b := newBuilder("both_orders", 13)
			x := b.input("x", 2, 3)
			a := b.op("Mul", nil, x, b.op("Sigmoid", nil, x))
			c := b.op("Mul", nil, b.op("Sigmoid", nil, a), a)
			return b.output(c)
		}},
		{"sigmoid_shared", func() *ir.Graph {
			b := newBuilder("sigmoid_shared", 13)
			x := b.input("x", 2, 3)
			s := b.op("Sigmoid", nil, x)
			return b.output(b.op("Mul", nil, x, s), s)
		}},
	})
}

func TestRecognizeGELU(t *testing.T) {
	erfOf := func(b *builder, x *ir.Value, mul bool) *ir.Value {
		var s *ir.Value
		if mul {
			s = b.op("Mul", nil, b.scalar("rsqrt2", 1/math.Sqrt2), x)
		} else {
			s = b.op("Div", nil, x, b.scalar("sqrt2", math.Sqrt2))
		}
		return b.op("Add", nil, b.op("Erf", nil, s), b.scalar("one", 1))
	}
	runPassCases(t, "recognize_gelu", RecognizeGELU, []passCase{
		{"torch2", func() *ir.Graph {
			// (x * (1+erf)) * 0.5, as torch 2.x emits.
			b := newBuilder("torch2", 14)
			x := b.op("Relu", nil, b.input("x", -1, 4))
			p := erfOf(b, x, false)
			return b.output(b.op("Mul", nil, b.op("Mul", nil, x, p), b.scalar("half", 0.5)))
		}},
		{"half_first", func() *ir.Graph {
			// (x * 0.5) * (1+erf), as torch 1.13 emits.
			b := newBuilder("half_first", 13)
			x := b.op("Neg", nil, b.input("x", 2, 4))
			p := erfOf(b, x, true)
			return b.output(b.op("Mul", nil, p, b.op("Mul", nil, b.scalar("half", 0.5), x)))
		}},
		{"half_with_erf", func() *ir.Graph {
			// x * ((1+erf) / 2)
			b := newBuilder("half_with_erf", 13)
			x := b.op("Neg", nil, b.input("x", 2, 4))
			p := erfOf(b, x, false)
			return b.output(b.op("Mul", nil, b.op("Mul", nil, p, b.scalar("half", 0.5)), x))
		}},
		{"div_two", func() *ir.Graph {
			b := newBuilder("div_two", 13)
			x := b.op("Neg", nil, b.input("x", 2, 4))
			p := erfOf(b, x, false)
			return b.output(b.op("Div", nil, b.op("Mul", nil, x, p), b.scalar("two", 2)))
		}},
		{"wrong_constant", func() *ir.Graph {
			b := newBuilder("wrong_constant", 13)
			x := b.op("Neg", nil, b.input("x", 2, 4))
			p := erfOf(b, x, false)
			return b.output(b.op("Mul", nil, b.op("Mul", nil, x, p), b.scalar("half", 0.6)))
		}},
	})
}

func TestRecognizeLayerNorm(t *testing.T) {
	decomposed := func(b *builder, x *ir.Value, axes func() (ir.Attrs, []*ir.Value), pow bool) *ir.Value {
		attrs, extra := axes()
		mean := b.op("ReduceMean", attrs, append([]*ir.Value{x}, extra...)...)
		d := b.op("Sub", nil, x, mean)
		var sq *ir.Value
		if pow {
			sq = b.op("Pow", nil, d, b.scalar("two", 2))
		} else {
			sq = b.op("Mul", nil, d, d)
		}
		attrs, extra = axes()
		v := b.op("ReduceMean", attrs, append([]*ir.Value{sq}, extra...)...)
		return b.op("Div", nil, d, b.op("Sqrt", nil, b.op("Add", nil, b.scalar("eps", 1e-5), v)))
	}
	attrAxes := func() (ir.Attrs, []*ir.Value) { return ir.Attrs{"axes": intsAttr(-1)}, nil }
	runPassCases(t, "recognize_layernorm", RecognizeLayerNorm, []passCase{
		{"torch_opset14", func() *ir.Graph {
			b := newBuilder("torch_opset14", 14)
			x := b.op("Relu", nil, b.input("x", -1, 3, 8))
			n := decomposed(b, x, attrAxes, true)
			y := b.op("Add", nil, b.op("Mul", nil, n, b.konst("gamma", ir.Shape{8})), b.konst("beta", ir.Shape{8}))
			return b.output(b.op("Relu", nil, y), x)
		}},
		{"no_affine_axes_input", func() *ir.Graph {
			b := newBuilder("no_affine_axes_input", 18)
			x := b.input("x", 2, 6)
			axesV := b.ints("axes", 1)
			axes := func() (ir.Attrs, []*ir.Value) { return nil, []*ir.Value{axesV} }
			return b.output(decomposed(b, x, axes, false))
		}},
		{"beta_only", func() *ir.Graph {
			b := newBuilder("beta_only", 13)
			x := b.input("x", 2, 6)
			return b.output(b.op("Add", nil, b.konst("beta", ir.Shape{1, 6}), decomposed(b, x, attrAxes, true)))
		}},
		{"mean_shared", func() *ir.Graph {
			// The mean is read outside the pattern: nothing is rewritten.
			b := newBuilder("mean_shared", 13)
			x := b.input("x", 2, 6)
			n := decomposed(b, x, attrAxes, true)
			mean := g0(b, "ReduceMean").Outputs[0]
			return b.output(n, mean)
		}},
	})
}

// g0 returns the first node of op in the builder's graph.
func g0(b *builder, op string) *ir.Node {
	for _, n := range b.g.Nodes {
		if n.Op == op {
			return n
		}
	}
	return nil
}
