package remote

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

// Finder lists the providers of a segment, in the order to try them.
type Finder func(ctx context.Context, index int) ([]peer.AddrInfo, error)

// StaticProviders is a Finder over a fixed list per segment; a segment
// missing from the map falls back to all.
func StaticProviders(bySegment map[int][]peer.AddrInfo, all []peer.AddrInfo) Finder {
	return func(_ context.Context, index int) ([]peer.AddrInfo, error) {
		if ps, ok := bySegment[index]; ok {
			return ps, nil
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("no worker given for segment %d", index)
		}
		return all, nil
	}
}

// DHTProviders is a Finder asking the DHT for the providers of the
// segment's content id, polling until at least want are found or wait
// passes (then it returns what it has, if anything).
func DHTProviders(d *dht.IpfsDHT, planID string, want int, wait time.Duration) Finder {
	return func(ctx context.Context, index int) ([]peer.AddrInfo, error) {
		c := ContentID(planID, index)
		deadline := time.Now().Add(wait)
		for {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var found []peer.AddrInfo
			for ai := range d.FindProvidersAsync(qctx, c, 0) {
				found = append(found, ai)
			}
			cancel()
			if len(found) >= want || time.Now().After(deadline) {
				if len(found) == 0 {
					return nil, fmt.Errorf("no provider of segment %d (%s) found in the DHT", index, c)
				}
				return found, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// OwnerOptions configure the data owner's side.
type OwnerOptions struct {
	// Timeout bounds how long a worker may stay silent during an attempt
	// (default 10 minutes): a worker evaluating sends a progress frame
	// every WorkerOptions.Heartbeat, so only one that stalls or dies is
	// given up. AttemptLimit bounds a whole attempt however chatty the
	// worker (default 48 Timeouts).
	Timeout      time.Duration
	AttemptLimit time.Duration
	// Redundancy 2 runs every segment on two workers and compares their
	// decrypted results (a third, if any, settles a disagreement).
	Redundancy int
	// KeyProgress, if set, follows key generation.
	KeyProgress func(done, total int)
	// Tap, if set, sees every byte written to a worker (before Noise
	// encrypts it): the secret-key audit of the tests.
	Tap func(worker peer.ID, b []byte)
	// Log receives failover and redundancy notes (default: stderr).
	Log *log.Logger
	// KeyDir, if set, keeps the data owner's secret key (secret.key, mode
	// 0600) and evaluation keys between runs, so that workers that cached
	// the keys need no upload; it never leaves this process. The owner
	// then holds no evaluation keys in memory: uploads read their files.
	KeyDir string
	// SpillDir, used when KeyDir is not set, receives the evaluation keys
	// (public; the secret key stays in memory) so that the owner does not
	// hold them in memory either; the caller removes it.
	SpillDir string
	// Token, if set, is presented in every request: the model owner's
	// permission, for workers that do not list this data owner with
	// --allow.
	Token *Token
}

// Owner is the data owner: it holds the secret key and runs a split
// program on remote workers.
type Owner struct {
	host   host.Host
	find   Finder
	prog   *ckksir.Program
	planID string
	segs   []*segment.Segment
	client *ckks.Client
	per    map[int]*ownerSegment // by segment index
	opts   OwnerOptions
	log    *log.Logger

	mu       sync.Mutex
	uploaded map[peer.ID]map[string]bool
	// holders lists the workers known, from this process or, with a key
	// directory, earlier ones (workers.json), to hold the owner's keys:
	// tried first, so that sessions are reused.
	holders map[peer.ID]map[string]bool
}

// ownerSegment is what the owner keeps per segment: a client on the
// segment's program (same secret key) and its evaluation keys, in memory
// (evk) or, with a key directory, in their file there (path), read at each
// upload so that an owner of many segments does not hold all their keys.
type ownerSegment struct {
	client *ckks.Client
	evk    *ckks.EvaluationKeys
	path   string
	hash   string
	size   int64
}

// writeKeys writes the segment's serialized evaluation keys to w.
func (ks *ownerSegment) writeKeys(w io.Writer) error {
	if ks.evk != nil {
		_, err := ks.evk.WriteTo(w)
		return err
	}
	f, err := os.Open(ks.path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, bufio.NewReaderSize(f, 1<<20))
	if err == nil && n != ks.size {
		err = fmt.Errorf("%s: %d bytes, %d when the keys were written", ks.path, n, ks.size)
	}
	return err
}

// SegmentRun reports where and how one segment ran.
type SegmentRun struct {
	Index int
	// Worker ran it (the first agreeing one under redundancy); Checked
	// lists the others that agreed, Liar one that did not.
	Worker  peer.ID
	Checked []peer.ID
	Liar    peer.ID
	// Wall is the round trip of the successful attempt; Eval the worker's
	// own evaluation time.
	Wall, Eval time.Duration
	// KeyBytes were uploaded during this run (0 when every worker had
	// them); Sent and Received are the ciphertext bytes of the attempt.
	KeyBytes, Sent, Received int64
	// Failures lists the attempts that failed before, one line each.
	Failures []string
}

// set records the answer used.
func (r *SegmentRun) set(res *result) {
	r.Worker, r.Wall, r.Eval, r.Sent, r.Received = res.worker, res.att.wall, res.att.eval, res.att.sent, res.att.received
}

// Setup is what NewOwner measured.
type Setup struct {
	// KeyGen is the time taken to draw or read the keys.
	KeyGen   time.Duration
	KeyBytes []int64 // per segment, in order
	// SecretKeyLoaded and KeysLoaded (per segment) report keys read from
	// OwnerOptions.KeyDir rather than generated.
	SecretKeyLoaded bool
	KeysLoaded      []bool
}

// NewOwner draws a secret key for the data-owner plan op (see
// segment.OwnerPlan: the program's interface and each segment's interface
// and key needs, no weights), generates each segment's evaluation keys and
// prepares to run its segments on the workers find returns. With
// opts.KeyDir, the secret key and the evaluation keys are read from there
// when an earlier run wrote them, and written there otherwise.
func NewOwner(h host.Host, find Finder, op *segment.OwnerPlan, opts OwnerOptions) (*Owner, *Setup, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.AttemptLimit <= 0 {
		opts.AttemptLimit = 48 * opts.Timeout
	}
	if opts.Log == nil {
		opts.Log = log.New(os.Stderr, "owner: ", log.LstdFlags)
	}
	client, fingerprint, loaded, err := ownerClient(opts.KeyDir, op)
	if err != nil {
		return nil, nil, err
	}
	prog, planID, segs := op.Program, op.PlanID, op.Split()
	o := &Owner{host: h, find: find, prog: prog, planID: planID, segs: segs, client: client, per: map[int]*ownerSegment{}, opts: opts, log: opts.Log,
		uploaded: map[peer.ID]map[string]bool{}, holders: loadHolders(opts.KeyDir, opts.Log)}
	st := &Setup{SecretKeyLoaded: loaded}
	start := time.Now()
	for i, s := range segs {
		sc, err := client.ForInterface(s.Program, op.Segments[i].Keys)
		if err != nil {
			return nil, nil, fmt.Errorf("segment %d: %w", s.Index, err)
		}
		dir := opts.KeyDir
		if dir == "" {
			dir = opts.SpillDir
		}
		evk, path, hash, n, loaded, err := segmentKeys(dir, fingerprint, planID, s.Index, sc, opts.KeyProgress)
		if err != nil {
			return nil, nil, fmt.Errorf("segment %d: %w", s.Index, err)
		}
		ks := &ownerSegment{client: sc, evk: evk, path: path, hash: hash, size: n}
		if path != "" {
			ks.evk = nil // read from the file at each upload
			evk = nil
			debug.FreeOSMemory()
		}
		o.per[s.Index] = ks
		st.KeyBytes = append(st.KeyBytes, n)
		st.KeysLoaded = append(st.KeysLoaded, loaded)
	}
	st.KeyGen = time.Since(start)
	return o, st, nil
}

// Client is the owner's client on the whole program (tests compare with
// it).
func (o *Owner) Client() *ckks.Client { return o.client }

// Infer encrypts x (samples along the leading axis) for the program's single
// input, runs the segments in turn on workers and decrypts the single
// output.
func (o *Owner) Infer(ctx context.Context, x *ir.Tensor) (*ir.Tensor, []SegmentRun, error) {
	if len(o.prog.Inputs) != 1 || len(o.prog.Outputs) != 1 {
		return nil, nil, fmt.Errorf("program has %d inputs and %d outputs; want one of each", len(o.prog.Inputs), len(o.prog.Outputs))
	}
	out, rep, err := o.Run(ctx, map[string]*ir.Tensor{o.prog.Inputs[0].Name: x})
	if err != nil {
		return nil, rep.Segments, err
	}
	return out[o.prog.Outputs[0].Name], rep.Segments, nil
}

// RunReport is what Run measured: where and how each segment ran, in
// order, and the data owner's encryption and decryption.
type RunReport struct {
	Segments         []SegmentRun
	Encrypt, Decrypt time.Duration
	// Ciphertexts is the largest number of ciphertexts of an input.
	Ciphertexts int
}

// Run encrypts every program input (by name; samples along the leading
// axis, the same number for each), runs the segments in turn on workers
// and decrypts every output by name. The report is never nil.
func (o *Owner) Run(ctx context.Context, inputs map[string]*ir.Tensor) (map[string]*ir.Tensor, *RunReport, error) {
	rep := &RunReport{Segments: make([]SegmentRun, len(o.segs))}
	pos := map[int]int{}
	for i, s := range o.segs {
		pos[s.Index] = i
		rep.Segments[i].Index = s.Index
	}
	n := -1
	start := time.Now()
	cts := map[string][]*ckks.Ciphertext{}
	for _, io := range o.prog.Inputs {
		x, ok := inputs[io.Name]
		if !ok || x == nil || len(x.Shape) == 0 {
			return nil, rep, fmt.Errorf("no tensor with samples along its leading axis for the program input %q", io.Name)
		}
		if n >= 0 && x.Shape[0] != n {
			return nil, rep, fmt.Errorf("input %q has %d samples, another input %d", io.Name, x.Shape[0], n)
		}
		n = x.Shape[0]
		c, err := o.client.Encrypt(io.Name, x)
		if err != nil {
			return nil, rep, err
		}
		cts[io.Name] = c
		rep.Ciphertexts = max(rep.Ciphertexts, len(c))
	}
	rep.Encrypt = time.Since(start)
	res, err := segment.Run(o.prog, o.segs, cts, func(s *segment.Segment, in map[string][]*ckks.Ciphertext) (map[string][]*ckks.Ciphertext, error) {
		return o.runSegment(ctx, s, in, n, &rep.Segments[pos[s.Index]])
	})
	if err != nil {
		return nil, rep, err
	}
	start = time.Now()
	outs := map[string]*ir.Tensor{}
	for _, io := range o.prog.Outputs {
		if outs[io.Name], err = o.client.Decrypt(io.Name, res[io.Name], n); err != nil {
			return nil, rep, err
		}
	}
	rep.Decrypt = time.Since(start)
	return outs, rep, nil
}

// result is one worker's answer to a segment.
type result struct {
	worker peer.ID
	out    map[string][]*ckks.Ciphertext
	att    attempt
}

// runSegment runs one segment: on the first provider that answers, or on
// two (or three) that agree under redundancy. The inputs stay untouched, so
// a failed attempt is replayed as is elsewhere, under the same request id.
func (o *Owner) runSegment(ctx context.Context, s *segment.Segment, in map[string][]*ckks.Ciphertext, n int, run *SegmentRun) (map[string][]*ckks.Ciphertext, error) {
	provs, err := o.find(ctx, s.Index)
	if err != nil {
		return nil, err
	}
	provs = o.preferUploaded(provs, s.Index)
	req := newRequestID()
	var mu sync.Mutex // guards next, again, retried and run's failure and key counts
	next := 0
	// A provider whose connection failed (not one that refused) is asked
	// once more after every other provider was tried: with one worker per
	// segment, a dropped connection need not end the run. Its worker
	// evaluates requests one at a time, so the replay waits for the
	// first evaluation rather than running beside it.
	var again []peer.AddrInfo
	retried := map[peer.ID]bool{}
	take := func() (peer.AddrInfo, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next < len(provs) {
			next++
			return provs[next-1], true
		}
		if len(again) > 0 {
			p := again[0]
			again = again[1:]
			return p, true
		}
		return peer.AddrInfo{}, false
	}
	// one returns the next provider's answer, failing over until one works.
	one := func() (*result, error) {
		for {
			p, ok := take()
			if !ok {
				mu.Lock()
				defer mu.Unlock()
				return nil, fmt.Errorf("no provider of segment %d answered (%d tried, %d attempts): %v", s.Index, len(provs), len(run.Failures), run.Failures)
			}
			att, out, err := o.attempt(ctx, p, s, in, req)
			mu.Lock()
			run.KeyBytes += att.keyBytes
			if err != nil {
				line := fmt.Sprintf("worker %s: %v", p.ID, err)
				run.Failures = append(run.Failures, line)
				var we *WorkerError
				then := "trying another provider"
				if !errors.As(err, &we) && ctx.Err() == nil && !retried[p.ID] {
					retried[p.ID] = true
					again = append(again, p)
					then += " (this one again after the others)"
				}
				o.log.Printf("segment %d request %s: %s; %s", s.Index, req, line, then)
			}
			mu.Unlock()
			if err == nil {
				return &result{p.ID, out, att}, nil
			}
		}
	}
	if o.opts.Redundancy < 2 {
		first, err := one()
		if err != nil {
			return nil, err
		}
		run.set(first)
		return first.out, nil
	}
	// Two workers at once, each failing over on its own.
	var first, second *result
	var err1, err2 error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); first, err1 = one() }()
	go func() { defer wg.Done(); second, err2 = one() }()
	wg.Wait()
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("redundancy 2: %w", err)
	}
	run.set(first)
	d12, tol, err := o.compare(s, first.out, second.out, n)
	if err != nil {
		return nil, err
	}
	if d12 <= tol {
		run.Checked = []peer.ID{second.worker}
		return first.out, nil
	}
	o.log.Printf("segment %d: workers %s and %s disagree (max |difference| %.3e > tolerance %.3e); asking a third", s.Index, first.worker, second.worker, d12, tol)
	third, err := one()
	if err != nil {
		return nil, fmt.Errorf("segment %d: workers %s and %s disagree (max |difference| %.3e > tolerance %.3e) and no third provider settles it: one of them lies or is faulty",
			s.Index, first.worker, second.worker, d12, tol)
	}
	d13, _, err := o.compare(s, first.out, third.out, n)
	if err != nil {
		return nil, err
	}
	d23, _, err := o.compare(s, second.out, third.out, n)
	if err != nil {
		return nil, err
	}
	switch {
	case d13 <= tol:
		run.Checked, run.Liar = []peer.ID{third.worker}, second.worker
	case d23 <= tol:
		run.set(second)
		run.Checked, run.Liar = []peer.ID{third.worker}, first.worker
		first = second
	default:
		return nil, fmt.Errorf("segment %d: workers %s, %s and %s all disagree", s.Index, first.worker, second.worker, third.worker)
	}
	o.log.Printf("segment %d: worker %s LIES (or is faulty): its result differs from %s and %s beyond the plan's error bound", s.Index, run.Liar, run.Worker, run.Checked[0])
	return first.out, nil
}

// compare decrypts two answers to a segment and returns the largest
// difference over its outputs and the tolerance: twice the largest error
// bound the plan predicts for them (each answer may be off by the bound).
func (o *Owner) compare(s *segment.Segment, a, b map[string][]*ckks.Ciphertext, n int) (diff, tol float64, err error) {
	sc := o.per[s.Index].client
	p := s.Program
	for _, io := range p.Outputs {
		tol = math.Max(tol, 2*p.Values[io.Value].Bound)
		x, err := sc.Decrypt(io.Name, a[io.Name], n)
		if err != nil {
			return 0, 0, err
		}
		y, err := sc.Decrypt(io.Name, b[io.Name], n)
		if err != nil {
			return 0, 0, err
		}
		for i := range x.Float {
			diff = math.Max(diff, math.Abs(x.Float[i]-y.Float[i]))
		}
	}
	return diff, tol, nil
}

// preferUploaded moves the providers that already hold the segment's keys
// to the front (keeping the order otherwise), so that a session is reused.
func (o *Owner) preferUploaded(provs []peer.AddrInfo, index int) []peer.AddrInfo {
	hash := o.per[index].hash
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(provs))
	for _, p := range provs {
		if o.holders[p.ID][hash] {
			out = append(out, p)
		}
	}
	for _, p := range provs {
		if !o.holders[p.ID][hash] {
			out = append(out, p)
		}
	}
	return out
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// attempt is one try of a segment on one worker.
type attempt struct {
	wall, eval               time.Duration
	keyBytes, sent, received int64
}

// attempt uploads the segment's keys to p if it lacks them, then sends the
// inputs and reads the outputs, within the attempt limit, giving up when
// the worker stays silent for the timeout.
func (o *Owner) attempt(ctx context.Context, p peer.AddrInfo, s *segment.Segment, in map[string][]*ckks.Ciphertext, req string) (attempt, map[string][]*ckks.Ciphertext, error) {
	var att attempt
	ctx, cancel := context.WithTimeout(ctx, o.opts.AttemptLimit)
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, o.opts.Timeout)
	err := o.host.Connect(cctx, p)
	ccancel()
	if err != nil {
		return att, nil, err
	}
	for try := 0; ; try++ {
		kb, err := o.ensureKeys(ctx, p.ID, s)
		att.keyBytes += kb
		if err != nil {
			return att, nil, err
		}
		out, err := o.evaluate(ctx, p.ID, s, in, req, &att)
		var we *WorkerError
		if try == 0 && errors.As(err, &we) && strings.HasPrefix(we.Msg, unknownKeys) {
			// The worker evicted our keys from its cache: upload again.
			o.mu.Lock()
			delete(o.uploaded[p.ID], o.per[s.Index].hash)
			delete(o.holders[p.ID], o.per[s.Index].hash)
			o.mu.Unlock()
			continue
		}
		return att, out, err
	}
}

