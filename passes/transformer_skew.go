package passes

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
)

// Skewed products of two encrypted matrices.
//
// The replicated product lays A [..., M, K] and B [..., K, N] out as
// [..., M, K, N]: A copied along N (innermost), B along M. Every copy moves
// each element by a different distance in the slots, so the linear maps that
// build the two operands from token-major values (the Q, K and V
// projections) have about one diagonal per product element.
//
// When A's rows pair with an axis T of B of the same length (attention:
// query rows with key columns in Q·Kᵀ, with the key rows of V in scores·V),
// tfSkewedProduct lays the product out as [1, J, M, batch..., X] instead:
// copy j pairs row m with t = (m + j) mod T, and X is B's other axis. Copy
// j of the operand that does not read T is that operand shifted whole (one
// diagonal per copy), and copy j of the other one is its rows rotated by j
// (two shifts per copy), times the width of the projection fused in.
//
//   - T = N (Q·Kᵀ: X = K is summed): S[j, m, b] = Σ_x A[b, m, x]·B[b, x, (m+j)
//     mod N], and y[b, m, n] = S[(n-m) mod N, m, b], a permutation that the
//     next linear map absorbs (with LowerOptions.SharedProductLayouts the
//     scores stay where the product left them).
//   - T = K (scores·V: J is summed): y[b, m, x] = Σ_j A[b, m, (m+j) mod
//     K]·B[b, (m+j) mod K, x], already token-major.
//
// A product of more than maxSlots elements is computed in parts along J:
// concatenated (T = N) or added (T = K).

// tfSkew says how a product pairs its rows: which axis of B (or none) is
// the skewed one.
type tfSkew int

const (
	tfSkewNone tfSkew = iota
	tfSkewN           // B's columns (the result's columns)
	tfSkewK           // the contraction axis
)

// tfChooseSkew picks the skewed axis of the product a·c: one of the length
// of A's rows, the columns when both are (unless A is a softmax's output,
// whose last axis is the keys). The product needs static shapes and a
// leading batch axis of 1 on both operands and the result.
func tfChooseSkew(a, c, y *ir.Value) tfSkew {
	ra, rc, ry := len(a.Shape), len(c.Shape), len(y.Shape)
	if a.Shape[0] != 1 || c.Shape[0] != 1 || y.Shape[0] != 1 || ra < 3 || rc < 3 || ry < 3 {
		return tfSkewNone
	}
	m, k, n := a.Shape[ra-2], a.Shape[ra-1], c.Shape[rc-1]
	fromSoftmax := a.Producer != nil && a.Producer.Op == "Softmax"
	switch {
	case n == m && (k != m || !fromSoftmax):
		return tfSkewN
	case k == m:
		return tfSkewK
	}
	return tfSkewNone
}

