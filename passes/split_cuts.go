package passes

import (
	"fmt"
	"sort"
	"strings"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/flow"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
	"gonum.org/v1/gonum/graph/traverse"

	"github.com/ciphercut/ciphercut/ir"
)

// splitGraph is the node DAG of a graph with what the split pass asks of
// it. Node sets are []bool indexed by position in nodes (topological order).
type splitGraph struct {
	g     *ir.Graph
	nodes []*ir.Node
	index map[*ir.Node]int
	dg    *simple.DirectedGraph
	// rank is the 1-based position of a weighted node among the weighted
	// nodes in topological order, 0 for the others; weighted counts them.
	rank     []int
	weighted int
	// chain: every node reads at most one node and feeds at most one.
	chain bool
	// dominator marks the nodes every path from the inputs to the outputs
	// passes through.
	dominator []bool
	consumers map[*ir.Value][]*ir.Node
	names     map[string]int
}

// splitWeighted reports whether a node holds weights the policy protects: a
// constant input of more than one element.
func splitWeighted(n *ir.Node) bool {
	for _, in := range n.Inputs {
		if in.IsConst() && in.Const != nil && len(in.Shape) > 0 && in.Shape.Size() > 1 {
			return true
		}
	}
	return false
}

func newSplitGraph(g *ir.Graph) (*splitGraph, error) {
	sg := &splitGraph{g: g, index: map[*ir.Node]int{}, dg: simple.NewDirectedGraph(), consumers: g.Consumers()}
	for i, n := range g.Nodes {
		sg.index[n] = i
		sg.dg.AddNode(simple.Node(int64(i)))
	}
	for i, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == nil || in.Producer == nil {
				continue
			}
			p, ok := sg.index[in.Producer]
			if !ok {
				return nil, fmt.Errorf("split %q: %v reads %q, produced by a node outside the graph", g.Name, n, in.Name)
			}
			if p != i && !sg.dg.HasEdgeFromTo(int64(p), int64(i)) {
				sg.dg.SetEdge(sg.dg.NewEdge(simple.Node(int64(p)), simple.Node(int64(i))))
			}
		}
	}
	order, err := topo.SortStabilized(sg.dg, func(ns []graph.Node) {
		sort.Slice(ns, func(i, j int) bool { return ns[i].ID() < ns[j].ID() })
	})
	if err != nil {
		return nil, fmt.Errorf("split %q: %v", g.Name, err)
	}
	for i, n := range order {
		if n.ID() != int64(i) {
			return nil, fmt.Errorf("split %q: nodes are not in topological order (%v)", g.Name, g.Nodes[i])
		}
	}
	sg.nodes = g.Nodes
	sg.rank = make([]int, len(g.Nodes))
	for i, n := range g.Nodes {
		if splitWeighted(n) {
			sg.weighted++
			sg.rank[i] = sg.weighted
		}
	}
	sg.chain = len(g.Inputs) == 1 && len(g.Outputs) == 1
	for i := range g.Nodes {
		if sg.dg.To(int64(i)).Len() > 1 || sg.dg.From(int64(i)).Len() > 1 {
			sg.chain = false
		}
	}
	sg.dominator = sg.dominators()
	return sg, nil
}

// dominators marks the nodes that dominate every node computing a graph
// output, from a virtual root feeding the nodes that read graph inputs.
func (sg *splitGraph) dominators() []bool {
	n := len(sg.nodes)
	dom := make([]bool, n)
	if n == 0 {
		return dom
	}
	aug := simple.NewDirectedGraph()
	graph.Copy(aug, sg.dg)
	root, sink := simple.Node(int64(n)), simple.Node(int64(n+1))
	aug.AddNode(root)
	aug.AddNode(sink)
	for i, nd := range sg.nodes {
		if sg.dg.To(int64(i)).Len() == 0 {
			aug.SetEdge(aug.NewEdge(root, simple.Node(int64(i))))
		}
		for _, o := range nd.Outputs {
			if sg.g.IsOutput(o) {
				aug.SetEdge(aug.NewEdge(simple.Node(int64(i)), sink))
			}
		}
	}
	tree := flow.Dominators(root, aug)
	for d := tree.DominatorOf(sink.ID()); d != nil && d.ID() != root.ID(); d = tree.DominatorOf(d.ID()) {
		dom[d.ID()] = true
	}
	return dom
}

