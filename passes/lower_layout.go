package passes

import (
	"sort"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// Slot layouts of slot-packed programs.
//
// A graph input sits contiguously at offset 0 of its block. A polynomial or
// product keeps its input's layout (it works slot by slot). The output of a
// linear map may sit anywhere: its matrix in slot coordinates has one
// diagonal per distinct difference slot(input element) - slot(output
// element) over its non-zero coefficients, and each diagonal costs a
// plaintext product (and the rotations grow with their square root), so
// the lowering tries a few layouts and keeps the one with the fewest
// diagonals:
//
//   - contiguous at offset 0;
//   - aligned with an input: when the output's last two axes divide the
//     input's by (fh, fw) (a strided convolution or pooling, or a global
//     pooling), output element (c, y, x) sits where input element
//     (c, y·fh, x·fw) does, so a pooled image stays where its windows
//     started instead of being compacted (a gather with as many diagonals as
//     elements). Output channels beyond the input's go either into the gaps
//     of the windows first (multiplexed packing) or into copies of the input
//     span;
//   - the first slots of an input's layout (a dense layer after a scattered
//     tensor lands in the same lattice);
//   - strided: element k at slot k·t for powers of two t.
//
// Candidates whose span exceeds the slots the ring already needed for the
// circuit's depth are skipped, so layouts never force a larger ring.

// lowerLayoutCandidates lists the output layouts emitMap tries for a linear
// map from inputs in ins to a tensor of per-sample shape out.
func lowerLayoutCandidates(out ir.Shape, ins []ckksir.Layout, limit int) []ckksir.Layout {
	size := out.Size()
	var cands []ckksir.Layout
	add := func(slots []int) {
		top := 0
		for _, s := range slots {
			top = max(top, s+1)
		}
		if top > limit {
			return
		}
		l := ckksir.Layout{Shape: out.Clone(), Slots: slots}
		for _, c := range cands {
			if c.Equal(l) {
				return
			}
		}
		if lowerSlotsContiguous(slots) {
			l.Slots = nil
		}
		cands = append(cands, l)
	}
	if size <= limit {
		cands = append(cands, ckksir.Layout{Shape: out.Clone()})
	}
	for _, in := range ins {
		for _, mux := range []bool{true, false} {
			if slots := lowerAligned(out, in, mux); slots != nil {
				add(slots)
			}
		}
		if size <= in.Size() {
			slots := make([]int, size)
			for k := range slots {
				slots[k] = in.Slot(k)
			}
			add(slots)
		}
	}
	for _, in := range ins {
		if slots := lowerRowAligned(out, in); slots != nil {
			add(slots)
		}
	}
	for t := 2; size > 1 && (size-1)*t < limit; t *= 2 {
		slots := make([]int, size)
		for k := range slots {
			slots[k] = k * t
		}
		add(slots)
	}
	return cands
}

// lowerRowAligned returns the slots of an output of shape out whose rows
// (last axis) start where the input layout in's rows of the same index
// start: a per-token dense map between token-major layouts then reads and
// writes along the same diagonals whatever the two widths, as long as the
// input's rows are spaced at least the output's width apart. Nil when the
// row counts differ or rows would overlap.
func lowerRowAligned(out ir.Shape, in ckksir.Layout) []int {
	if len(out) < 1 || len(in.Shape) < 1 {
		return nil
	}
	w, iw := out[len(out)-1], in.Shape[len(in.Shape)-1]
	if w <= 0 || iw <= 0 {
		return nil
	}
	rows := out.Size() / w
	if rows < 2 || in.Size() != rows*iw {
		return nil
	}
	slots := make([]int, 0, out.Size())
	seen := make(map[int]bool, out.Size())
	for r := range rows {
		base := in.Slot(r * iw)
		for j := range w {
			if seen[base+j] {
				return nil
			}
			seen[base+j] = true
			slots = append(slots, base+j)
		}
	}
	return slots
}

// lowerSlotsContiguous reports whether slots are 0, 1, 2, ...
func lowerSlotsContiguous(slots []int) bool {
	for k, s := range slots {
		if s != k {
			return false
		}
	}
	return true
}

// lowerAligned returns the slots of an output of shape out aligned with the
// input layout in (see above), or nil when the shapes do not pool onto each
// other. With mux, output channels beyond the input's fill the gaps of the
// pooling windows before new copies of the input span.
func lowerAligned(out ir.Shape, in ckksir.Layout, mux bool) []int {
	is := in.Shape
	if len(out) < 2 || len(is) < 2 || len(out) != len(is) {
		return nil
	}
	r := len(out)
	h, w, ih, iw := out[r-2], out[r-1], is[r-2], is[r-1]
	if h <= 0 || w <= 0 || ih%h != 0 || iw%w != 0 {
		return nil
	}
	fh, fw := ih/h, iw/w
	win := fh * fw
	if !mux {
		win = 1
	}
	ch, ich := out.Size()/(h*w), is.Size()/(ih*iw)
	span := 1
	for span < in.Span() {
		span *= 2
	}
	slots := make([]int, 0, out.Size())
	for c := 0; c < ch; c++ {
		ci, j, q := c%ich, (c/ich)%win, c/(ich*win)
		dy, dx := j/fw, j%fw
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				k := (ci*ih+y*fh+dy)*iw + x*fw + dx
				slots = append(slots, in.Slot(k)+q*span)
			}
		}
	}
	return slots
}

