package passes

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// Probing many columns per interpreter run.
//
// lowerProbeColumns measures a region's matrices column by column: a one-hot
// input, an interpreter run, the difference with the bias. Most regions are
// sparse in a structured way (a replication map reads one row of its input
// per output element, a summing map sums one row of products), so that many
// columns touch disjoint sets of outputs. lowerColorColumns finds which input
// elements (columns) every output element reads, by one pass over the
// region's nodes with the read relation of each op, and colors the columns so
// that no output element reads two columns of one color; a probe then sets
// all the columns of one color at once.
//
// The result is bit-identical to probing one column at a time: an output
// element reads at most one column of the probe's color, and, the read
// relation being transitive over the region's nodes, every value it is
// computed from is computed from the same inputs as in the one-hot run of
// that column, so the interpreter computes it with the same operations on
// the same operands. The read relation is structural (a product with a zero
// weight still reads its operand), an op without a rule reads all of its
// inputs, so it only ever overstates what an element reads.

// lowerProbeSetBudget bounds the column indices that the distinct read sets
// of a region hold together; beyond it the region is probed one column per
// probe.
const lowerProbeSetBudget = 1 << 24

// lowerProbeExactSums bounds the columns that the exact read sets of one
// elementwise sum of several non-constant operands may hold (see
// probeDeps.elementwise); a variable for tests.
var lowerProbeExactSums = lowerProbeSetBudget / 8

// lowerColoring groups the columns of a region (its inputs' elements, input
// by input, in row-major order) into colors whose columns no output element
// reads two of.
type lowerColoring struct {
	// groups lists the columns of each color, ascending.
	groups [][]int
	// color is the color of each column.
	color []int32
	// sets holds, per output and element, the id of the set of columns the
	// element reads; byColor holds, per set id, the set's columns ordered
	// by color (nil for sets that no output element has).
	sets    [][]int32
	byColor [][]int32
}

// column returns the column of color g that element r of output k reads.
func (lc *lowerColoring) column(k, r, g int) (int, bool) {
	s := lc.byColor[lc.sets[k][r]]
	i, ok := slices.BinarySearchFunc(s, g, func(c int32, g int) int { return cmp.Compare(int(lc.color[c]), g) })
	if !ok {
		return 0, false
	}
	return int(s[i]), true
}

// probeDeps interns the sets of columns that the elements of a region's
// values read. Set 0 is the empty set.
type probeDeps struct {
	sets   [][]int32
	intern map[string]int32
	pairs  map[[2]int32]int32
	stamp  []uint32
	gen    uint32
	buf    []int32
	total  int
	over   bool
}

// id interns the sorted set s (which it copies).
func (d *probeDeps) id(s []int32) int32 {
	if len(s) == 0 {
		return 0
	}
	key := string(unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s)))
	if id, ok := d.intern[key]; ok {
		return id
	}
	if d.total += len(s); d.total > lowerProbeSetBudget {
		d.over = true
		return 0
	}
	id := int32(len(d.sets))
	d.sets = append(d.sets, slices.Clone(s))
	d.intern[key] = id
	return id
}

// union returns the id of the union of the sets ids (which it reorders).
func (d *probeDeps) union(ids []int32) int32 {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if ids[0] == 0 {
		ids = ids[1:]
	}
	switch len(ids) {
	case 0:
		return 0
	case 1:
		return ids[0]
	case 2:
		if u, ok := d.pairs[[2]int32{ids[0], ids[1]}]; ok {
			return u
		}
	}
	d.gen++
	d.buf = d.buf[:0]
	for _, id := range ids {
		for _, c := range d.sets[id] {
			if d.stamp[c] != d.gen {
				d.stamp[c] = d.gen
				d.buf = append(d.buf, c)
			}
		}
	}
	slices.Sort(d.buf)
	u := d.id(d.buf)
	if len(ids) == 2 {
		d.pairs[[2]int32{ids[0], ids[1]}] = u
	}
	return u
}

