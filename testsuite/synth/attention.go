// Package synth builds small synthetic models for tests that need a model
// shape the zoo has but at a size an encrypted test run affords: a
// pre-LayerNorm self-attention block (LayerNormalization, Q/K/V
// projections, Q·Kᵀ, softmax, scores·V, output projection, residual) and a
// tiny causal language model built of such blocks (token and positional
// embedding, causal blocks, LayerNormalization, head), with deterministic
// pseudo-random weights.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ciphercut/ciphercut/ir"
)

// AttentionOptions size an attention block. Zero fields take the defaults
// in brackets.
type AttentionOptions struct {
	// Tokens [4], Dim [8] and Heads [1] shape the block: input [N, Tokens,
	// Dim], Dim divisible by Heads.
	Tokens, Dim, Heads int
	// Seed picks the weights [1].
	Seed uint64
	// Opset is the graph's ONNX opset [14].
	Opset int64
	// Causal masks the scores as exported GPTs do: -1e4 added above the
	// diagonal before the softmax.
	Causal bool
}

func (o AttentionOptions) withDefaults() AttentionOptions {
	if o.Tokens <= 0 {
		o.Tokens = 4
	}
	if o.Dim <= 0 {
		o.Dim = 8
	}
	if o.Heads <= 0 {
		o.Heads = 1
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Opset == 0 {
		o.Opset = 14
	}
	return o
}

// attnBuilder appends nodes to a graph with sequential names.
type attnBuilder struct {
	g *ir.Graph
	r *rand.Rand
	k int
}

func (b *attnBuilder) name(base string) string {
	b.k++
	return fmt.Sprintf("%s_%d", base, b.k)
}

func (b *attnBuilder) konst(t *ir.Tensor) *ir.Value {
	return &ir.Value{Name: b.name("const"), DType: t.DType, Shape: t.Shape.Clone(), Const: t}
}

// weights returns a constant of the given shape, uniform in [-scale, scale].
func (b *attnBuilder) weights(scale float64, shape ...int) *ir.Value {
	data := make([]float64, ir.Shape(shape).Size())
	for i := range data {
		data[i] = scale * (2*b.r.Float64() - 1)
	}
	return b.konst(ir.NewFloat(ir.Shape(shape), data))
}

func (b *attnBuilder) ints(data ...int64) *ir.Value {
	return b.konst(ir.NewInt(ir.Shape{len(data)}, data))
}

func (b *attnBuilder) op(op string, attrs ir.Attrs, ins ...*ir.Value) *ir.Value {
	if attrs == nil {
		attrs = ir.Attrs{}
	}
	n := &ir.Node{Name: b.name(op), Op: op, Inputs: ins, Attrs: attrs}
	out := &ir.Value{Name: b.name("v"), DType: ir.Float32, Producer: n}
	n.Outputs = []*ir.Value{out}
	b.g.Nodes = append(b.g.Nodes, n)
	return out
}

// heads reshapes [N, T, D] to [N, H, T, D/H] (perm 0 2 1 3) or, with
// transposed, to [N, H, D/H, T] (perm 0 2 3 1).
func (b *attnBuilder) heads(x *ir.Value, o AttentionOptions, transposed bool) *ir.Value {
	r := b.op("Reshape", nil, x, b.ints(-1, int64(o.Tokens), int64(o.Heads), int64(o.Dim/o.Heads)))
	perm := []int64{0, 2, 1, 3}
	if transposed {
		perm = []int64{0, 2, 3, 1}
	}
	return b.op("Transpose", ir.Attrs{"perm": {Kind: ir.AttrInts, Ints: perm}}, r)
}

// Attention returns a pre-LayerNorm self-attention block with a residual
// connection: y = x + proj(softmax(Q·Kᵀ/√d)·V), Q, K, V projections of
// LayerNormalization(x), per head. Its input "input" is [N, Tokens, Dim]
// with a symbolic N, its output "output" the same shape.
func Attention(opts AttentionOptions) *ir.Graph {
	o := opts.withDefaults()
	b := &attnBuilder{g: &ir.Graph{Name: "attention", Opset: o.Opset}, r: rand.New(rand.NewPCG(o.Seed, 7))}
	x := &ir.Value{Name: "input", DType: ir.Float32, Shape: ir.Shape{-1, o.Tokens, o.Dim}, DimNames: []string{"N", "", ""}}
	b.g.Inputs = []*ir.Value{x}
	y := b.block(x, o)
	y.Name = "output"
	b.g.Outputs = []*ir.Value{y}
	return b.g
}

// layerNorm appends a LayerNormalization over the last axis of x (width d)
// with gamma near 1.
func (b *attnBuilder) layerNorm(x *ir.Value, d int) *ir.Value {
	ln := b.op("LayerNormalization", ir.Attrs{"axis": {Kind: ir.AttrInt, Int: -1}, "epsilon": {Kind: ir.AttrFloat, Float: 1e-5}},
		x, b.weights(0.5, d), b.weights(0.2, d))
	for i := range ln.Producer.Inputs[1].Const.Float {
		ln.Producer.Inputs[1].Const.Float[i] += 1
	}
	return ln
}

// block appends the attention block of Attention to x [N, Tokens, Dim].
func (b *attnBuilder) block(x *ir.Value, o AttentionOptions) *ir.Value {
	d := o.Dim
	ln := b.layerNorm(x, d)
	proj := func(in *ir.Value) *ir.Value {
		w := 1 / math.Sqrt(float64(d))
		return b.op("Add", nil, b.op("MatMul", nil, in, b.weights(w*1.7, d, d)), b.weights(0.1, d))
	}
	q := b.heads(proj(ln), o, false)
	k := b.heads(proj(ln), o, true)
	v := b.heads(proj(ln), o, false)
	scores := b.op("MatMul", nil, q, k)
	scaled := b.op("Mul", nil, scores, b.konst(ir.NewFloat(ir.Shape{}, []float64{1 / math.Sqrt(float64(d/o.Heads))})))
	if o.Causal {
		t := o.Tokens
		mask := make([]float64, t*t)
		for i := range t {
			for j := i + 1; j < t; j++ {
				mask[i*t+j] = -1e4
			}
		}
		scaled = b.op("Add", nil, scaled, b.konst(ir.NewFloat(ir.Shape{t, t}, mask)))
	}
	p := b.op("Softmax", ir.Attrs{"axis": {Kind: ir.AttrInt, Int: -1}}, scaled)
	ctx := b.op("MatMul", nil, p, v)
	merged := b.op("Reshape", nil, b.op("Transpose", ir.Attrs{"perm": {Kind: ir.AttrInts, Ints: []int64{0, 2, 1, 3}}}, ctx),
		b.ints(-1, int64(o.Tokens), int64(d)))
	return b.op("Add", nil, x, proj(merged))
}

// GPTOptions size a tiny causal language model. Zero fields take the
// defaults in brackets; Attention's fields shape its blocks (Causal is
// always set), Tokens being the context length.
type GPTOptions struct {
	AttentionOptions
	// Vocab [8] is the number of tokens, Layers [1] the number of blocks.
	Vocab, Layers int
}

// GPT returns a tiny causal language model shaped like the zoo's tiny-gpt:
// token embedding (Gather of the int64 ids "input" [N, Tokens]) plus a
// positional embedding, Layers causal attention blocks, a
// LayerNormalization and a linear head to "output" [N, Tokens, Vocab], the
// next token's logits at every position.
func GPT(opts GPTOptions) *ir.Graph {
	o := opts.AttentionOptions.withDefaults()
	o.Causal = true
	vocab, layers := max(opts.Vocab, 0), max(opts.Layers, 0)
	if vocab == 0 {
		vocab = 8
	}
	if layers == 0 {
		layers = 1
	}
	b := &attnBuilder{g: &ir.Graph{Name: "gpt", Opset: o.Opset}, r: rand.New(rand.NewPCG(o.Seed, 13))}
	ids := &ir.Value{Name: "input", DType: ir.Int64, Shape: ir.Shape{-1, o.Tokens}, DimNames: []string{"N", ""}}
	b.g.Inputs = []*ir.Value{ids}
	x := b.op("Gather", ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 0}}, b.weights(1, vocab, o.Dim), ids)
	x = b.op("Add", nil, x, b.weights(0.3, 1, o.Tokens, o.Dim))
	for range layers {
		x = b.block(x, o)
	}
	w := 1 / math.Sqrt(float64(o.Dim))
	y := b.op("Add", nil, b.op("MatMul", nil, b.layerNorm(x, o.Dim), b.weights(2*w, o.Dim, vocab)), b.weights(0.1, vocab))
	y.Name = "output"
	b.g.Outputs = []*ir.Value{y}
	return b.g
}

// GPTTokens returns n pseudo-random token windows for a model of opts,
// int64 [n, Tokens] in [0, Vocab).
func GPTTokens(opts GPTOptions, n int, seed uint64) *ir.Tensor {
	o := opts.AttentionOptions.withDefaults()
	vocab := opts.Vocab
	if vocab <= 0 {
		vocab = 8
	}
	r := rand.New(rand.NewPCG(seed, 17))
	data := make([]int64, n*o.Tokens)
	for i := range data {
		data[i] = int64(r.IntN(vocab))
	}
	return ir.NewInt(ir.Shape{n, o.Tokens}, data)
}

// Inputs returns n pseudo-random inputs for a block of opts, [n, Tokens,
// Dim], each token a different mix of a few directions so that attention
// is not uniform.
func Inputs(opts AttentionOptions, n int, seed uint64) *ir.Tensor {
	o := opts.withDefaults()
	r := rand.New(rand.NewPCG(seed, 11))
	data := make([]float64, n*o.Tokens*o.Dim)
	for i := range data {
		data[i] = r.NormFloat64()
	}
	return ir.NewFloat(ir.Shape{n, o.Tokens, o.Dim}, data)
}
