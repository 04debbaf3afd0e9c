package remote

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// WorkerOptions configure a worker.
type WorkerOptions struct {
	// Allow lists the data owners served; every other peer is refused,
	// unless it presents a valid token of one of TokenIssuers (the model
	// owners whose permissions the worker honours; see Token).
	Allow        []peer.ID
	TokenIssuers []peer.ID
	// CacheDir and CacheQuota place and bound the on-disk key cache
	// (default: a directory under the system's temporary directory, 8 GiB).
	CacheDir   string
	CacheQuota int64
	// Concurrency is the number of requests evaluated at once (default 1);
	// further requests wait, before their ciphertexts are read, so it
	// bounds memory too.
	Concurrency int
	// MaxCiphertexts bounds the ciphertexts of one input of a request
	// (default 4096).
	MaxCiphertexts int
	// MemoryBudget bounds the bytes of input ciphertexts held by the
	// requests in flight together (default 4 GiB): a request announcing
	// more is refused, one that does not fit beside the others waits.
	MemoryBudget int64
	// Evaluators is the number of evaluators (keys decoded, plaintexts
	// encoded) kept in memory (default 4).
	Evaluators int
	// EncodeBudget bounds the bytes of matrix diagonals an evaluator keeps
	// encoded; the largest matrices beyond it are encoded at each use
	// (ckks.NewEvaluatorWithBudget). 0 or negative: keep all encoded.
	// Unused with Pool.
	EncodeBudget int64
	// Pool, if set, plans every evaluator within its limit (lanes, cores,
	// encoded diagonals) and drops the least recently used evaluators of
	// the workers sharing it to make room (see MemoryPool).
	Pool *MemoryPool
	// RequestTimeout bounds the time a peer has to send a request (default
	// 30 minutes).
	RequestTimeout time.Duration
	// Heartbeat is how often a worker sends a progress frame while it
	// builds an evaluator and evaluates (default 20 seconds), so that the
	// data owner's timeout counts silence, not work.
	Heartbeat time.Duration

	beforeRun func(network.Stream) // tests: called before each evaluation
	// Log receives one line per request and per refusal (default: stderr).
	Log *log.Logger
}

// Worker serves shards to allowed data owners.
type Worker struct {
	host   host.Host
	shards map[shardKey]*segment.Shard
	allow  map[peer.ID]bool
	cache  *KeyCache
	sem    chan struct{}
	mem    *budget
	opts   WorkerOptions
	log    *log.Logger

	mu  sync.Mutex
	evs map[evKey]*evEntry
}

type shardKey struct {
	plan  string
	index int
}

type evKey struct {
	shard shardKey
	keys  string
}

type evEntry struct {
	once sync.Once
	ev   *ckks.Evaluator
	err  error
	used time.Time
}