// lowerMoveOps are the ops whose every output element is a copy of one input
// element or a constant: their read relation is found by running them on
// inputs that hold their own indices.
var lowerMoveOps = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true,
	"Identity": true, "Transpose": true, "Slice": true, "Concat": true, "Split": true, "Gather": true,
	"Expand": true, "Tile": true, "Pad": true}

// lowerElementwiseOps are the ops whose output elements read the elements of
// their non-constant inputs that broadcasting maps onto them.
var lowerElementwiseOps = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true, "Sum": true,
	"Neg": true, "BatchNormalization": true}

// lowerColorColumns colors the columns of base, a region as lowerProbe
// receives it (batch is 1 for values with a batch axis of 1, 0 for whole
// tensors), or returns nil when coloring gains nothing (as many colors as
// columns) or the region's values are not all float tensors.
func lowerColorColumns(base *ir.Graph, batch int) *lowerColoring {
	feeds := lowerZeroFeeds(base, batch)
	shapes := map[*ir.Value]ir.Shape{}
	m := make(map[string]*ir.Tensor, len(feeds))
	for i, x := range base.Inputs {
		if !x.DType.IsFloat() {
			return nil
		}
		m[x.Name] = feeds[i]
		shapes[x] = feeds[i].Shape
	}
	floats := true
	obs := &plain.Options{Observe: func(n *ir.Node, outs []*ir.Tensor) {
		for i, o := range n.Outputs {
			if o != nil && i < len(outs) && outs[i] != nil {
				shapes[o] = outs[i].Shape.Clone()
				floats = floats && outs[i].DType.IsFloat()
			}
		}
	}}
	if _, err := plain.Run(base, m, obs); err != nil || !floats {
		return nil
	}
	ncols := 0
	for _, x := range base.Inputs {
		ncols += x.Shape.Size()
	}
	d := &probeDeps{sets: [][]int32{nil}, intern: map[string]int32{}, pairs: map[[2]int32]int32{}, stamp: make([]uint32, ncols)}
	ids := map[*ir.Value][]int32{}
	col := int32(0)
	for _, x := range base.Inputs {
		v := make([]int32, x.Shape.Size())
		for e := range v {
			v[e] = d.id([]int32{col})
			col++
		}
		ids[x] = v
	}
	for _, n := range base.Nodes {
		outs := d.node(n, base.Opset, ids, shapes)
		for i, o := range n.Outputs {
			if o != nil && i < len(outs) {
				ids[o] = outs[i]
			}
		}
		if d.over {
			return nil
		}
	}
	lc := &lowerColoring{sets: make([][]int32, len(base.Outputs)), byColor: make([][]int32, len(d.sets))}
	local := make([]int32, len(d.sets))
	var used []int32
	for k, o := range base.Outputs {
		s := ids[o]
		if len(s) != shapes[o].Size() {
			return nil
		}
		lc.sets[k] = s
		for _, id := range s {
			if id != 0 && local[id] == 0 {
				used = append(used, id)
				local[id] = int32(len(used))
			}
		}
	}
	// Inverted index: the output sets each column belongs to.
	start := make([]int32, ncols+1)
	for _, id := range used {
		for _, c := range d.sets[id] {
			start[c+1]++
		}
	}
	for c := range ncols {
		start[c+1] += start[c]
	}
	member := make([]int32, start[ncols])
	fill := slices.Clone(start[:ncols])
	for i, id := range used {
		for _, c := range d.sets[id] {
			member[fill[c]] = int32(i)
			fill[c]++
		}
	}
	// Greedy coloring in column order: each column takes the least color
	// that no set it belongs to holds yet.
	masks := make([][]uint64, len(used))
	lc.color = make([]int32, ncols)
	var free []uint64
	for c := range ncols {
		free = free[:0]
		for _, s := range member[start[c]:start[c+1]] {
			for w, x := range masks[s] {
				for len(free) <= w {
					free = append(free, 0)
				}
				free[w] |= x
			}
		}
		g := len(free) * 64
		for w, x := range free {
			if x != math.MaxUint64 {
				g = w*64 + bits.TrailingZeros64(^x)
				break
			}
		}
		lc.color[c] = int32(g)
		for _, s := range member[start[c]:start[c+1]] {
			for len(masks[s]) <= g/64 {
				masks[s] = append(masks[s], 0)
			}
			masks[s][g/64] |= 1 << (g % 64)
		}
		for len(lc.groups) <= g {
			lc.groups = append(lc.groups, nil)
		}
		lc.groups[g] = append(lc.groups[g], c)
	}
	if len(lc.groups) >= ncols {
		return nil
	}
	for _, id := range used {
		s := slices.Clone(d.sets[id])
		slices.SortFunc(s, func(a, b int32) int { return cmp.Compare(lc.color[a], lc.color[b]) })
		lc.byColor[id] = s
	}
	return lc
}

