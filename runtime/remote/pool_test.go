package remote

import (
	"testing"
	"time"
)

// TestMemoryPoolDropsLeastRecentlyUsed checks the pool's accounting: an
// evaluator that does not fit beside the others drops the least recently
// used ones, of any worker sharing the pool, and never itself.
func TestMemoryPoolDropsLeastRecentlyUsed(t *testing.T) {
	p := NewMemoryPool(10)
	a, b := &Worker{evs: map[evKey]*evEntry{}}, &Worker{evs: map[evKey]*evEntry{}}
	k := func(i int) evKey { return evKey{shard: shardKey{plan: "p", index: i}} }
	add := func(w *Worker, i int, bytes int64) {
		w.evs[k(i)] = &evEntry{}
		p.admit(w, k(i), bytes)
		time.Sleep(time.Millisecond) // distinct use times
	}
	add(a, 0, 4)
	add(b, 1, 4)
	if len(a.evs) != 1 || len(b.evs) != 1 {
		t.Fatalf("8 of 10 bytes: kept %d and %d evaluators, want both", len(a.evs), len(b.evs))
	}
	p.touch(a, k(0)) // a's is now the most recent
	time.Sleep(time.Millisecond)
	add(a, 2, 5)
	if _, ok := b.evs[k(1)]; ok || len(a.evs) != 2 {
		t.Errorf("after 5 more bytes: worker a keeps %d, worker b %d; want b's least recently used one dropped", len(a.evs), len(b.evs))
	}
	add(b, 3, 10) // fills the pool alone
	if len(a.evs) != 0 || len(b.evs) != 1 {
		t.Errorf("an evaluator of the whole limit: a keeps %d, b %d; want only it", len(a.evs), len(b.evs))
	}
	p.admit(b, k(3), 10) // again: never drops itself
	if len(b.evs) != 1 || len(p.held) != 1 {
		t.Errorf("admitting the same evaluator again: %d kept, %d accounted", len(b.evs), len(p.held))
	}
}
