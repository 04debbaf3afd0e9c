package passes

import (
	"strings"
	"sync"

	"github.com/ciphercut/ciphercut/ir"
)

// ProbeCache keeps the probed matrices of affine regions across LowerCKKS
// calls (LowerOptions.Probes): the split pass lowers many overlapping
// stages of one model, whose regions are the same nodes with the same
// constants. A region is known by the names of its nodes, inputs and
// outputs, so a cache serves the subgraphs of one graph only. It is safe
// for concurrent use.
type ProbeCache struct {
	mu sync.Mutex
	m  map[string]*lowerProbeResult
}

// NewProbeCache returns an empty cache.
func NewProbeCache() *ProbeCache { return &ProbeCache{m: map[string]*lowerProbeResult{}} }

// probeKey names a region by its nodes, inputs and outputs.
func probeKey(sub *ir.Graph) string {
	var b strings.Builder
	for _, v := range sub.Inputs {
		b.WriteString(v.Name)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, n := range sub.Nodes {
		b.WriteString(n.Name)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, v := range sub.Outputs {
		b.WriteString(v.Name)
		b.WriteByte(0)
	}
	return b.String()
}

// probe returns lowerProbe(sub, whole), from the cache when it holds the
// region; the result is the caller's to modify.
func (c *ProbeCache) probe(sub *ir.Graph, whole bool) (*lowerProbeResult, error) {
	if c == nil {
		return lowerProbe(sub, whole)
	}
	key := probeKey(sub)
	if whole {
		key = "whole\x02" + key
	}
	c.mu.Lock()
	hit, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return hit.clone(), nil
	}
	res, err := lowerProbe(sub, whole)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = res.clone()
	c.mu.Unlock()
	return res, nil
}

// clone deep-copies a probe result (the lowering folds changes of
// variable into it in place).
func (r *lowerProbeResult) clone() *lowerProbeResult {
	c := &lowerProbeResult{bias: make([][]float64, len(r.bias)), mats: make([][][]lowerEntry, len(r.mats))}
	for k, b := range r.bias {
		c.bias[k] = append([]float64(nil), b...)
	}
	for k, ms := range r.mats {
		c.mats[k] = make([][]lowerEntry, len(ms))
		for i, m := range ms {
			c.mats[k][i] = append([]lowerEntry(nil), m...)
		}
	}
	return c
}
