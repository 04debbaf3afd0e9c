package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ciphercut/ciphercut/runtime/segment"
)

// TestRefusals sends a worker malformed and unauthorized requests and
// checks that each gets an error reply naming the problem, and that the
// worker still serves a good request afterwards.
func TestRefusals(t *testing.T) {
	f := mlp(t)
	oh := ownerHost(t)
	c, err := StartCluster(context.Background(), [][]*segment.Shard{{f.shards[0]}}, WorkerOptions{Allow: []peer.ID{oh.ID()},
		CacheDir: t.TempDir(), MemoryBudget: 8 << 20, Log: logger(t, "worker: ")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := c.Bootstrap()[0]
	owner, _ := newOwner(t, oh, StaticProviders(nil, []peer.AddrInfo{w}), f, OwnerOptions{Timeout: time.Minute})
	ctx := context.Background()
	if err := oh.Connect(ctx, w); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.ensureKeys(ctx, w.ID, f.segs[0]); err != nil {
		t.Fatal(err)
	}
	cts, err := owner.client.Encrypt(f.prog.Inputs[0].Name, f.x)
	if err != nil {
		t.Fatal(err)
	}
	good, err := cts[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	in := f.segs[0].Program.Inputs[0].Name
	evalHeader := func() *Header {
		return &Header{Op: "eval", Plan: f.planID, Segment: 0, Keys: owner.per[0].hash, Request: "test",
			Inputs: []Tensor{{Name: in, Count: 1}}}
	}
	frame := func(typ byte, payload []byte) []byte {
		var b bytes.Buffer
		writeFrame(&b, typ, payload)
		return b.Bytes()
	}
	header := func(h *Header) []byte {
		var b bytes.Buffer
		writeHeader(&b, h)
		return b.Bytes()
	}
	oversized := make([]byte, frameHeaderSize)
	oversized[0] = FrameCiphertext
	binary.LittleEndian.PutUint32(oversized[1:], 1<<31)
	unknownKeys := evalHeader()
	unknownKeys.Keys = strings.Repeat("ab", 32)
	wrongInput := evalHeader()
	wrongInput.Inputs[0].Name = "nope"
	tooMany := evalHeader()
	tooMany.Inputs[0].Count = 100
	cases := []struct {
		name string
		send []byte
		want string
	}{
		{"truncated ciphertext", append(header(evalHeader()), frame(FrameCiphertext, good[:len(good)/2])...), "truncated"},
		{"oversized message", append(header(evalHeader()), oversized...), "the limit is"},
		{"garbage header", frame(FrameHeader, []byte("{not json")), "malformed header"},
		{"oversized header", append([]byte{FrameHeader, 0, 0, 0, 1}, make([]byte, 64)...), "header frame of 16777216 bytes"},
		{"unknown frame type", frame('X', nil), "unknown frame type"},
		{"unknown keys", header(unknownKeys), "unknown evaluation keys"},
		{"wrong input", header(wrongInput), `the request sends "nope"`},
		{"over the memory budget", header(tooMany), "exceeds this worker's memory budget"},
		{"not a ciphertext", append(header(evalHeader()), frame(FrameCiphertext, []byte("hello"))...), "not a serialized ciphertext"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := owner.exchange(ctx, w.ID, func(bw *bufio.Writer) error {
				_, err := bw.Write(tc.send)
				return err
			}, func(r *bufio.Reader) error {
				_, err := readReply(r)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}

	// An unauthorized peer.
	stranger := ownerHost(t)
	intruder, _ := newOwner(t, stranger, StaticProviders(nil, []peer.AddrInfo{w}), f, OwnerOptions{Log: logger(t, "intruder: ")})
	if _, _, err := intruder.Infer(ctx, f.x); err == nil || !strings.Contains(err.Error(), "is not allowed") {
		t.Errorf("unauthorized peer: error %v, want a refusal", err)
	} else {
		t.Log(err)
	}

	// The worker still serves the good request.
	err = owner.exchange(ctx, w.ID, func(bw *bufio.Writer) error {
		bw.Write(header(evalHeader()))
		bw.Write(frame(FrameCiphertext, good))
		return writeFrame(bw, FrameEnd, nil)
	}, func(r *bufio.Reader) error {
		h, err := readReply(r)
		if err == nil && h.Status != "ok" {
			t.Errorf("status %q", h.Status)
		}
		return err
	})
	if err != nil {
		t.Fatalf("good request after the bad ones: %v", err)
	}
}

// TestKeyCache checks content addressing, hash verification and LRU
// eviction within the quota.
func TestKeyCache(t *testing.T) {
	c, err := NewKeyCache(t.TempDir(), 250)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b byte) string {
		data := bytes.Repeat([]byte{b}, 100)
		h := sha256hex(data)
		if err := c.Store(h, 100, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := put('a')
	time.Sleep(20 * time.Millisecond)
	b := put('b')
	time.Sleep(20 * time.Millisecond)
	c.Has(a) // a is now more recent than b
	time.Sleep(20 * time.Millisecond)
	d := put('c')
	if !c.Has(a) || c.Has(b) || !c.Has(d) {
		t.Errorf("after eviction: a %v b %v c %v; want b evicted", c.Has(a), c.Has(b), c.Has(d))
	}
	if c.Size() > 250 {
		t.Errorf("cache holds %d bytes over its quota 250", c.Size())
	}
	if err := c.Store(sha256hex([]byte("x")), 1, strings.NewReader("y")); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Errorf("mismatched hash: %v", err)
	}
	if err := c.Store(sha256hex([]byte("xy")), 2, strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "announced 2") {
		t.Errorf("short upload: %v", err)
	}
	if err := c.Store(a, 1000, strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "quota") {
		t.Errorf("over quota: %v", err)
	}
	if err := c.Store("../../etc/passwd", 1, strings.NewReader("x")); err == nil {
		t.Error("a path as hash accepted")
	}
}

// TestKeyCacheMakesRoomOnDisk gives the cache a disk of 350 bytes and a
// larger quota: an upload evicts the least recently used keys until it
// fits on the disk, and one that cannot fit is refused before it starts.
func TestKeyCacheMakesRoomOnDisk(t *testing.T) {
	c, err := NewKeyCache(t.TempDir(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	c.free = func(string) int64 { return 350 - c.Size() }
	put := func(b byte, n int) (string, error) {
		data := bytes.Repeat([]byte{b}, n)
		h := sha256hex(data)
		time.Sleep(20 * time.Millisecond) // distinct modification times
		return h, c.Store(h, int64(n), bytes.NewReader(data))
	}
	var old []string
	for _, b := range []byte("abc") {
		h, err := put(b, 100)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, h)
	}
	d, err := put('d', 150)
	if err != nil {
		t.Fatalf("150 bytes beside 300 on a 350-byte disk: %v", err)
	}
	if c.Has(old[0]) || !c.Has(old[1]) || !c.Has(old[2]) || !c.Has(d) {
		t.Errorf("after making room: a %v b %v c %v d %v; want only a evicted", c.Has(old[0]), c.Has(old[1]), c.Has(old[2]), c.Has(d))
	}
	if err := c.MakeRoom(400, ""); err == nil || !strings.Contains(err.Error(), "do not fit on its disk") {
		t.Errorf("400 bytes on a 350-byte disk: error %v, want a refusal", err)
	}
	if !c.Has(old[1]) || !c.Has(old[2]) || !c.Has(d) {
		t.Error("a refused upload evicted keys")
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestKeyUploadRefusedHalfway has a worker ask for the evaluation keys,
// then refuse them (as one whose disk fills up does) and stop reading:
// the data owner must report the worker's reason while still uploading,
// not stall until its silence timeout.
func TestKeyUploadRefusedHalfway(t *testing.T) {
	f := mlp(t)
	wh := ownerHost(t)
	held := make(chan struct{})
	t.Cleanup(func() { close(held) })
	wh.SetStreamHandler(ProtocolID, func(s network.Stream) {
		r := bufio.NewReader(s)
		bw := bufio.NewWriter(s)
		if _, err := readHeader(r); err != nil {
			s.Reset()
			return
		}
		reply(bw, &Header{Status: "send"})
		reply(bw, &Header{Status: "error", Error: "key cache: no space left on device"})
		<-held // neither reads on nor closes the stream
		s.Reset()
	})
	w := peer.AddrInfo{ID: wh.ID(), Addrs: wh.Addrs()}
	oh := ownerHost(t)
	owner, _ := newOwner(t, oh, StaticProviders(nil, []peer.AddrInfo{w}), f, OwnerOptions{})
	if size := owner.per[0].size; size < KeyChunkBytes { // a stream's window starts at 256 KiB
		t.Fatalf("segment 0's keys are %d bytes: too few to outlast the stream's window", size)
	}
	ctx := context.Background()
	if err := oh.Connect(ctx, w); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := owner.ensureKeys(ctx, w.ID, f.segs[0])
		done <- err
	}()
	select {
	case err := <-done:
		var we *WorkerError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("error %v, want the worker's refusal", err)
		}
		t.Log(err)
	case <-time.After(2 * time.Minute): // the silence timeout is 10 minutes
		t.Fatal("the data owner still uploads 2 minutes after the worker refused its keys")
	}
}
