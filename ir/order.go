package ir

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
	"gonum.org/v1/gonum/graph/traverse"
)

// nodeGraph is the gonum view of a Graph: one gonum node per ir Node (its ID
// is the node's index in g.Nodes), an edge from producer to consumer.
func nodeGraph(g *Graph) *simple.DirectedGraph {
	dg := simple.NewDirectedGraph()
	index := make(map[*Node]int64, len(g.Nodes))
	for i, n := range g.Nodes {
		index[n] = int64(i)
		dg.AddNode(simple.Node(int64(i)))
	}
	for i, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == nil || in.Producer == nil {
				continue
			}
			p, ok := index[in.Producer]
			if !ok || p == int64(i) {
				continue
			}
			if !dg.HasEdgeFromTo(p, int64(i)) {
				dg.SetEdge(dg.NewEdge(simple.Node(p), simple.Node(int64(i))))
			}
		}
	}
	return dg
}

// Sort puts g.Nodes in a topological order, stable with respect to the
// current order where dependencies allow. A cycle is an error naming a node
// on it.
func (g *Graph) Sort() error {
	dg := nodeGraph(g)
	order, err := topo.SortStabilized(dg, func(ns []graph.Node) {
		sort.Slice(ns, func(i, j int) bool { return ns[i].ID() < ns[j].ID() })
	})
	if err != nil {
		if u, ok := err.(topo.Unorderable); ok && len(u) > 0 && len(u[0]) > 0 {
			return fmt.Errorf("graph %q has a cycle through %v", g.Name, g.Nodes[u[0][0].ID()])
		}
		return fmt.Errorf("graph %q: %v", g.Name, err)
	}
	nodes := make([]*Node, len(order))
	for i, n := range order {
		nodes[i] = g.Nodes[n.ID()]
	}
	g.Nodes = nodes
	return nil
}

// Prune removes the nodes whose outputs no graph output depends on.
func (g *Graph) Prune() {
	dg := nodeGraph(g)
	live := make(map[int64]bool)
	index := make(map[*Node]int64, len(g.Nodes))
	for i, n := range g.Nodes {
		index[n] = int64(i)
	}
	// Walk producer edges backwards from the nodes computing graph outputs.
	rev := simple.NewDirectedGraph()
	for _, n := range graph.NodesOf(dg.Nodes()) {
		rev.AddNode(n)
	}
	for _, e := range graph.EdgesOf(dg.Edges()) {
		rev.SetEdge(rev.NewEdge(e.To(), e.From()))
	}
	bf := traverse.BreadthFirst{Visit: func(n graph.Node) { live[n.ID()] = true }}
	for _, o := range g.Outputs {
		if o.Producer == nil {
			continue
		}
		if id, ok := index[o.Producer]; ok && !live[id] {
			bf.Walk(rev, simple.Node(id), nil)
		}
	}
	kept := g.Nodes[:0]
	for i, n := range g.Nodes {
		if live[int64(i)] {
			kept = append(kept, n)
		}
	}
	for i := len(kept); i < len(g.Nodes); i++ {
		g.Nodes[i] = nil
	}
	g.Nodes = kept
}