// lowerDiagonalCount is the number of distinct diagonals of the matrices
// mats (entries in tensor coordinates) from the input layouts ins to out.
func lowerDiagonalCount(mats [][]lowerEntry, ins []ckksir.Layout, out ckksir.Layout) int {
	n := 0
	for i, entries := range mats {
		seen := map[int]bool{}
		for _, e := range entries {
			seen[ins[i].Slot(e.c)-out.Slot(e.r)] = true
		}
		n += len(seen)
	}
	return n
}

// chooseLayout picks the candidate output layout with the fewest diagonals
// (the first such, contiguous first); with opts.SharedProductLayouts the
// candidates include the layout that follows the inputs (lowerFollowInputs)
// when no input has the output's size (a reduction of products, such as
// attention scores): a map that adds an input of the output's size
// (a residual stream) keeps that input's kind of layout, which the dense
// layers after it want token-major, rather than one scattered like a
// product's sums.
func (lw *lowerer) chooseLayout(mats [][]lowerEntry, ins []ckksir.Layout, out ir.Shape) ckksir.Layout {
	cands := lowerLayoutCandidates(out, ins, lw.slotLimit)
	if lw.opts.SharedProductLayouts && !lowerHasSize(ins, out.Size()) {
		if slots := lowerFollowInputs(mats, ins, out.Size(), lw.slotLimit); slots != nil {
			cands = append(cands, ckksir.Layout{Shape: out.Clone(), Slots: slots})
		}
	}
	best, bestN := ckksir.Layout{Shape: out.Clone()}, -1
	for _, c := range cands {
		if n := lowerDiagonalCount(mats, ins, c); bestN < 0 || n < bestN {
			best, bestN = c, n
		}
	}
	return best
}

// lowerFollowInputs returns the slots that put each of the size output
// elements where the first input element it reads sits: the least index, in
// tensor order, of the first input (in order) it reads, shifted by that
// input's offset (the least that keeps the slots distinct, below
// lowerFollowMaxShift). A sum over an axis stays where the axis started, a
// permutation (the unskewing of a skewed product) costs no move, and the
// parts of a product split in several ciphertexts land side by side. Nil
// when an output element reads nothing, no offset avoids a collision, a
// slot is at limit or beyond, or the result is contiguous.
func lowerFollowInputs(mats [][]lowerEntry, ins []ckksir.Layout, size, limit int) []int {
	from, first := make([]int, size), make([]int, size)
	for r := range from {
		from[r], first[r] = -1, -1
	}
	for i, entries := range mats {
		for _, e := range entries {
			if from[e.r] >= 0 && from[e.r] < i {
				continue
			}
			if from[e.r] < 0 || e.c < first[e.r] {
				from[e.r], first[e.r] = i, e.c
			}
		}
	}
	slots := make([]int, size)
	used := map[int]bool{}
	for i, in := range ins {
		var rows []int
		for r, f := range from {
			if f < 0 {
				return nil
			}
			if f == i {
				rows = append(rows, r)
			}
		}
		shift := 0
		for ; shift < lowerFollowMaxShift; shift++ {
			ok := true
			seen := map[int]bool{}
			for _, r := range rows {
				s := in.Slot(first[r]) + shift
				if used[s] || seen[s] || s >= limit {
					ok = false
					break
				}
				seen[s] = true
			}
			if ok {
				break
			}
		}
		if shift == lowerFollowMaxShift {
			return nil
		}
		for _, r := range rows {
			slots[r] = in.Slot(first[r]) + shift
			used[slots[r]] = true
		}
	}
	if lowerSlotsContiguous(slots) {
		return nil // the contiguous candidate
	}
	return slots
}

// lowerHasSize reports whether a layout of lays has size elements.
func lowerHasSize(lays []ckksir.Layout, size int) bool {
	for _, l := range lays {
		if l.Size() == size {
			return true
		}
	}
	return false
}