// evaluate sends one evaluation request to worker w and reads the outputs.
func (o *Owner) evaluate(ctx context.Context, w peer.ID, s *segment.Segment, in map[string][]*ckks.Ciphertext, req string, att *attempt) (map[string][]*ckks.Ciphertext, error) {
	start := time.Now()
	hdr := &Header{Op: "eval", Plan: o.planID, Segment: s.Index, Keys: o.per[s.Index].hash, Request: req, Token: o.opts.Token}
	for _, io := range s.Program.Inputs {
		hdr.Inputs = append(hdr.Inputs, Tensor{Name: io.Name, Count: len(in[io.Name])})
	}
	out := map[string][]*ckks.Ciphertext{}
	err := o.exchange(ctx, w, func(bw *bufio.Writer) error {
		if err := writeHeader(bw, hdr); err != nil {
			return err
		}
		for _, io := range s.Program.Inputs {
			for _, ct := range in[io.Name] {
				b, err := ct.MarshalBinary()
				if err != nil {
					return err
				}
				att.sent += int64(len(b))
				if err := writeFrame(bw, FrameCiphertext, b); err != nil {
					return err
				}
			}
		}
		return writeFrame(bw, FrameEnd, nil)
	}, func(r *bufio.Reader) error {
		h, err := readReply(r)
		if err != nil {
			return err
		}
		if h.Status != "ok" || len(h.Outputs) != len(s.Program.Outputs) {
			return fmt.Errorf("unexpected reply %q with %d outputs", h.Status, len(h.Outputs))
		}
		att.eval = time.Duration(h.EvalMillis) * time.Millisecond
		lanes := len(in[s.Program.Inputs[0].Name])
		sc := o.per[s.Index].client
		for i, t := range h.Outputs {
			io := s.Program.Outputs[i]
			limits := Limits{FrameCiphertext: ctLimitAt(s.Program, s.Program.Values[io.Value].Level)}
			if t.Name != io.Name || t.Count != lanes/max(1, inputSize(s.Program))*outputSize(s.Program, i) {
				return fmt.Errorf("reply announces output %q with %d ciphertexts, want %q", t.Name, t.Count, io.Name)
			}
			cts := make([]*ckks.Ciphertext, t.Count)
			for k := range cts {
				_, payload, err := readFrame(r, limits)
				if err != nil {
					return fmt.Errorf("output %q ciphertext %d: %w", t.Name, k, err)
				}
				att.received += int64(len(payload))
				if cts[k], err = sc.UnmarshalCiphertext(payload); err != nil {
					return fmt.Errorf("output %q ciphertext %d: %w", t.Name, k, err)
				}
			}
			out[t.Name] = cts
		}
		if t, _, err := readFrame(r, Limits{FrameEnd: 0}); err != nil || t != FrameEnd {
			return fmt.Errorf("after the announced outputs: %v", err)
		}
		return nil
	})
	att.wall = time.Since(start)
	return out, err
}