// cone returns the node set reachable from node i along edges (forward:
// descendants) or against them (ancestors), i included.
func (sg *splitGraph) cone(i int, forward bool) []bool {
	set := make([]bool, len(sg.nodes))
	var g graph.Directed = sg.dg
	if !forward {
		rev := simple.NewDirectedGraph()
		for _, e := range graph.EdgesOf(sg.dg.Edges()) {
			rev.SetEdge(rev.NewEdge(e.To(), e.From()))
		}
		for _, nd := range graph.NodesOf(sg.dg.Nodes()) {
			if rev.Node(nd.ID()) == nil {
				rev.AddNode(nd)
			}
		}
		g = rev
	}
	bf := traverse.BreadthFirst{Visit: func(n graph.Node) { set[n.ID()] = true }}
	bf.Walk(g, simple.Node(int64(i)), nil)
	return set
}

// crossing returns the non-constant values produced outside set (or graph
// inputs) that nodes in set read, or, with out, the values produced in set
// that nodes outside read or that are graph outputs; in order of first
// appearance.
func (sg *splitGraph) crossing(set []bool, out bool) []string {
	seen := map[*ir.Value]bool{}
	var names []string
	add := func(v *ir.Value) {
		if !seen[v] {
			seen[v] = true
			names = append(names, v.Name)
		}
	}
	for i, n := range sg.nodes {
		if !set[i] {
			continue
		}
		if !out {
			for _, in := range n.Inputs {
				if in != nil && !in.IsConst() && (in.Producer == nil || !set[sg.index[in.Producer]]) {
					add(in)
				}
			}
			continue
		}
		for _, o := range n.Outputs {
			if o == nil {
				continue
			}
			if sg.g.IsOutput(o) {
				add(o)
			}
			for _, c := range sg.consumers[o] {
				if !set[sg.index[c]] {
					add(o)
				}
			}
		}
	}
	return names
}

// integerPrefix marks the nodes that must run on the data owner because
// they read a non-constant value that is not floating point (token ids:
// CKKS encrypts real numbers, and an embedding lookup by an encrypted index
// is no affine map), with every node they depend on; nil when there are
// none.
func (sg *splitGraph) integerPrefix() []bool {
	var set []bool
	for i, n := range sg.nodes {
		for _, in := range n.Inputs {
			if in == nil || in.IsConst() || in.DType.IsFloat() {
				continue
			}
			if set == nil {
				set = make([]bool, len(sg.nodes))
			}
			for k, x := range sg.cone(i, false) {
				set[k] = set[k] || x
			}
			break
		}
	}
	return set
}

// embedding is integerPrefix extended by the nodes that only add a
// constant to what it computes (a positional embedding): the layers the
// default policy reveals to the data owner for a model with integer
// inputs. It returns nil when the graph has no integer input.
func (sg *splitGraph) embedding() []bool {
	set := sg.integerPrefix()
	if set == nil {
		return nil
	}
	for i, n := range sg.nodes {
		if set[i] || n.Op != "Add" && n.Op != "Sub" {
			continue
		}
		inside, consts := true, 0
		for _, in := range n.Inputs {
			switch {
			case in == nil:
			case in.IsConst():
				consts++
			case in.Producer == nil || !set[sg.index[in.Producer]]:
				inside = false
			}
		}
		if inside && consts > 0 {
			set[i] = true
		}
	}
	return set
}

// weightedIn counts the weighted nodes of set.
func (sg *splitGraph) weightedIn(set []bool) int {
	c := 0
	for i, in := range set {
		if in && sg.rank[i] > 0 {
			c++
		}
	}
	return c
}

// EmbeddingPolicy describes what a graph with integer (token id) inputs
// forces on a split: Nodes (names, in graph order) read the integer inputs
// or feed nodes that do, so they run on the data owner; Embedding adds the
// constant additions after them (a positional embedding), and Weighted is
// the number of weighted layers among the Embedding nodes, the default
// SplitPolicy.RevealPrefix of such a graph. Inputs names the integer
// inputs. The zero value (no integer input) forces nothing.
type EmbeddingPolicy struct {
	Inputs, Nodes, Embedding []string
	Weighted                 int
}

// Embedding returns g's EmbeddingPolicy. g must be topologically sorted
// (canonical).
func Embedding(g *ir.Graph) (EmbeddingPolicy, error) {
	sg, err := newSplitGraph(g)
	if err != nil {
		return EmbeddingPolicy{}, err
	}
	return sg.embeddingPolicy(), nil
}

