// Linear-algebra kernels of the plaintext interpreter: Gemm, MatMul (NumPy
// semantics with batched broadcasting) and the internal Dense op. Matrix
// products go through gonum's BLAS (blas64, Dgemm).

package plain

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/ciphercut/ciphercut/ir"
)

func init() {
	register("Gemm", gemmKernel)
	register("MatMul", matMulKernel)
	register("Dense", denseKernel)
}

// linDgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices,
// op(A) being m×k and op(B) k×n, with leading dimensions lda, ldb, ldc. It
// accepts empty matrices, which BLAS rejects.
func linDgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int,
	b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	blas64.Implementation().Dgemm(tA, tB, m, n, k, alpha, a, max(lda, 1), b, max(ldb, 1), beta, c, max(ldc, 1))
}

// linResult wraps float results in a tensor of like's element type: float
// dtypes keep their dtype, integer inputs give integer outputs (rounded).
func linResult(like *ir.Tensor, shape ir.Shape, data []float64) *ir.Tensor {
	if like.DType.IsFloat() {
		return &ir.Tensor{DType: like.DType, Shape: shape, Float: data}
	}
	ints := make([]int64, len(data))
	for i, v := range data {
		ints[i] = int64(math.Round(v))
	}
	return &ir.Tensor{DType: like.DType, Shape: shape, Int: ints}
}

// linCheck rejects missing or malformed operand tensors.
func linCheck(name string, t *ir.Tensor) error {
	if t == nil {
		return fmt.Errorf("missing input %s", name)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("input %s: %v", name, err)
	}
	if t.DType == ir.Bool {
		return fmt.Errorf("input %s: boolean operands are not allowed", name)
	}
	return nil
}

// gemmKernel: Y = alpha*A'*B' + beta*C with A' = transA ? Aᵀ : A (likewise
// B'), C optional and unidirectionally broadcast to [M, N].
func gemmKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("Gemm needs inputs A and B, got %d inputs", len(in))
	}
	a, b := in[0], in[1]
	if err := linCheck("A", a); err != nil {
		return nil, err
	}
	if err := linCheck("B", b); err != nil {
		return nil, err
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, fmt.Errorf("Gemm needs 2-D A and B, got shapes %v and %v", a.Shape, b.Shape)
	}
	if opset < 7 && n.Attrs.Has("broadcast") {
		return nil, unsupported("Gemm with the pre-opset-7 broadcast attribute")
	}
	alpha := n.Attrs.Float("alpha", 1)
	beta := n.Attrs.Float("beta", 1)
	transA := n.Attrs.Int("transA", 0) != 0
	transB := n.Attrs.Int("transB", 0) != 0
	m, k := a.Shape[0], a.Shape[1]
	if transA {
		m, k = k, m
	}
	kb, nn := b.Shape[0], b.Shape[1]
	if transB {
		kb, nn = nn, kb
	}
	if k != kb {
		return nil, fmt.Errorf("Gemm inner dimensions differ: A%v (transA=%v) and B%v (transB=%v)",
			a.Shape, transA, b.Shape, transB)
	}
	outShape := ir.Shape{m, nn}
	out := make([]float64, m*nn)
	cBeta := 0.0
	if len(in) > 2 && in[2] != nil {
		c := in[2]
		if err := linCheck("C", c); err != nil {
			return nil, err
		}
		if err := checkUnidirectional(c.Shape, outShape); err != nil {
			return nil, fmt.Errorf("Gemm input C: %v", err)
		}
		cf := c.Floats()
		for i, j := range broadcastIndex(c.Shape, outShape) {
			out[i] = beta * cf[j]
		}
		cBeta = 1
	}
	linDgemm(transA, transB, m, nn, k, alpha, a.Floats(), a.Shape[1], b.Floats(), b.Shape[1], cBeta, out, nn)
	return []*ir.Tensor{linResult(a, outShape, out)}, nil
}

// checkUnidirectional reports whether a tensor of shape from can be
// broadcast to shape to (ONNX unidirectional broadcasting).
func checkUnidirectional(from, to ir.Shape) error {
	if len(from) > len(to) {
		return fmt.Errorf("shape %v cannot be broadcast to %v", from, to)
	}
	off := len(to) - len(from)
	for i, d := range from {
		if d != 1 && d != to[off+i] {
			return fmt.Errorf("shape %v cannot be broadcast to %v", from, to)
		}
	}
	return nil
}