// inputSize and outputSize are the ciphertexts per batch of a segment's
// first input and its output i: 1 in slot packing, the tensor's size in
// feature packing.
func inputSize(p *ckksir.Program) int {
	if p.Packing != ckksir.PackFeature {
		return 1
	}
	return p.Values[p.Inputs[0].Value].Layout.Size()
}

func outputSize(p *ckksir.Program, i int) int {
	if p.Packing != ckksir.PackFeature {
		return 1
	}
	return p.Values[p.Outputs[i].Value].Layout.Size()
}

// ensureKeys announces the segment's keys to the worker and uploads them
// when it lacks them; it returns the bytes uploaded.
func (o *Owner) ensureKeys(ctx context.Context, w peer.ID, s *segment.Segment) (int64, error) {
	ks := o.per[s.Index]
	o.mu.Lock()
	done := o.uploaded[w][ks.hash]
	o.mu.Unlock()
	if done {
		return 0, nil
	}
	var sent int64
	hdr := &Header{Op: "keys", Plan: o.planID, Segment: s.Index, Keys: ks.hash, KeyBytes: ks.size, Token: o.opts.Token}
	stream, err := o.open(ctx, w)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() { stream.Reset() }) // the attempt limit
	defer stop()
	bw := bufio.NewWriterSize(stream, 64<<10)
	r := bufio.NewReaderSize(stream, 64<<10)
	if err := reply(bw, hdr); err != nil {
		return 0, err
	}
	h, err := readReply(r)
	if err != nil {
		return 0, err
	}
	if h.Status == "send" {
		// The keys go out while the reply is read, so that a worker that
		// refuses them halfway (its disk full, say) is heard at once, not
		// after a write stalls for the silence timeout.
		err := o.converse(ctx, stream, r, func(bw *bufio.Writer) error {
			cw := &chunkWriter{w: bw}
			if err := ks.writeKeys(cw); err != nil {
				return err
			}
			if err := cw.flush(); err != nil {
				return err
			}
			return writeFrame(bw, FrameEnd, nil)
		}, func(r *bufio.Reader) error {
			h, err = readReply(r)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("uploading %d bytes of evaluation keys: %w", ks.size, err)
		}
		sent = ks.size
	}
	if h.Status != "have" && h.Status != "ready" {
		return sent, fmt.Errorf("unexpected reply %q to the evaluation keys", h.Status)
	}
	o.mu.Lock()
	if o.uploaded[w] == nil {
		o.uploaded[w] = map[string]bool{}
	}
	o.uploaded[w][ks.hash] = true
	if o.holders[w] == nil {
		o.holders[w] = map[string]bool{}
	}
	if !o.holders[w][ks.hash] {
		o.holders[w][ks.hash] = true
		o.saveHolders()
	}
	o.mu.Unlock()
	return sent, nil
}