// tfSkewedProduct appends the skewed product of a and c into y's shape
// (see above) in parts of at most maxSlots elements, and returns false
// (appending nothing) when even one copy j does not fit.
func (b *tfBuilder) tfSkewedProduct(skew tfSkew, a, c, y *ir.Value, maxSlots int) bool {
	ra, ry := len(a.Shape), len(y.Shape)
	m, k := a.Shape[ra-2], a.Shape[ra-1]
	n := y.Shape[ry-1]
	lead := y.Shape[:ry-2] // [1, batch...]
	t, x := n, k
	if skew == tfSkewK {
		t, x = k, n
	}
	perJ := m * lead.Size() * x
	if perJ > maxSlots {
		return false
	}
	step := tfPartSize(t, maxSlots/perJ)
	batch := lead[1:].Size()
	flatA := b.flatten("lhs_flat", a)
	flatC := b.flatten("rhs_flat", c)
	var sums []*ir.Value
	for lo, p := 0, 0; lo < t; lo, p = lo+step, p+1 {
		hi := min(lo+step, t)
		full := append(append(ir.Shape{1, hi - lo, m}, lead[1:]...), x)
		ia := make([]int64, 0, full.Size())
		ic := make([]int64, 0, full.Size())
		for j := lo; j < hi; j++ {
			for r := 0; r < m; r++ {
				s := (r + j) % t
				for bi := 0; bi < batch; bi++ {
					for e := 0; e < x; e++ {
						if skew == tfSkewN {
							ia = append(ia, int64(tfBatchIndex(a.Shape, lead, bi, r, e)))
							ic = append(ic, int64(tfBatchIndex(c.Shape, lead, bi, e, s)))
						} else {
							ia = append(ia, int64(tfBatchIndex(a.Shape, lead, bi, r, s)))
							ic = append(ic, int64(tfBatchIndex(c.Shape, lead, bi, s, e)))
						}
					}
				}
			}
		}
		part := fmt.Sprintf("part%d_", p)
		if step >= t {
			part = ""
		}
		ae := b.gather(part+"lhs_replicated", flatA, full, ia)
		ce := b.gather(part+"rhs_replicated", flatC, full, ic)
		prod := b.add("Mul", part+"products", full, nil, nil, ae, ce)
		if skew == tfSkewN {
			sums = append(sums, b.axesOp("ReduceSum", part+"sum", full[:len(full)-1], prod, []int64{int64(len(full) - 1)},
				ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 0}}))
		} else {
			shape := append(ir.Shape{1}, full[2:]...)
			sums = append(sums, b.axesOp("ReduceSum", part+"sum", shape, prod, []int64{1}, ir.Attrs{"keepdims": {Kind: ir.AttrInt, Int: 0}}))
		}
	}
	s := sums[0]
	if skew == tfSkewN && len(sums) > 1 {
		s = b.add("Concat", "concat", append(ir.Shape{1, t, m}, lead[1:]...), ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 1}}, nil, sums...)
	}
	for i := 1; skew == tfSkewK && i < len(sums); i++ {
		s = b.add("Add", fmt.Sprintf("partial_sum%d", i), s.Shape, nil, nil, s, sums[i])
	}
	// y[0, b, r, col] from s: [1, J, M, batch] (T = N) or [1, M, batch, X].
	idx := make([]int64, 0, y.Shape.Size())
	for bi := 0; bi < batch; bi++ {
		for r := 0; r < m; r++ {
			for col := 0; col < n; col++ {
				if skew == tfSkewN {
					j := ((col-r)%t + t) % t
					idx = append(idx, int64((j*m+r)*batch+bi))
				} else {
					idx = append(idx, int64((r*batch+bi)*x+col))
				}
			}
		}
	}
	b.gather("unskewed", b.flatten("sum_flat", s), y.Shape, idx)
	return true
}

// tfBatchIndex is the row-major index, in a tensor of shape shape ([1,
// batch..., rows, cols], its batch axes broadcasting to lead's), of row r
// and column c of batch element bi (row-major over lead[1:]).
func tfBatchIndex(shape, lead ir.Shape, bi, r, c int) int {
	rank := len(shape)
	idx, stride := 0, shape[rank-1]*shape[rank-2]
	for ax := len(lead) - 1; ax >= 1; ax-- {
		d := lead[ax]
		i := bi % d
		bi /= d
		sa := ax - (len(lead) - (rank - 2)) // the same axis in shape, right-aligned
		if sa < 1 || shape[sa] == 1 {
			continue
		}
		idx += i * stride
		stride *= shape[sa]
	}
	return idx + r*shape[rank-1] + c
}

// flatten reshapes x (leading axis 1) to [1, size].
func (b *tfBuilder) flatten(suffix string, x *ir.Value) *ir.Value {
	size := x.Shape.Size()
	return b.add("Reshape", suffix, ir.Shape{1, size}, nil, nil, x, b.ints(suffix+"_shape", 1, int64(size)))
}

// gather appends Gather(flat, indices) along axis 1: flat is [1, size],
// indices (of shape shape without its leading 1) pick its elements.
func (b *tfBuilder) gather(suffix string, flat *ir.Value, shape ir.Shape, indices []int64) *ir.Value {
	idx := newConst(b.nm.value(b.base+"/"+suffix+"_indices"), ir.NewInt(shape[1:].Clone(), indices))
	return b.add("Gather", suffix, shape, ir.Attrs{"axis": {Kind: ir.AttrInt, Int: 1}}, nil, flat, idx)
}
