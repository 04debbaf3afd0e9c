// Package ckks executes ckksir programs under CKKS homomorphic encryption
// with Lattigo v5. It is the only package of ciphercut that imports Lattigo:
// its API speaks ckksir and ir, and every Lattigo object (keys, ciphertexts)
// sits behind an opaque type.
//
// The data owner builds a Client, which draws and keeps the secret key, and
// hands the workers the public EvaluationKeys it generates for a program. A
// worker's Evaluator runs the program on ciphertexts; the Client encrypts
// inputs and decrypts outputs. Ciphertexts and evaluation keys serialize for
// the network. Neither side may see its program modified after construction.
//
// Levels follow ckksir exactly (checked after every instruction): a linear
// transformation, a product or a constant product consumes one level, a
// polynomial Poly.Depth() levels: ceil(log2(d+1)) for Lattigo's
// Paterson-Stockmeyer evaluation plus one for the change of variable when
// the interval is not [-1, 1].
//
// A bootstrap (ckksir.OpBootstrap) refreshes a ciphertext to the top of the
// program's chain, which is the residual chain of Lattigo's bootstrapping
// parameters (see bootstrap.go and BootstrapExtraLogQP); the program's
// secret key then has the Hamming weight ckksir.BootParams.SecretWeight, and
// the evaluation keys carry the bootstrapping keys.
//
// Scales are planned once, exactly: instructions with a plaintext operand
// (linear, mul-const) and polynomials return to the default scale 2^LogScale;
// a ciphertext product leaves the scale s0*s1/q (q the prime rescaled away),
// which differs from the default by the relative gap between q and
// 2^LogScale (about 1e-7). An add whose operands' scales differ (such a
// product plus a default-scale value) therefore errs by that relative amount
// of the smaller-scale operand; every other instruction is exact up to CKKS
// noise.
package ckks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/he/hefloat/bootstrapping"
)

// Client is the data owner's side: it holds the secret key of one program's
// parameters and never exposes it. Its methods are safe for concurrent use.
type Client struct {
	plan *plan
	sk   *rlwe.SecretKey
	ecd  *hefloat.Encoder
	enc  *rlwe.Encryptor
	dec  *rlwe.Decryptor
}

// NewClient verifies the program, instantiates its CKKS parameters and draws
// a fresh secret key (uniform ternary).
func NewClient(p *ckksir.Program) (*Client, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	return newClient(pl, nil)
}