// matMulKernel: NumPy matmul. A 1-D A is promoted to [1, K] and a 1-D B to
// [K, 1], the added axis being removed from the result; leading (batch) axes
// broadcast.
func matMulKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("MatMul needs two inputs, got %d", len(in))
	}
	a, b := in[0], in[1]
	if err := linCheck("A", a); err != nil {
		return nil, err
	}
	if err := linCheck("B", b); err != nil {
		return nil, err
	}
	if len(a.Shape) == 0 || len(b.Shape) == 0 {
		return nil, fmt.Errorf("MatMul operands must have rank >= 1, got shapes %v and %v", a.Shape, b.Shape)
	}
	as, bs := a.Shape, b.Shape
	if len(as) == 1 {
		as = ir.Shape{1, as[0]}
	}
	if len(bs) == 1 {
		bs = ir.Shape{bs[0], 1}
	}
	m, k := as[len(as)-2], as[len(as)-1]
	kb, nn := bs[len(bs)-2], bs[len(bs)-1]
	if k != kb {
		return nil, fmt.Errorf("MatMul inner dimensions differ: shapes %v and %v", a.Shape, b.Shape)
	}
	aBatch, bBatch := as[:len(as)-2], bs[:len(bs)-2]
	batch, err := broadcastShape(aBatch, bBatch)
	if err != nil {
		return nil, fmt.Errorf("MatMul batch dimensions: %v", err)
	}
	var outShape ir.Shape
	outShape = append(outShape, batch...)
	if len(a.Shape) > 1 {
		outShape = append(outShape, m)
	}
	if len(b.Shape) > 1 {
		outShape = append(outShape, nn)
	}
	af, bf := a.Floats(), b.Floats()
	nb := batch.Size()
	out := make([]float64, nb*m*nn)
	switch {
	case bBatch.Size() == 1 && len(aBatch) == len(batch):
		// B is one matrix and A already spans the whole batch: fold A's
		// batch axes into its rows for a single product.
		linDgemm(false, false, nb*m, nn, k, 1, af, k, bf, nn, 0, out, nn)
	default:
		ai := broadcastIndex(aBatch, batch)
		bi := broadcastIndex(bBatch, batch)
		for i := 0; i < nb; i++ {
			linDgemm(false, false, m, nn, k, 1, af[ai[i]*m*k:], k, bf[bi[i]*k*nn:], nn, 0, out[i*m*nn:], nn)
		}
	}
	return []*ir.Tensor{linResult(a, outShape, out)}, nil
}

// denseKernel: the internal Dense op, Y = X·W + B over the last axis of X,
// with W of shape [K, M] and an optional B of M elements (or one).
func denseKernel(n *ir.Node, opset int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("Dense needs inputs X and W, got %d inputs", len(in))
	}
	x, w := in[0], in[1]
	if err := linCheck("X", x); err != nil {
		return nil, err
	}
	if err := linCheck("W", w); err != nil {
		return nil, err
	}
	if len(x.Shape) == 0 || len(w.Shape) != 2 {
		return nil, fmt.Errorf("Dense needs X of rank >= 1 and 2-D W, got shapes %v and %v", x.Shape, w.Shape)
	}
	k, m := w.Shape[0], w.Shape[1]
	if x.Shape[len(x.Shape)-1] != k {
		return nil, fmt.Errorf("Dense: last axis of X%v does not match W%v", x.Shape, w.Shape)
	}
	rows := x.Shape.Size() / max(k, 1)
	if k == 0 {
		rows = x.Shape[:len(x.Shape)-1].Size()
	}
	outShape := append(x.Shape[:len(x.Shape)-1].Clone(), m)
	out := make([]float64, rows*m)
	beta := 0.0
	if len(in) > 2 && in[2] != nil {
		bias := in[2]
		if err := linCheck("B", bias); err != nil {
			return nil, err
		}
		bl := bias.Len()
		if bl != m && bl != 1 {
			return nil, fmt.Errorf("Dense: bias of shape %v does not fit %d outputs", bias.Shape, m)
		}
		bf := bias.Floats()
		for r := 0; r < rows; r++ {
			row := out[r*m : (r+1)*m]
			if bl == 1 {
				for j := range row {
					row[j] = bf[0]
				}
			} else {
				copy(row, bf)
			}
		}
		beta = 1
	}
	linDgemm(false, false, rows, m, k, 1, x.Floats(), k, w.Floats(), m, beta, out, m)
	return []*ir.Tensor{linResult(x, outShape, out)}, nil
}