// node returns the read sets of n's outputs from those of its inputs (ids,
// nil for constants), shapes holding every value's shape.
func (d *probeDeps) node(n *ir.Node, opset int64, ids map[*ir.Value][]int32, shapes map[*ir.Value]ir.Shape) [][]int32 {
	var res [][]int32
	switch {
	case lowerMoveOps[n.Op]:
		res = d.move(n, opset, ids, shapes)
	case lowerElementwiseOps[n.Op]:
		res = d.elementwise(n, ids, shapes)
	case n.Op == "ReduceSum" || n.Op == "ReduceMean" || n.Op == "GlobalAveragePool":
		res = d.reduce(n, opset, ids, shapes)
	case n.Op == "MatMul" || n.Op == "Gemm" || n.Op == "Dense":
		res = d.product(n, ids, shapes)
	}
	if res != nil {
		return res
	}
	// Any other op: every output element reads every input element.
	var all []int32
	for _, in := range n.Inputs {
		all = append(all, ids[in]...)
	}
	u := int32(0)
	if len(all) > 0 {
		u = d.union(all)
	}
	res = make([][]int32, len(n.Outputs))
	for i, o := range n.Outputs {
		if o != nil {
			res[i] = make([]int32, shapes[o].Size())
			for e := range res[i] {
				res[i][e] = u
			}
		}
	}
	return res
}

// move runs a data-movement op on inputs holding 1 + their element's index
// (numbered across the non-constant inputs): an output element holding such
// an index copies that element. Other values are constants (a Pad value, a
// constant Concat operand) and read nothing, or, when they happen to look
// like an index, overstate the reads.
func (d *probeDeps) move(n *ir.Node, opset int64, ids map[*ir.Value][]int32, shapes map[*ir.Value]ir.Shape) [][]int32 {
	in := make([]*ir.Tensor, len(n.Inputs))
	var src []int32
	for i, x := range n.Inputs {
		switch {
		case x == nil:
		case x.IsConst():
			in[i] = x.Const
		default:
			t := &ir.Tensor{DType: ir.Float64, Shape: shapes[x], Float: make([]float64, len(ids[x]))}
			for e := range t.Float {
				t.Float[e] = float64(len(src) + e + 1)
			}
			src = append(src, ids[x]...)
			in[i] = t
		}
	}
	outs, err := plain.EvalNode(n, opset, in)
	if err != nil || len(outs) < len(n.Outputs) {
		return nil
	}
	res := make([][]int32, len(n.Outputs))
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		t := outs[i]
		if t == nil || !t.DType.IsFloat() || len(t.Float) != shapes[o].Size() {
			return nil
		}
		res[i] = make([]int32, len(t.Float))
		for e, v := range t.Float {
			if v >= 1 && v <= float64(len(src)) && v == math.Trunc(v) {
				res[i][e] = src[int(v)-1]
			}
		}
	}
	return res
}