// chunkWriter cuts a byte stream into key-chunk frames.
type chunkWriter struct {
	w   io.Writer
	buf []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), KeyChunkBytes-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == KeyChunkBytes {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := writeFrame(c.w, FrameKeys, c.buf)
	c.buf = c.buf[:0]
	return err
}

// readReply reads a reply header, turning an error reply into an error.
func readReply(r *bufio.Reader) (*Header, error) {
	if err := skipProgress(r); err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	h, err := readHeader(r)
	if err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	if h.Status == "error" {
		return nil, &WorkerError{Msg: h.Error}
	}
	return h, nil
}

// WorkerError is a refusal a worker sent back.
type WorkerError struct{ Msg string }

func (e *WorkerError) Error() string { return "the worker refused: " + e.Msg }

// tapWriter passes every write to the owner's tap.
type tapWriter struct {
	w   io.Writer
	tap func(peer.ID, []byte)
	p   peer.ID
}

func (t *tapWriter) Write(b []byte) (int, error) {
	t.tap(t.p, b)
	return t.w.Write(b)
}

// open opens a protocol stream to w whose reads and writes each get the
// silence timeout (see silentStream); the attempt's context resets it.
func (o *Owner) open(ctx context.Context, w peer.ID) (network.Stream, error) {
	nctx, cancel := context.WithTimeout(ctx, o.opts.Timeout)
	s, err := o.host.NewStream(nctx, w, ProtocolID)
	cancel()
	if err != nil {
		return nil, err
	}
	var st network.Stream = &silentStream{Stream: s, timeout: o.opts.Timeout}
	if o.opts.Tap != nil {
		st = &tappedStream{Stream: st, tap: &tapWriter{w: st, tap: o.opts.Tap, p: w}}
	}
	return st, nil
}

