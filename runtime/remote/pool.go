package remote

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// MemoryPool bounds the memory of the evaluators that workers keep between
// requests (evaluation keys decoded, diagonals encoded, lanes): each
// evaluator is planned within the pool's limit (local.PlanMemory: lanes,
// cores and encoded diagonals), and before one is built the least recently
// used evaluators of every worker sharing the pool are dropped until the
// plans fit together. A dropped evaluator is built again from the worker's
// key cache when a request needs it. The in-process workers of `--workers
// N` share one pool, so that a split plan whose stages' keys do not fit in
// memory together (a transformer's blocks) still runs, one stage's keys at
// a time.
type MemoryPool struct {
	limit int64
	mu    sync.Mutex
	held  []*pooled
}

// pooled is one evaluator the pool accounts for.
type pooled struct {
	w     *Worker
	k     evKey
	bytes int64
	used  time.Time
}

// NewMemoryPool returns a pool of limit bytes.
func NewMemoryPool(limit int64) *MemoryPool { return &MemoryPool{limit: limit} }

// plan is the memory plan of a shard's evaluator within the pool's limit.
func (p *MemoryPool) plan(sh *segment.Shard) (local.MemoryPlan, error) {
	m, _, err := local.PlanProgramMemory(sh.Program, p.limit, runtime.NumCPU())
	return m, err
}

// admit accounts bytes for worker w's evaluator k, first dropping the least
// recently used other evaluators (of any worker) while the total would
// exceed the limit.
func (p *MemoryPool) admit(w *Worker, k evKey, bytes int64) {
	p.mu.Lock()
	total := bytes
	for _, h := range p.held {
		if h.w != w || h.k != k {
			total += h.bytes
		}
	}
	var drop []*pooled
	for total > p.limit {
		oldest := -1
		for i, h := range p.held {
			if (h.w != w || h.k != k) && (oldest < 0 || h.used.Before(p.held[oldest].used)) {
				oldest = i
			}
		}
		if oldest < 0 {
			break
		}
		h := p.held[oldest]
		drop = append(drop, h)
		total -= h.bytes
		p.held = append(p.held[:oldest], p.held[oldest+1:]...)
	}
	p.forgetLocked(w, k)
	p.held = append(p.held, &pooled{w: w, k: k, bytes: bytes, used: time.Now()})
	p.mu.Unlock()
	for _, h := range drop {
		h.w.dropEvaluator(h.k)
		if h.w.log != nil {
			h.w.log.Printf("segment %d: evaluator (%.1f GiB) dropped to make room within the %.1f GiB memory pool; built again from the key cache at its next request",
				h.k.shard.index, float64(h.bytes)/(1<<30), float64(p.limit)/(1<<30))
		}
	}
	if len(drop) > 0 {
		debug.FreeOSMemory() // before the new evaluator decodes its keys
	}
}

// touch marks worker w's evaluator k as used now.
func (p *MemoryPool) touch(w *Worker, k evKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.held {
		if h.w == w && h.k == k {
			h.used = time.Now()
		}
	}
}

// forget stops accounting for worker w's evaluator k.
func (p *MemoryPool) forget(w *Worker, k evKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(w, k)
}

func (p *MemoryPool) forgetLocked(w *Worker, k evKey) {
	for i, h := range p.held {
		if h.w == w && h.k == k {
			p.held = append(p.held[:i], p.held[i+1:]...)
			return
		}
	}
}