// elementwise gives each output element the union of the elements that
// broadcasting maps onto it from the non-constant inputs.
func (d *probeDeps) elementwise(n *ir.Node, ids map[*ir.Value][]int32, shapes map[*ir.Value]ir.Shape) [][]int32 {
	o := n.Outputs[0]
	if len(n.Outputs) != 1 || o == nil {
		return nil
	}
	out := shapes[o]
	var maps [][]int
	var srcs [][]int32
	for i, x := range n.Inputs {
		if x == nil || x.IsConst() || (n.Op == "BatchNormalization" && i > 0) {
			continue
		}
		s := shapes[x]
		if len(s) > len(out) {
			return nil
		}
		maps = append(maps, plain.BroadcastIndex(s, out))
		srcs = append(srcs, ids[x])
	}
	if len(maps) == 0 {
		return nil
	}
	res := make([]int32, out.Size())
	if len(maps) == 1 {
		for e := range res {
			res[e] = srcs[0][maps[0][e]]
		}
		return [][]int32{res}
	}
	// Exact unions, one per distinct tuple of operand sets, unless they
	// would hold too many columns (a residual sum of a per-element input
	// and per-row sets makes a set per element): then each group of
	// elements sharing a set in the operand of fewest distinct sets reads
	// the union of the group, which overstates the reads.
	tuples := map[string][]int32{}
	key := make([]int32, len(maps))
	estimate := 0
	distinct := make([]map[int32]bool, len(maps))
	for j := range maps {
		distinct[j] = map[int32]bool{}
	}
	for e := range res {
		for j, mp := range maps {
			key[j] = srcs[j][mp[e]]
			distinct[j][key[j]] = true
		}
		k := string(unsafe.Slice((*byte)(unsafe.Pointer(&key[0])), 4*len(key)))
		if _, ok := tuples[k]; !ok {
			tuples[k] = slices.Clone(key)
			for _, id := range key {
				estimate += len(d.sets[id])
			}
		}
	}
	var tmp []int32
	if estimate <= lowerProbeExactSums {
		for e := range res {
			tmp = tmp[:0]
			for j, mp := range maps {
				tmp = append(tmp, srcs[j][mp[e]])
			}
			res[e] = d.union(tmp)
		}
		return [][]int32{res}
	}
	coarse := 0
	for j := range maps {
		if len(distinct[j]) < len(distinct[coarse]) {
			coarse = j
		}
	}
	groups := map[int32][]int32{}
	for e := range res {
		g := srcs[coarse][maps[coarse][e]]
		for j, mp := range maps {
			groups[g] = append(groups[g], srcs[j][mp[e]])
		}
	}
	union := make(map[int32]int32, len(groups))
	for g, l := range groups {
		union[g] = d.union(l)
	}
	for e := range res {
		res[e] = union[srcs[coarse][maps[coarse][e]]]
	}
	return [][]int32{res}
}

// reduce gives each output element of a reduction the union of the input
// elements it sums.
func (d *probeDeps) reduce(n *ir.Node, opset int64, ids map[*ir.Value][]int32, shapes map[*ir.Value]ir.Shape) [][]int32 {
	x, o := n.Input(0), n.Outputs[0]
	if x == nil || x.IsConst() || o == nil {
		return nil
	}
	s := shapes[x]
	var mask []bool
	if n.Op == "GlobalAveragePool" {
		mask = make([]bool, len(s))
		for a := 2; a < len(s); a++ {
			mask[a] = true
		}
	} else {
		in := make([]*ir.Tensor, len(n.Inputs))
		for i, v := range n.Inputs {
			if v != nil && v.IsConst() {
				in[i] = v.Const
			}
		}
		var err error
		if mask, err = plain.ReduceAxes(n, opset, in, len(s)); err != nil {
			return nil
		}
		if mask == nil {
			return [][]int32{slices.Clone(ids[x])}
		}
	}
	// Output index of each input element: broadcasting the output (with
	// the reduced axes kept as 1) over the input maps it there.
	kept := s.Clone()
	for a := range kept {
		if mask[a] {
			kept[a] = 1
		}
	}
	acc := kept.Size()
	if acc != shapes[o].Size() {
		return nil
	}
	lists := make([][]int32, acc)
	for e, pos := range plain.BroadcastIndex(kept, s) {
		lists[pos] = append(lists[pos], ids[x][e])
	}
	res := make([]int32, acc)
	for e, l := range lists {
		if len(l) > 0 {
			res[e] = d.union(l)
		}
	}
	return [][]int32{res}
}

