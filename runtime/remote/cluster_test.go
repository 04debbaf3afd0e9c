package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// TestRoundRobin checks the assignment of segments to in-process workers:
// every segment served, redundant copies with more workers than segments,
// consecutive runs (a transformer block's stages) with fewer.
func TestRoundRobin(t *testing.T) {
	shards := make([]*segment.Shard, 4)
	for i := range shards {
		shards[i] = &segment.Shard{}
	}
	index := func(serve [][]*segment.Shard) [][]int {
		out := make([][]int, len(serve))
		for w, ss := range serve {
			for _, s := range ss {
				for i, x := range shards {
					if s == x {
						out[w] = append(out[w], i)
					}
				}
			}
		}
		return out
	}
	for _, c := range []struct {
		workers int
		want    [][]int
	}{
		{1, [][]int{{0, 1, 2, 3}}},
		{2, [][]int{{0, 1}, {2, 3}}},
		{3, [][]int{{0}, {1}, {2, 3}}},
		{4, [][]int{{0}, {1}, {2}, {3}}},
		{6, [][]int{{0}, {1}, {2}, {3}, {0}, {1}}},
	} {
		if d := cmp.Diff(c.want, index(RoundRobin(shards, c.workers))); d != "" {
			t.Errorf("%d workers (-want +got):\n%s", c.workers, d)
		}
	}
}