// newClient builds a client on pl with the secret key sk, or a fresh one
// when sk is nil.
func newClient(pl *plan, sk *rlwe.SecretKey) (*Client, error) {
	c := &Client{plan: pl, sk: sk}
	err := protect("key generation", func() error {
		if c.sk == nil {
			c.sk = rlwe.NewKeyGenerator(pl.params).GenSecretKeyNew()
		}
		c.ecd = hefloat.NewEncoder(pl.params)
		c.enc = rlwe.NewEncryptor(pl.params, c.sk)
		c.dec = rlwe.NewDecryptor(pl.params, c.sk)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// EvaluationKeys are the public keys a worker needs to run one program: the
// relinearization key (when the program multiplies ciphertexts or evaluates
// a polynomial of degree 2 or more), the Galois keys of exactly the
// rotations its linear transformations use and, when it bootstraps, the
// bootstrapping keys.
type EvaluationKeys struct {
	set  *rlwe.MemEvaluationKeySet
	boot *bootstrapping.EvaluationKeys // nil unless the program bootstraps
}

// EvaluationKeys generates the program's evaluation keys, calling progress
// (when not nil) after each key with the number done and the total
// (bootstrapping keys included). Keys are generated in parallel on all
// cores; progress calls are serialized.
func (c *Client) EvaluationKeys(progress func(done, total int)) (*EvaluationKeys, error) {
	pl := c.plan
	galEls := pl.galEls
	n := len(galEls)
	if pl.needRelin {
		n++
	}
	total := n + pl.bootKeyCount()
	var (
		mu   sync.Mutex
		done int
	)
	tick := func() {
		if progress == nil {
			return
		}
		mu.Lock()
		done++
		progress(done, total)
		mu.Unlock()
	}
	set := &rlwe.MemEvaluationKeySet{GaloisKeys: map[uint64]*rlwe.GaloisKey{}}
	gks := make([]*rlwe.GaloisKey, len(galEls))
	at := func(g uint64) rlwe.EvaluationKeyParameters {
		levelQ, levelP := pl.keyLevel(g), pl.params.MaxLevelP()
		return rlwe.EvaluationKeyParameters{LevelQ: &levelQ, LevelP: &levelP}
	}
	err := generateKeys(pl.params, n, func(kgen *rlwe.KeyGenerator, i int) {
		if i == len(galEls) {
			set.RelinearizationKey = kgen.GenRelinearizationKeyNew(c.sk, at(0))
			return
		}
		gks[i] = kgen.GenGaloisKeyNew(galEls[i], c.sk, at(galEls[i]))
	}, tick)
	if err != nil {
		return nil, err
	}
	for _, gk := range gks {
		set.GaloisKeys[gk.GaloisElement] = gk
	}
	keys := &EvaluationKeys{set: set}
	if pl.needBoot {
		if keys.boot, err = c.genBootKeys(tick); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// generateKeys runs gen(kgen, i) for i in [0, n) on all cores, each worker
// with its own key generator for params, calling tick after each.
func generateKeys(params rlwe.ParameterProvider, n int, gen func(kgen *rlwe.KeyGenerator, i int), tick func()) error {
	return parallelFor(n, "evaluation key generation", func() *rlwe.KeyGenerator { return rlwe.NewKeyGenerator(params) },
		func(kgen *rlwe.KeyGenerator, i int) error {
			gen(kgen, i)
			tick()
			return nil
		})
}

// Count is the number of Galois (rotation) keys.
func (k *EvaluationKeys) Count() (galois int) { return len(k.set.GaloisKeys) }

// Bytes is the serialized size in bytes (what MarshalBinary returns).
func (k *EvaluationKeys) Bytes() int64 {
	return int64(len(evkMagic)+k.set.BinarySize()) + bootKeysSize(k.boot)
}

// HasBootstrapping reports whether the keys include bootstrapping keys.
func (k *EvaluationKeys) HasBootstrapping() bool { return k.boot != nil }

var (
	evkMagic = []byte("ccEVK\x01")
	ctMagic  = []byte("ccCT\x01")
)

// MarshalBinary serializes the keys; UnmarshalEvaluationKeys reads them back.
func (k *EvaluationKeys) MarshalBinary() ([]byte, error) {
	return marshalWithMagic(evkMagic, k.Bytes(), keyStream{k}, "evaluation keys")
}

// readStrict decodes data into dst through a bufio.Reader, whose Peek
// reports a short read as an error. Lattigo's own UnmarshalBinary reads from
// a buffer whose Peek returns short slices silently, and on truncated data
// its slice reader recurses until the goroutine stack overflows (a fatal
// error no recover can catch); found by FuzzUnmarshalCiphertext.
func readStrict(dst io.ReaderFrom, data []byte) error {
	n, err := dst.ReadFrom(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return err
	}
	if n != int64(len(data)) {
		return fmt.Errorf("%d trailing bytes", int64(len(data))-n)
	}
	return nil
}

// marshalWithMagic writes magic followed by w's serialization.
func marshalWithMagic(magic []byte, size int64, w io.WriterTo, what string) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(size))
	buf.Write(magic)
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("ckks: serializing %s: %w", what, err)
	}
	return buf.Bytes(), nil
}

// Ciphertext is one CKKS ciphertext: Batch samples of one program value.
type Ciphertext struct {
	ct *rlwe.Ciphertext
}

// Level is the number of rescales the ciphertext can still take.
func (c *Ciphertext) Level() int { return c.ct.Level() }

// Bytes is the serialized size in bytes (what MarshalBinary returns).
func (c *Ciphertext) Bytes() int64 { return int64(len(ctMagic) + c.ct.BinarySize()) }

// MarshalBinary serializes the ciphertext.
func (c *Ciphertext) MarshalBinary() ([]byte, error) {
	return marshalWithMagic(ctMagic, c.Bytes(), c.ct, "a ciphertext")
}

// UnmarshalCiphertext reads a ciphertext written by MarshalBinary for this
// client's program. The layout is validated against the program's ring
// before anything is allocated for it (see pl.unmarshalCiphertext).
func (c *Client) UnmarshalCiphertext(data []byte) (*Ciphertext, error) {
	return c.plan.unmarshalCiphertext(data)
}

// UnmarshalCiphertext reads a ciphertext written by MarshalBinary for this
// evaluator's program, validated as Client.UnmarshalCiphertext does.
func (e *Evaluator) UnmarshalCiphertext(data []byte) (*Ciphertext, error) {
	return e.plan.unmarshalCiphertext(data)
}

// findIO returns the value bound to a program input or output name.
func findIO(ios []ckksir.IO, name, kind string) (int, error) {
	for _, io := range ios {
		if io.Name == name {
			return io.Value, nil
		}
	}
	names := make([]string, len(ios))
	for i, io := range ios {
		names[i] = io.Name
	}
	return 0, fmt.Errorf("ckks: the program has no %s %q (it has %q)", kind, name, names)
}

// Encrypt encrypts the samples of x (stacked along its leading axis; each
// sample of the input's per-sample shape) for the program input name:
// ceil(n/Batch) ciphertexts, sample s in block s%Batch of ciphertext
// s/Batch, at the input value's level (the program's max level) and the
// default scale. Slots outside the tensor are zero. The blocks of the last
// ciphertext past sample n-1 repeat its samples (see sampleInBlock). In
// feature packing it returns ceil(n/Slots)·K ciphertexts instead (K the
// per-sample size), batch-major: ciphertext b·K+k holds element k of
// samples b·Slots to (b+1)·Slots-1, slot s holding sample b·Slots+s (past
// n repeating the batch's samples the same way).
func (c *Client) Encrypt(name string, x *ir.Tensor) ([]*Ciphertext, error) {
	p := c.plan.prog
	id, err := findIO(p.Inputs, name, "input")
	if err != nil {
		return nil, err
	}
	lay := p.Values[id].Layout
	if x == nil {
		return nil, fmt.Errorf("ckks: input %q: nil tensor", name)
	}
	if x.DType == ir.Undefined {
		return nil, fmt.Errorf("ckks: input %q: cannot encrypt a %s tensor", name, x.DType)
	}
	if err := x.Validate(); err != nil {
		return nil, fmt.Errorf("ckks: input %q: %w", name, err)
	}
	if len(x.Shape) != len(lay.Shape)+1 || !x.Shape[1:].Equal(lay.Shape) {
		return nil, fmt.Errorf("ckks: input %q: tensor of shape %v, want [n]+%v (samples stacked along the leading axis)", name, x.Shape, lay.Shape)
	}
	n := x.Shape[0]
	if n == 0 {
		return nil, fmt.Errorf("ckks: input %q: no samples", name)
	}
	if p.Packing == ckksir.PackFeature {
		return c.encryptFeature(name, x, id)
	}
	data := x.Floats()
	size := lay.Size()
	bs, batch := p.BlockSize, p.Batch
	level := p.Values[id].Level
	cts := make([]*Ciphertext, (n+batch-1)/batch)
	err = parallel(len(cts), func(ecd *hefloat.Encoder, enc *rlwe.Encryptor, _ *rlwe.Decryptor, k int) error {
		slots := make([]float64, c.plan.slots)
		for b := range batch {
			s := sampleInBlock(k*batch, b, n)
			for k, x := range data[s*size : (s+1)*size] {
				slots[b*bs+lay.Slot(k)] = x
			}
		}
		pt := hefloat.NewPlaintext(c.plan.params, level)
		if err := ecd.Encode(slots, pt); err != nil {
			return err
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			return err
		}
		cts[k] = &Ciphertext{ct: ct}
		return nil
	}, c)
	if err != nil {
		return nil, fmt.Errorf("ckks: encrypting input %q: %w", name, err)
	}
	return cts, nil
}

// sampleInBlock returns the sample that block b of the ciphertext whose first
// sample is first holds, for n samples in all. Past the last sample the
// blocks repeat the ciphertext's own samples rather than hold zeros: the
// plan's polynomials and bootstraps are valid on the calibrated input
// range only, and an all-zero sample can fall far outside it (a softmax
// sum or a variance near zero sends the reciprocal or inverse square root
// iterations to 1e39) and, through the bootstraps, corrupt every sample of
// the ciphertext. Decrypt never reads these blocks.
func sampleInBlock(first, b, n int) int {
	if s := first + b; s < n {
		return s
	}
	return first + b%(n-first)
}

// Decrypt decrypts the ciphertexts of the program output name (as Run
// returns them) and returns its first n samples stacked: a Float32 tensor of
// shape [n]+the output's per-sample shape. It expects ceil(n/Batch)
// ciphertexts (feature packing: ceil(n/Slots)·K, ordered as Encrypt
// returns them).
func (c *Client) Decrypt(name string, cts []*Ciphertext, n int) (*ir.Tensor, error) {
	p := c.plan.prog
	id, err := findIO(p.Outputs, name, "output")
	if err != nil {
		return nil, err
	}
	if p.Packing == ckksir.PackFeature {
		return c.decryptFeature(name, cts, n, id)
	}
	lay := p.Values[id].Layout
	bs, batch := p.BlockSize, p.Batch
	if n < 0 || len(cts) != (n+batch-1)/batch {
		return nil, fmt.Errorf("ckks: output %q: %d ciphertexts for %d samples, want %d (%d samples per ciphertext)", name, len(cts), n, (n+batch-1)/batch, batch)
	}
	for k, ct := range cts {
		if ct == nil || ct.ct == nil {
			return nil, fmt.Errorf("ckks: output %q: ciphertext %d is nil", name, k)
		}
		if err := c.plan.checkCiphertext(ct.ct); err != nil {
			return nil, fmt.Errorf("ckks: output %q: ciphertext %d: %w", name, k, err)
		}
	}
	size := lay.Size()
	shape := append(ir.Shape{n}, lay.Shape...)
	out := ir.NewFloat(shape, nil)
	err = parallel(len(cts), func(ecd *hefloat.Encoder, _ *rlwe.Encryptor, dec *rlwe.Decryptor, k int) error {
		pt := dec.DecryptNew(cts[k].ct)
		slots := make([]float64, c.plan.slots)
		if err := ecd.Decode(pt, slots); err != nil {
			return err
		}
		for b := 0; b < batch && k*batch+b < n; b++ {
			s := k*batch + b
			for k := range size {
				out.Float[s*size+k] = slots[b*bs+lay.Slot(k)]
			}
		}
		return nil
	}, c)
	if err != nil {
		return nil, fmt.Errorf("ckks: decrypting output %q: %w", name, err)
	}
	return out, nil
}

// checkCiphertext checks that ct belongs to the plan's ring and is a
// relinearized ciphertext in the NTT domain.
func (pl *plan) checkCiphertext(ct *rlwe.Ciphertext) error {
	if ct.MetaData == nil || len(ct.Value) != 2 {
		return fmt.Errorf("malformed ciphertext (degree %d)", len(ct.Value)-1)
	}
	if ct.Value[0].N() != pl.params.N() || ct.Value[1].N() != pl.params.N() {
		return fmt.Errorf("ring degree %d, the program's parameters have %d", ct.Value[0].N(), pl.params.N())
	}
	if ct.Level() > pl.params.MaxLevel() || ct.Value[1].Level() != ct.Level() {
		return fmt.Errorf("level %d outside the program's modulus chain", ct.Level())
	}
	if !ct.IsNTT || ct.LogDimensions != pl.params.LogMaxDimensions() {
		return fmt.Errorf("ciphertext not in the program's slot encoding")
	}
	return nil
}

// parallel runs f(k) for k in [0, n) on up to NumCPU goroutines, each with
// its own copies of the client's encoder, encryptor and decryptor.
func parallel(n int, f func(*hefloat.Encoder, *rlwe.Encryptor, *rlwe.Decryptor, int) error, c *Client) error {
	workers := min(runtime.NumCPU(), n)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			errs[w] = recovered(func() error {
				ecd, enc, dec := c.ecd.ShallowCopy(), c.enc.ShallowCopy(), c.dec.ShallowCopy()
				for k := w; k < n; k += workers {
					if err := f(ecd, enc, dec, k); err != nil {
						return err
					}
				}
				return nil
			})
		}(w)
	}
	wg.Wait()
	return errors.Join(errs...)
}