// product gives each output element of MatMul, Gemm or Dense with one
// non-constant operand the union of the operand's row (or column) it
// contracts.
func (d *probeDeps) product(n *ir.Node, ids map[*ir.Value][]int32, shapes map[*ir.Value]ir.Shape) [][]int32 {
	a, b, o := n.Input(0), n.Input(1), n.Outputs[0]
	if a == nil || b == nil || o == nil || len(n.Outputs) != 1 || (!a.IsConst()) == (!b.IsConst()) {
		return nil
	}
	if c := n.Input(2); c != nil && !c.IsConst() {
		return nil
	}
	shape := func(v *ir.Value) ir.Shape {
		if v.IsConst() {
			return v.Const.Shape
		}
		return shapes[v]
	}
	as, bs, os := shape(a), shape(b), shapes[o]
	res := make([]int32, os.Size())
	// contract returns the union of the k operand elements src[first +
	// j·kstep], j < k.
	var tmp []int32
	contract := func(src []int32, first, kstep, k int) int32 {
		tmp = tmp[:0]
		for j := range k {
			tmp = append(tmp, src[first+j*kstep])
		}
		if len(tmp) == 0 {
			return 0
		}
		return d.union(tmp)
	}
	switch n.Op {
	case "Dense":
		if a.IsConst() || len(as) == 0 {
			return nil
		}
		k := as[len(as)-1]
		if k == 0 || os.Size()%max(1, as.Size()/k) != 0 {
			return nil
		}
		rows := as.Size() / k
		m := os.Size() / max(1, rows)
		for r := range rows {
			u := contract(ids[a], r*k, 1, k)
			for j := range m {
				res[r*m+j] = u
			}
		}
	case "Gemm":
		if len(as) != 2 || len(bs) != 2 || len(os) != 2 {
			return nil
		}
		transA, transB := n.Attrs.Int("transA", 0) != 0, n.Attrs.Int("transB", 0) != 0
		m, nn := os[0], os[1]
		if !a.IsConst() {
			// Row i of op(A): A[i, :], or A[:, i] when transposed.
			k := as.Size() / max(1, m)
			for i := range m {
				first, step := i*k, 1
				if transA {
					first, step = i, m
				}
				u := contract(ids[a], first, step, k)
				for j := range nn {
					res[i*nn+j] = u
				}
			}
		} else {
			k := bs.Size() / max(1, nn)
			for j := range nn {
				first, step := j, nn
				if transB {
					first, step = j*k, 1
				}
				u := contract(ids[b], first, step, k)
				for i := range m {
					res[i*nn+j] = u
				}
			}
		}
	default: // MatMul
		if len(as) < 2 || len(bs) < 2 {
			return nil
		}
		m, k, nn := as[len(as)-2], as[len(as)-1], bs[len(bs)-1]
		if bs[len(bs)-2] != k || len(os) < 2 || os[len(os)-2] != m || os[len(os)-1] != nn {
			return nil
		}
		batch := os[:len(os)-2]
		aBatch, bBatch := as[:len(as)-2], bs[:len(bs)-2]
		if len(aBatch) > len(batch) || len(bBatch) > len(batch) {
			return nil
		}
		ai, bi := plain.BroadcastIndex(aBatch, batch), plain.BroadcastIndex(bBatch, batch)
		for p := range batch.Size() {
			out := res[p*m*nn : (p+1)*m*nn]
			if !a.IsConst() {
				for i := range m {
					u := contract(ids[a], ai[p]*m*k+i*k, 1, k)
					for j := range nn {
						out[i*nn+j] = u
					}
				}
			} else {
				for j := range nn {
					u := contract(ids[b], bi[p]*k*nn+j, nn, k)
					for i := range m {
						out[i*nn+j] = u
					}
				}
			}
		}
	}
	return [][]int32{res}
}