// NewWorker serves shards on h under ProtocolID.
func NewWorker(h host.Host, shards []*segment.Shard, opts WorkerOptions) (*Worker, error) {
	if opts.CacheQuota <= 0 {
		opts.CacheQuota = 8 << 30
	}
	if opts.CacheDir == "" {
		opts.CacheDir = fmt.Sprintf("%s/ciphercut-keys-%s", os.TempDir(), h.ID())
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.MaxCiphertexts <= 0 {
		opts.MaxCiphertexts = 4096
	}
	if opts.MemoryBudget <= 0 {
		opts.MemoryBudget = 4 << 30
	}
	if opts.Evaluators <= 0 {
		opts.Evaluators = 4
	}
	if opts.EncodeBudget <= 0 {
		opts.EncodeBudget = -1
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Minute
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 20 * time.Second
	}
	if opts.Log == nil {
		opts.Log = log.New(os.Stderr, "worker: ", log.LstdFlags)
	}
	cache, err := NewKeyCache(opts.CacheDir, opts.CacheQuota)
	if err != nil {
		return nil, err
	}
	w := &Worker{host: h, shards: map[shardKey]*segment.Shard{}, allow: map[peer.ID]bool{}, cache: cache,
		sem: make(chan struct{}, opts.Concurrency), mem: newBudget(opts.MemoryBudget), opts: opts, log: opts.Log, evs: map[evKey]*evEntry{}}
	for _, s := range shards {
		w.shards[shardKey{s.PlanID, s.Index}] = s
	}
	for _, p := range opts.Allow {
		w.allow[p] = true
	}
	h.SetStreamHandler(ProtocolID, w.handle)
	return w, nil
}

// Host is the worker's libp2p host.
func (w *Worker) Host() host.Host { return w.host }

// Announce provides every shard's content id in the DHT, retrying until the
// DHT accepts (a lone first worker has nobody to tell yet), then again
// every 12 hours until ctx ends. It returns at once.
func (w *Worker) Announce(ctx context.Context, d *dht.IpfsDHT) {
	for k, s := range w.shards {
		go func() {
			c := ContentID(k.plan, k.index)
			wait := 500 * time.Millisecond
			for {
				err := d.Provide(ctx, c, true)
				if err == nil {
					w.log.Printf("announced segment %d/%d of plan %.12s (%s) as %s", s.Index+1, s.Count, k.plan, s.ModelName, c)
					wait = 12 * time.Hour
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
}

// ctLimit bounds a serialized ciphertext of the program's ring at its top
// level (see ctLimitAt).
func ctLimit(p *ckksir.Program) uint32 { return ctLimitAt(p, p.Params.MaxLevel()) }

// ctLimitAt bounds a serialized ciphertext of the program's ring at a
// level: magic, metadata and two polynomials of level+1 rows of N
// coefficients, with slack for the metadata's encoding.
func ctLimitAt(p *ckksir.Program, level int) uint32 {
	n := int64(1) << p.Params.LogN
	rows := int64(level + 1)
	size := 4096 + 8 + 2*(8+rows*(8+8*n))
	if size > 1<<32-1 {
		size = 1<<32 - 1
	}
	return uint32(size)
}

// budget is a byte budget shared by the requests in flight.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	free  int64
	total int64
}

func newBudget(total int64) *budget {
	b := &budget{free: total, total: total}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n bytes are free and takes them; n must not exceed
// the total.
func (b *budget) acquire(n int64) {
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// unknownKeys opens the refusal of a request whose keys the worker does not
// hold (never uploaded, or evicted from its cache): the owner uploads them
// again.
const unknownKeys = "unknown evaluation keys"

// replyError is a failure to send the reply of a request that was read
// and evaluated.
type replyError struct{ err error }

func (e *replyError) Error() string { return "sending the reply: " + e.err.Error() }
func (e *replyError) Unwrap() error { return e.err }

// refusal is an error to report to the peer.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// handle serves one stream: one request.
func (w *Worker) handle(s network.Stream) {
	remote := s.Conn().RemotePeer()
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(w.opts.RequestTimeout))
	r := bufio.NewReaderSize(s, 64<<10)
	bw := bufio.NewWriterSize(s, 64<<10)
	err := w.serve(remote, s, r, bw)
	if err == nil {
		return
	}
	msg := err.Error()
	var rf *refusal
	var re *replyError
	if !errors.As(err, &rf) && !errors.As(err, &re) {
		msg = "reading the request: " + msg
	}
	w.log.Printf("peer %s: refused: %s", remote, msg)
	if werr := writeHeader(bw, &Header{Status: "error", Error: msg}); werr == nil {
		bw.Flush()
	}
	// Let the error reach the peer before the stream goes: close our side,
	// then drain (briefly) what it may still be sending.
	s.CloseWrite()
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, io.LimitReader(r, 64<<20))
}

// serve reads and answers one request; an error is reported to the peer.
func (w *Worker) serve(remote peer.ID, s network.Stream, r *bufio.Reader, bw *bufio.Writer) error {
	if !w.allow[remote] && len(w.opts.TokenIssuers) == 0 {
		return refuse("peer %s is not allowed by this worker (it serves the data owners given with --allow)", remote)
	}
	h, err := readHeader(r)
	if err != nil {
		return err
	}
	if err := w.authorize(remote, h.Token); err != nil {
		return err
	}
	key := shardKey{h.Plan, h.Segment}
	sh := w.shards[key]
	if sh == nil {
		return refuse("this worker does not serve segment %d of plan %.12s", h.Segment, h.Plan)
	}
	if !validHash(h.Keys) {
		return refuse("malformed evaluation key hash %q (want a lowercase hex SHA-256)", h.Keys)
	}
	switch h.Op {
	case "keys":
		return w.keys(remote, sh, key, h, r, bw)
	case "eval":
		return w.eval(remote, s, sh, key, h, r, bw)
	}
	return refuse("unknown operation %q (want keys or eval)", h.Op)
}

// authorize admits a peer listed with --allow, or one presenting a valid
// token of an accepted model owner.
func (w *Worker) authorize(remote peer.ID, t *Token) error {
	if w.allow[remote] {
		return nil
	}
	if t == nil {
		return refuse("peer %s is not allowed by this worker (it serves the data owners given with --allow, or presenting a token of model owner %v)", remote, w.opts.TokenIssuers)
	}
	if err := t.check(); err != nil {
		return refuse("%v", err)
	}
	if err := t.Verify(w.opts.TokenIssuers, remote, time.Now()); err != nil {
		return refuse("%v", err)
	}
	return nil
}

// keys answers an announcement of evaluation keys: "have" when cached,
// else "send", then receives them into the cache, checks them against the
// segment and answers "ready".
func (w *Worker) keys(remote peer.ID, sh *segment.Shard, key shardKey, h *Header, r *bufio.Reader, bw *bufio.Writer) error {
	if w.cache.Has(h.Keys) {
		if _, err := w.evaluator(sh, key, h.Keys); err != nil {
			return refuse("cached evaluation keys %.12s for segment %d: %v", h.Keys, sh.Index, err)
		}
		return reply(bw, &Header{Status: "have"})
	}
	if err := w.cache.MakeRoom(h.KeyBytes, h.Keys); err != nil {
		return refuse("%v", err)
	}
	if err := reply(bw, &Header{Status: "send"}); err != nil {
		return err
	}
	start := time.Now()
	chunks := &chunkReader{r: r}
	if err := w.cache.Store(h.Keys, h.KeyBytes, chunks); err != nil {
		if chunks.err != nil {
			return chunks.err
		}
		return refuse("%v", err)
	}
	if err := chunks.end(); err != nil {
		w.cache.Remove(h.Keys)
		return err
	}
	if _, err := w.evaluator(sh, key, h.Keys); err != nil {
		w.cache.Remove(h.Keys)
		return refuse("evaluation keys %.12s for segment %d: %v", h.Keys, sh.Index, err)
	}
	w.log.Printf("peer %s: received %.1f MiB of evaluation keys %.12s for segment %d in %v", remote,
		float64(h.KeyBytes)/(1<<20), h.Keys, sh.Index, time.Since(start).Round(time.Millisecond))
	return reply(bw, &Header{Status: "ready"})
}

// chunkReader reads the payloads of key-chunk frames as one stream, up to
// the end frame.
type chunkReader struct {
	r    *bufio.Reader
	buf  []byte
	done bool
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.done {
			return 0, io.EOF
		}
		if c.err != nil {
			return 0, c.err
		}
		t, payload, err := readFrame(c.r, Limits{FrameKeys: KeyChunkBytes, FrameEnd: 0})
		switch {
		case err != nil:
			c.err = err
		case t == FrameEnd:
			c.done = true
		default:
			c.buf = payload
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// end checks that the keys ended exactly with an end frame.
func (c *chunkReader) end() error {
	var one [1]byte
	if n, err := c.Read(one[:]); n > 0 || err != io.EOF {
		if c.err != nil {
			return c.err
		}
		return refuse("more key bytes than announced")
	}
	return nil
}

// reply writes a header and flushes.
func reply(bw *bufio.Writer, h *Header) error {
	if err := writeHeader(bw, h); err != nil {
		return err
	}
	return bw.Flush()
}

// evaluator returns the evaluator of a shard under cached keys, decoding
// them (validated) and encoding the segment's plaintexts on first use, and
// drops the least recently used evaluators beyond the limit.
func (w *Worker) evaluator(sh *segment.Shard, key shardKey, hash string) (*ckks.Evaluator, error) {
	k := evKey{key, hash}
	w.mu.Lock()
	e := w.evs[k]
	if e == nil {
		e = &evEntry{}
		w.evs[k] = e
		for len(w.evs) > w.opts.Evaluators {
			var oldest evKey
			first := true
			for kk, ee := range w.evs {
				if kk != k && (first || ee.used.Before(w.evs[oldest].used)) {
					oldest, first = kk, false
				}
			}
			delete(w.evs, oldest)
			if w.opts.Pool != nil {
				w.opts.Pool.forget(w, oldest)
			}
		}
	}
	e.used = time.Now()
	w.mu.Unlock()
	if w.opts.Pool != nil {
		w.opts.Pool.touch(w, k)
	}
	e.once.Do(func() {
		start := time.Now()
		budget, lanes, cores := w.opts.EncodeBudget, 0, 0
		if w.opts.Pool != nil {
			plan, err := w.opts.Pool.plan(sh)
			if err != nil {
				e.err = err
				return
			}
			w.opts.Pool.admit(w, k, plan.Peak())
			budget, lanes, cores = plan.Budget(), plan.Lanes, plan.Cores
		}
		data, release, err := w.cache.Map(hash)
		if err != nil {
			e.err = fmt.Errorf("%s %.12s: upload them first", unknownKeys, hash)
			return
		}
		evk, err := ckks.UnmarshalEvaluationKeys(sh.Program, data)
		release() // the decoded keys do not alias the mapped bytes
		if err != nil {
			e.err = err
			return
		}
		e.ev, e.err = ckks.NewEvaluatorWithBudget(sh.Program, evk, budget)
		if e.err == nil && lanes > 0 {
			e.ev.SetLanes(lanes)
			e.ev.SetCores(cores)
		}
		if e.err == nil {
			how := ""
			switch {
			case lanes > 0 && budget < 0:
				how = fmt.Sprintf(" (%d lane(s) on %d cores, every diagonal kept encoded)", lanes, cores)
			case lanes > 0:
				how = fmt.Sprintf(" (%d lane(s) on %d cores, %.1f GiB of diagonals kept encoded)", lanes, cores, float64(budget)/(1<<30))
			}
			w.log.Printf("segment %d/%d: evaluator built from the key cache in %v%s", sh.Index+1, sh.Count, time.Since(start).Round(time.Millisecond), how)
			// Progress in quarters, set once before any Run.
			e.ev.SetProgress(func(s ckks.Step) {
				if s.Total >= 4 && s.Done*4/s.Total != (s.Done-1)*4/s.Total {
					w.log.Printf("segment %d/%d: %d%% evaluated (%s)", sh.Index+1, sh.Count, 100*s.Done/s.Total, s.Layer)
				}
			})
		}
	})
	if e.err != nil {
		w.mu.Lock()
		if w.evs[k] == e {
			delete(w.evs, k)
		}
		w.mu.Unlock()
		if w.opts.Pool != nil {
			w.opts.Pool.forget(w, k)
		}
	}
	return e.ev, e.err
}

// dropEvaluator forgets the evaluator of key k (MemoryPool's eviction):
// a request that holds it finishes with it, the next one builds it again.
func (w *Worker) dropEvaluator(k evKey) {
	w.mu.Lock()
	delete(w.evs, k)
	w.mu.Unlock()
}

// eval answers an evaluation request.
func (w *Worker) eval(remote peer.ID, s network.Stream, sh *segment.Shard, key shardKey, h *Header, r *bufio.Reader, bw *bufio.Writer) error {
	p := sh.Program
	stopBeat := heartbeat(s, bw, w.opts.Heartbeat)
	defer stopBeat() // before handle writes a refusal
	if !w.cache.Has(h.Keys) {
		return refuse("%s %.12s: upload them first (op keys)", unknownKeys, h.Keys)
	}
	if len(h.Inputs) != len(p.Inputs) {
		return refuse("segment %d takes %d inputs, the request sends %d", sh.Index, len(p.Inputs), len(h.Inputs))
	}
	for i, in := range h.Inputs {
		if in.Name != p.Inputs[i].Name {
			return refuse("segment %d: input %d is %q, the request sends %q", sh.Index, i, p.Inputs[i].Name, in.Name)
		}
		if in.Count < 1 || in.Count > w.opts.MaxCiphertexts {
			return refuse("input %q: %d ciphertexts, this worker takes 1 to %d", in.Name, in.Count, w.opts.MaxCiphertexts)
		}
	}
	// The inputs' ciphertexts are at their values' levels: bound each, and
	// the request, by that.
	need := int64(0)
	for i, in := range h.Inputs {
		need += int64(in.Count) * int64(ctLimitAt(p, p.Values[p.Inputs[i].Value].Level))
	}
	if need > w.opts.MemoryBudget {
		return refuse("a request of up to %.1f MiB of ciphertexts exceeds this worker's memory budget of %.1f MiB",
			float64(need)/(1<<20), float64(w.opts.MemoryBudget)/(1<<20))
	}
	ev, err := w.evaluator(sh, key, h.Keys)
	if err != nil {
		return refuse("%v", err)
	}
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	w.mem.acquire(need)
	defer w.mem.release(need)
	inputs := map[string][]*ckks.Ciphertext{}
	var received int64
	for i, in := range h.Inputs {
		limits := Limits{FrameCiphertext: ctLimitAt(p, p.Values[p.Inputs[i].Value].Level)}
		cts := make([]*ckks.Ciphertext, in.Count)
		for k := range cts {
			_, payload, err := readFrame(r, limits)
			if err != nil {
				return refuse("input %q ciphertext %d: %v", in.Name, k, err)
			}
			received += int64(len(payload))
			if cts[k], err = ev.UnmarshalCiphertext(payload); err != nil {
				return refuse("input %q ciphertext %d: %v", in.Name, k, err)
			}
		}
		inputs[in.Name] = cts
	}
	if t, _, err := readFrame(r, Limits{FrameEnd: 0}); err != nil || t != FrameEnd {
		return refuse("after the announced ciphertexts: %v", err)
	}
	start := time.Now()
	if w.opts.beforeRun != nil {
		w.opts.beforeRun(s)
	}
	outs, err := ev.Run(inputs)
	if err != nil {
		return refuse("evaluating segment %d: %v", sh.Index, err)
	}
	took := time.Since(start)
	stopBeat()
	rep := &Header{Status: "ok", Request: h.Request, EvalMillis: took.Milliseconds()}
	for _, o := range p.Outputs {
		rep.Outputs = append(rep.Outputs, Tensor{Name: o.Name, Count: len(outs[o.Name])})
	}
	sent, err := sendOutputs(bw, rep, p.Outputs, outs)
	if err != nil {
		return &replyError{err}
	}
	w.log.Printf("peer %s: request %s: segment %d/%d of %s, %.1f MiB in, evaluated in %v, %.1f MiB out", remote, h.Request,
		sh.Index+1, sh.Count, strings.TrimSpace(sh.ModelName), float64(received)/(1<<20), took.Round(time.Millisecond), float64(sent)/(1<<20))
	return nil
}

// sendOutputs writes the reply header rep and the outputs' ciphertexts,
// in the program's output order, then the end frame, and flushes; it
// returns the ciphertext bytes sent.
func sendOutputs(bw *bufio.Writer, rep *Header, outputs []ckksir.IO, outs map[string][]*ckks.Ciphertext) (int64, error) {
	if err := writeHeader(bw, rep); err != nil {
		return 0, err
	}
	var sent int64
	for _, o := range outputs {
		for _, ct := range outs[o.Name] {
			b, err := ct.MarshalBinary()
			if err != nil {
				return sent, err
			}
			sent += int64(len(b))
			if err := writeFrame(bw, FrameCiphertext, b); err != nil {
				return sent, err
			}
		}
	}
	if err := writeFrame(bw, FrameEnd, nil); err != nil {
		return sent, err
	}
	return sent, bw.Flush()
}

// heartbeatStall is the least time a progress frame may wait for the data
// owner to read it. A write that times out may leave part of a frame on
// the stream and fails the buffered writer for good, so the finished
// evaluation's reply fails too: with four 20 s intervals, a data owner
// whose process was starved of memory for 80 s lost a 16-minute
// evaluation. A dead connection fails the write sooner (the hosts' keepalive).
const heartbeatStall = 10 * time.Minute

// heartbeat sends a progress frame on bw every interval until the returned
// stop is called; stop waits for the sender, so that no frame interleaves
// with the reply. A data owner that stops reading for four intervals (at
// least heartbeatStall) ends the beats (the write deadline) rather than
// blocking the request.
func heartbeat(s network.Stream, bw *bufio.Writer, every time.Duration) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		var b [progressBytes]byte
		for {
			select {
			case <-done:
				return
			case <-t.C:
				binary.LittleEndian.PutUint64(b[:], uint64(time.Since(start).Milliseconds()))
				s.SetWriteDeadline(time.Now().Add(max(4*every, heartbeatStall)))
				err := writeFrame(bw, FrameProgress, b[:])
				if err == nil {
					err = bw.Flush()
				}
				s.SetWriteDeadline(time.Time{})
				if err != nil {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}