func (sg *splitGraph) embeddingPolicy() EmbeddingPolicy {
	var p EmbeddingPolicy
	forced, emb := sg.integerPrefix(), sg.embedding()
	if forced == nil {
		return p
	}
	for _, v := range sg.g.Inputs {
		if !v.DType.IsFloat() {
			p.Inputs = append(p.Inputs, v.Name)
		}
	}
	for i, n := range sg.nodes {
		if forced[i] {
			p.Nodes = append(p.Nodes, n.Name)
		}
		if emb[i] {
			p.Embedding = append(p.Embedding, n.Name)
		}
	}
	p.Weighted = sg.weightedIn(emb)
	return p
}

// String says what the policy forces and reveals, for compile's output.
func (p EmbeddingPolicy) String() string {
	if len(p.Nodes) == 0 {
		return ""
	}
	return fmt.Sprintf("integer input %s (token ids) stays with the data owner: the embedding (%s) runs in plaintext there, and the default policy reveals its %d weighted layers (--reveal-prefix %d)",
		strings.Join(p.Inputs, ", "), strings.Join(p.Embedding, ", "), p.Weighted, p.Weighted)
}

// splitPair is a candidate before costing: a downward-closed prefix and an
// upward-closed suffix, disjoint, leaving nodes between them.
type splitPair struct {
	prefix, suffix []bool
	label          string
	// crossings is the number of values crossing both cuts.
	crossings int
}

func setKey(s []bool) string {
	b := make([]byte, len(s))
	for i, x := range s {
		if x {
			b[i] = 1
		}
	}
	return string(b)
}

// prefixViolation returns, for a prefix, the first weighted node the policy
// does not reveal, or -1.
func (sg *splitGraph) prefixViolation(p []bool, reveal int) int {
	for i, in := range p {
		if in && sg.rank[i] > reveal {
			return i
		}
	}
	return -1
}

// suffixViolation is prefixViolation for a suffix.
func (sg *splitGraph) suffixViolation(s []bool, reveal int) int {
	for i, in := range s {
		if in && sg.rank[i] > 0 && sg.rank[i] <= sg.weighted-reveal {
			return i
		}
	}
	return -1
}