// silentStream sets a stream's deadline before each read and write to the
// silence timeout from then: a transfer or an evaluation may take any
// time as long as bytes (a worker's progress frames) keep coming.
type silentStream struct {
	network.Stream
	timeout time.Duration
}

func (s *silentStream) Read(b []byte) (int, error) {
	s.Stream.SetReadDeadline(time.Now().Add(s.timeout))
	return s.Stream.Read(b)
}

func (s *silentStream) Write(b []byte) (int, error) {
	s.Stream.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.Stream.Write(b)
}

// tappedStream is a stream whose writes go through the tap.
type tappedStream struct {
	network.Stream
	tap *tapWriter
}

func (t *tappedStream) Write(b []byte) (int, error) { return t.tap.Write(b) }

// exchange opens a stream to worker w, sends a request and reads the reply
// (see converse).
func (o *Owner) exchange(ctx context.Context, w peer.ID, send func(*bufio.Writer) error, recv func(*bufio.Reader) error) error {
	s, err := o.open(ctx, w)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() }) // the attempt limit
	defer stop()
	return o.converse(ctx, s, bufio.NewReaderSize(s, 64<<10), send, recv)
}

// converse sends a request on s (written concurrently, so that an early
// error reply is read even while the request is still going out) and reads
// the reply from r, s's reader. The caller resets s when ctx ends.
func (o *Owner) converse(ctx context.Context, s network.Stream, r *bufio.Reader, send func(*bufio.Writer) error, recv func(*bufio.Reader) error) error {
	sendErr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(s, 64<<10)
		err := send(bw)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = s.CloseWrite()
		}
		sendErr <- err
	}()
	rerr := recv(r)
	var we *WorkerError
	if errors.As(rerr, &we) {
		s.Reset()
		<-sendErr
		return rerr
	}
	if rerr != nil {
		s.Reset()
		if serr := <-sendErr; serr != nil && ctx.Err() == nil {
			return fmt.Errorf("%w (sending: %v)", rerr, serr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v: the worker stalled)", rerr, ctx.Err())
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			return fmt.Errorf("%w (the worker sent nothing for %v: stalled or dead)", rerr, o.opts.Timeout)
		}
		return rerr
	}
	return <-sendErr
}