// lowerFollowMaxShift bounds the offsets lowerFollowInputs tries.
const lowerFollowMaxShift = 64

// resolveCuts decides, for each cut value u that the map m reads (see
// lowerCutBefore), whether m reads u's ciphertext (one more level) or
// absorbs u's own map (one fused matrix). It keeps the cut when the fused
// matrices would have more than twice the diagonals of the split ones (u's
// own diagonals counted only when nothing else needs u) and returns the map
// to emit.
func (lw *lowerer) resolveCuts(m *lowerMap) (*lowerMap, error) {
	shape := lw.layoutShape(m.out.Shape)
	for k := 0; k < len(m.ins); k++ {
		u := m.ins[k]
		if !lw.cut[u] {
			continue
		}
		um := lw.maps[u]
		fused := lowerCompose(m, k, um)
		fusedLays, err := lw.operandLayouts(fused.ins)
		if err != nil {
			return nil, err
		}
		fusedN := lowerDiagonalCount(fused.mats, fusedLays, lw.chooseLayout(fused.mats, fusedLays, shape))
		var splitN int
		var uLay ckksir.Layout
		if lw.cutOnly[u] && !lw.emitted[u] {
			uLays, err := lw.operandLayouts(um.ins)
			if err != nil {
				return nil, err
			}
			uLay = lw.chooseLayout(um.mats, uLays, lw.layoutShape(u.Shape))
			splitN = lowerDiagonalCount(um.mats, uLays, uLay)
		} else {
			id, err := lw.operand(u)
			if err != nil {
				return nil, err
			}
			uLay = lw.prog.Values[id].Layout
		}
		ins, err := lw.operandLayouts(m.ins[:k])
		if err != nil {
			return nil, err
		}
		rest, err := lw.operandLayouts(m.ins[k+1:])
		if err != nil {
			return nil, err
		}
		ins = append(append(ins, uLay), rest...)
		splitN += lowerDiagonalCount(m.mats, ins, lw.chooseLayout(m.mats, ins, shape))
		if 2*splitN < fusedN {
			continue
		}
		m = fused
		k = -1 // the fused map may read other cut values
	}
	return m, nil
}

// operandLayouts emits the values xs (when needed) and returns their
// layouts.
func (lw *lowerer) operandLayouts(xs []*ir.Value) ([]ckksir.Layout, error) {
	lays := make([]ckksir.Layout, len(xs))
	for i, x := range xs {
		id, err := lw.operand(x)
		if err != nil {
			return nil, err
		}
		lays[i] = lw.prog.Values[id].Layout
	}
	return lays, nil
}

// lowerCompose returns the map m with its k-th input replaced by that
// input's own map um: A·(Σ_j U_j·x_j + b_u) + ... becomes Σ_j (A·U_j)·x_j +
// A·b_u + ...
func lowerCompose(m *lowerMap, k int, um *lowerMap) *lowerMap {
	out := &lowerMap{out: m.out, fold: m.fold, bias: append([]float64(nil), m.bias...)}
	out.nodes = append(append([]*ir.Node(nil), um.nodes...), m.nodes...)
	index := map[*ir.Value]int{}
	acc := []map[[2]int]float64{}
	input := func(x *ir.Value) map[[2]int]float64 {
		i, ok := index[x]
		if !ok {
			i = len(out.ins)
			index[x] = i
			out.ins = append(out.ins, x)
			acc = append(acc, map[[2]int]float64{})
		}
		return acc[i]
	}
	a := m.mats[k]
	rows := map[int][]lowerEntry{} // row c of U_j: entries (c -> c')
	for j, x := range um.ins {
		input(x)
		for _, e := range um.mats[j] {
			rows[e.r] = append(rows[e.r], lowerEntry{r: j, c: e.c, v: e.v})
		}
	}
	for _, e := range a {
		for _, f := range rows[e.c] {
			acc[index[um.ins[f.r]]][[2]int{e.r, f.c}] += e.v * f.v
		}
		out.bias[e.r] += e.v * um.bias[e.c]
	}
	for i, x := range m.ins {
		if i == k {
			continue
		}
		t := input(x)
		for _, e := range m.mats[i] {
			t[[2]int{e.r, e.c}] += e.v
		}
	}
	out.mats = make([][]lowerEntry, len(out.ins))
	for i, t := range acc {
		for rc, v := range t {
			if v != 0 {
				out.mats[i] = append(out.mats[i], lowerEntry{r: rc[0], c: rc[1], v: v})
			}
		}
		sort.Slice(out.mats[i], func(p, q int) bool {
			ep, eq := out.mats[i][p], out.mats[i][q]
			return ep.r < eq.r || ep.r == eq.r && ep.c < eq.c
		})
	}
	return out
}