// candidates enumerates the (prefix, suffix) pairs opts allows: prefixes
// are the empty set, the ancestor cones of the nodes every input-to-output
// path passes through (single-value cuts; every node of a chain) and the
// topological prefixes (which, on a DAG, include cuts through skip
// connections); suffixes likewise with descendant cones and topological
// suffixes.
func (sg *splitGraph) candidates(opts SplitOptions) (pairs []splitPair, truncated bool, err error) {
	n := len(sg.nodes)
	if n == 0 {
		return nil, false, fmt.Errorf("split %q: the graph has no nodes", sg.g.Name)
	}
	pol := opts.Policy
	var prefixes, suffixes [][]bool
	seen := map[string]bool{}
	addTo := func(list *[][]bool, s []bool, tag string) {
		if k := tag + setKey(s); !seen[k] {
			seen[k] = true
			*list = append(*list, s)
		}
	}
	cut := strings.TrimSpace(opts.Cut)
	switch {
	case cut == "" || cut == "auto":
		addTo(&prefixes, make([]bool, n), "p")
		for i := range n {
			if sg.chain || sg.dominator[i] {
				addTo(&prefixes, sg.cone(i, false), "p")
			}
		}
		for t := 1; t < n; t++ {
			s := make([]bool, n)
			for k := range t {
				s[k] = true
			}
			addTo(&prefixes, s, "p")
		}
	case cut == "none":
		prefixes = [][]bool{make([]bool, n)}
	case strings.HasPrefix(strings.ToLower(cut), "after="):
		name := cut[len("after="):]
		i := -1
		for k, nd := range sg.nodes {
			if nd.Name == name {
				i = k
			}
		}
		if i < 0 {
			return nil, false, fmt.Errorf("split %q: --cut after=%s: no node %q (see `ciphercut inspect MODEL.onnx` for node names)", sg.g.Name, name, name)
		}
		p := sg.cone(i, false)
		if v := sg.prefixViolation(p, pol.RevealPrefix); v >= 0 {
			return nil, false, fmt.Errorf("split %q: --cut after=%s puts %v, weighted layer %d of %d, on the data owner, but the policy reveals only the first %d (--reveal-prefix %d)",
				sg.g.Name, name, sg.nodes[v], sg.rank[v], sg.weighted, pol.RevealPrefix, pol.RevealPrefix)
		}
		prefixes = [][]bool{p}
	default:
		return nil, false, fmt.Errorf("split %q: unknown --cut %q (want auto, none or after=NODE)", sg.g.Name, opts.Cut)
	}
	suffixes = append(suffixes, make([]bool, n))
	if cut != "none" {
		for i := range n {
			if sg.chain || sg.dominator[i] {
				addTo(&suffixes, sg.cone(i, true), "s")
			}
		}
		for t := 1; t < n; t++ {
			s := make([]bool, n)
			for k := t; k < n; k++ {
				s[k] = true
			}
			addTo(&suffixes, s, "s")
		}
	}
	if forced := sg.integerPrefix(); forced != nil {
		if v := sg.prefixViolation(forced, pol.RevealPrefix); v >= 0 {
			ep := sg.embeddingPolicy()
			return nil, false, fmt.Errorf("split %q: %v reads integer input %s (token ids), which cannot be encrypted, so it runs on the data owner; it is weighted layer %d of %d, beyond --reveal-prefix %d (the model's embedding needs --reveal-prefix %d, the default for models with integer inputs)",
				sg.g.Name, sg.nodes[v], strings.Join(ep.Inputs, ", "), sg.rank[v], sg.weighted, pol.RevealPrefix, sg.weightedIn(forced))
		}
		// Nodes reading integer values run on the data owner whatever the
		// cut: every prefix includes them (a union of downward-closed sets
		// is downward closed).
		with := prefixes[:0:0]
		seen = map[string]bool{}
		for _, p := range prefixes {
			u := make([]bool, n)
			for i := range u {
				u[i] = p[i] || forced[i]
			}
			addTo(&with, u, "p")
		}
		prefixes = with
	}
	var firstViolation error
	for _, p := range prefixes {
		if v := sg.prefixViolation(p, pol.RevealPrefix); v >= 0 {
			if firstViolation == nil {
				firstViolation = fmt.Errorf("%v is weighted layer %d of %d, beyond --reveal-prefix %d", sg.nodes[v], sg.rank[v], sg.weighted, pol.RevealPrefix)
			}
			continue
		}
		for _, s := range suffixes {
			if sg.suffixViolation(s, pol.RevealSuffix) >= 0 {
				continue
			}
			middle := 0
			disjoint := true
			for i := range n {
				disjoint = disjoint && !(p[i] && s[i])
				if !p[i] && !s[i] {
					middle++
				}
			}
			if !disjoint || middle == 0 {
				continue
			}
			pairs = append(pairs, splitPair{prefix: p, suffix: s, label: sg.label(p, s),
				crossings: len(sg.crossing(p, true)) + len(sg.crossing(s, false))})
		}
	}
	if len(pairs) == 0 {
		if firstViolation != nil && len(prefixes) == 1 {
			return nil, false, fmt.Errorf("split %q: no split satisfies the policy: %v", sg.g.Name, firstViolation)
		}
		return nil, false, fmt.Errorf("split %q: no split satisfies the policy (--reveal-prefix %d, --reveal-suffix %d, --cut %s) and leaves a node to encrypt",
			sg.g.Name, pol.RevealPrefix, pol.RevealSuffix, opts.Cut)
	}
	if len(pairs) > opts.MaxCandidates {
		// The best few: fewest values crossing the cuts (a cut at a
		// dominator is one value), then the most work on the data owner;
		// the fully encrypted split stays as the baseline.
		owner := func(p splitPair) int {
			c := 0
			for i := range n {
				if p.prefix[i] || p.suffix[i] {
					c++
				}
			}
			return c
		}
		base := pairs[0]
		rest := pairs[1:]
		sort.SliceStable(rest, func(i, j int) bool {
			if rest[i].crossings != rest[j].crossings {
				return rest[i].crossings < rest[j].crossings
			}
			return owner(rest[i]) > owner(rest[j])
		})
		pairs = append([]splitPair{base}, rest[:opts.MaxCandidates-1]...)
		truncated = true
	}
	return pairs, truncated, nil
}

// label names a (prefix, suffix) pair: "none", "after NODE" (the prefix is
// NODE's ancestors), "prefix of K nodes", and "+ suffix from NODE".
func (sg *splitGraph) label(p, s []bool) string {
	var parts []string
	last := -1
	for i, in := range p {
		if in {
			last = i
		}
	}
	if last >= 0 {
		if setKey(sg.cone(last, false)) == setKey(p) {
			parts = append(parts, "after "+sg.nodes[last].Name)
		} else {
			k := 0
			for _, in := range p {
				if in {
					k++
				}
			}
			parts = append(parts, fmt.Sprintf("prefix of %d nodes to %s", k, sg.nodes[last].Name))
		}
	}
	for i, in := range s {
		if in {
			parts = append(parts, "suffix from "+sg.nodes[i].Name)
			break
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " + ")
}
