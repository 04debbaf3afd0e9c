package passes

import (
	"github.com/ciphercut/ciphercut/ir"
)

// stages builds the stages of a split: the prefix, then encrypted segments
// separated by client-aided steps, then the suffix. A node of the encrypted
// part goes to segment k, the largest number of client-aided nodes on a
// path to it from the prefix (a client-aided node itself runs after
// segment k, its own k); so every stage reads only earlier ones. Empty
// stages are dropped and adjacent plaintext stages merged.
func (sg *splitGraph) stages(prefix, suffix, ca []bool) []StageSpec {
	n := len(sg.nodes)
	k := make([]int, n)
	segs := 0
	for i, nd := range sg.nodes {
		if prefix[i] || suffix[i] {
			continue
		}
		for _, in := range nd.Inputs {
			if in == nil || in.Producer == nil {
				continue
			}
			p := sg.index[in.Producer]
			if prefix[p] {
				continue
			}
			step := k[p]
			if ca[p] {
				step++
			}
			k[i] = max(k[i], step)
		}
		segs = max(segs, k[i]+1)
	}
	// slot 0: prefix; 2j+1: segment j; 2j+2: client-aided after segment j;
	// last: suffix.
	last := 2*segs + 1
	slots := make([][]int, last+1)
	for i := range n {
		switch {
		case prefix[i]:
			slots[0] = append(slots[0], i)
		case suffix[i]:
			slots[last] = append(slots[last], i)
		case ca[i]:
			slots[2*k[i]+2] = append(slots[2*k[i]+2], i)
		default:
			slots[2*k[i]+1] = append(slots[2*k[i]+1], i)
		}
	}
	type group struct {
		encrypted     bool
		first, isLast bool
		nodes         []int
	}
	var groups []*group
	for s, nodes := range slots {
		if len(nodes) == 0 {
			continue
		}
		enc := s%2 == 1 && s != last
		if len(groups) > 0 && !enc && !groups[len(groups)-1].encrypted {
			g := groups[len(groups)-1]
			g.nodes = append(g.nodes, nodes...)
			g.isLast = g.isLast || s == last
			continue
		}
		groups = append(groups, &group{encrypted: enc, first: s == 0, isLast: s == last, nodes: nodes})
	}
	stageOf := make([]int, n)
	for gi, g := range groups {
		for _, i := range g.nodes {
			stageOf[i] = gi
		}
	}
	specs := make([]StageSpec, len(groups))
	for gi, g := range groups {
		spec := StageSpec{Kind: StageClientAided}
		switch {
		case g.encrypted:
			spec.Kind = StageEncrypted
		case g.first:
			spec.Kind = StagePrefix
		case g.isLast:
			spec.Kind = StageSuffix
		}
		set := make([]bool, n)
		for _, i := range g.nodes {
			set[i] = true
			spec.Nodes = append(spec.Nodes, sg.nodes[i].Name)
		}
		spec.Inputs = sg.crossing(set, false)
		spec.Outputs = sg.crossing(set, true)
		specs[gi] = spec
	}
	return specs
}

// splitEligible reports whether node n may run client-aided under c.
func splitEligible(n *ir.Node, c ClientAided) bool {
	if len(n.Outputs) != 1 {
		return false
	}
	switch c {
	case ClientAidedActivations:
		return NeedsPolynomial(n.Op)
	case ClientAidedLayerNorm:
		return n.Op == "LayerNormalization"
	case ClientAidedAll:
		if NeedsPolynomial(n.Op) || n.Op == "MaxPool" || n.Op == "LayerNormalization" {
			return true
		}
		if n.Op == "Mul" && len(n.Inputs) == 2 && !n.Inputs[0].IsConst() && !n.Inputs[1].IsConst() {
			return true
		}
	}
	return false
}

// splitMACs estimates the multiply-accumulates of running n in plaintext on
// one sample: output elements times the work per element (the reduction
// length of Conv, Dense, Gemm and MatMul, the window of pooling, 1
// otherwise).
func splitMACs(n *ir.Node) float64 {
	out := 0
	for _, o := range n.Outputs {
		if o != nil && o.Shape.Known() {
			out += o.Shape.Size()
		}
	}
	per := 1
	switch n.Op {
	case "Conv":
		if w := n.Input(1); w != nil && len(w.Shape) > 1 {
			per = w.Shape[1:].Size()
		}
	case "Dense", "Gemm", "MatMul":
		if x := n.Input(0); x != nil && len(x.Shape) > 0 {
			per = x.Shape[len(x.Shape)-1]
		}
	case "AveragePool", "MaxPool":
		per = 1
		for _, k := range n.Attrs.Ints("kernel_shape", nil) {
			per *= int(max(k, 1))
		}
	case "GlobalAveragePool":
		if x := n.Input(0); x != nil && len(x.Shape) > 2 {
			per = x.Shape[2:].Size()
		}
	}
	return float64(out) * float64(max(per, 1))
}
