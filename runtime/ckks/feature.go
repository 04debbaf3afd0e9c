package ckks

// Feature-major packing (ckksir.PackFeature): slot s of every ciphertext is
// sample s of a batch of Slots samples, and a value of K elements per sample
// is K ciphertexts per batch. Ciphertext lists are batch-major: index
// b·K+k is element k of batch b. Linear instructions are plaintext-scalar
// multiply-accumulates, so no Galois key is needed.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// encryptFeature is Encrypt in feature packing; x has been checked.
func (c *Client) encryptFeature(name string, x *ir.Tensor, id int) ([]*Ciphertext, error) {
	v := c.plan.prog.Values[id]
	size, slots := v.Layout.Size(), c.plan.slots
	n := x.Shape[0]
	data := x.Floats()
	batches := (n + slots - 1) / slots
	cts := make([]*Ciphertext, batches*size)
	err := parallel(len(cts), func(ecd *hefloat.Encoder, enc *rlwe.Encryptor, _ *rlwe.Decryptor, i int) error {
		b, k := i/size, i%size
		buf := make([]float64, slots)
		for s := range slots {
			buf[s] = data[sampleInBlock(b*slots, s, n)*size+k]
		}
		pt := hefloat.NewPlaintext(c.plan.params, v.Level)
		if err := ecd.Encode(buf, pt); err != nil {
			return err
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			return err
		}
		cts[i] = &Ciphertext{ct: ct}
		return nil
	}, c)
	if err != nil {
		return nil, fmt.Errorf("ckks: encrypting input %q: %w", name, err)
	}
	return cts, nil
}

// decryptFeature is Decrypt in feature packing.
func (c *Client) decryptFeature(name string, cts []*Ciphertext, n, id int) (*ir.Tensor, error) {
	lay := c.plan.prog.Values[id].Layout
	size, slots := lay.Size(), c.plan.slots
	batches := (n + slots - 1) / slots
	if n < 0 || len(cts) != batches*size {
		return nil, fmt.Errorf("ckks: output %q: %d ciphertexts for %d samples, want %d (%d per batch of %d samples)",
			name, len(cts), n, batches*size, size, slots)
	}
	for k, ct := range cts {
		if ct == nil || ct.ct == nil {
			return nil, fmt.Errorf("ckks: output %q: ciphertext %d is nil", name, k)
		}
		if err := c.plan.checkCiphertext(ct.ct); err != nil {
			return nil, fmt.Errorf("ckks: output %q: ciphertext %d: %w", name, k, err)
		}
	}
	out := ir.NewFloat(append(ir.Shape{n}, lay.Shape...), nil)
	err := parallel(len(cts), func(ecd *hefloat.Encoder, _ *rlwe.Encryptor, dec *rlwe.Decryptor, i int) error {
		b, k := i/size, i%size
		buf := make([]float64, slots)
		if err := ecd.Decode(dec.DecryptNew(cts[i].ct), buf); err != nil {
			return err
		}
		for s := 0; s < slots && b*slots+s < n; s++ {
			out.Float[(b*slots+s)*size+k] = buf[s]
		}
		return nil
	}, c)
	if err != nil {
		return nil, fmt.Errorf("ckks: decrypting output %q: %w", name, err)
	}
	return out, nil
}

// runFeature is Run in feature packing: every input holds batches·K
// ciphertexts (batch-major, as Client.Encrypt returns them) for the same
// number of batches. Instructions run in program order; within one, every
// (batch, output ciphertext) pair is an independent job spread over all
// cores.
func (e *Evaluator) runFeature(inputs map[string][]*Ciphertext) (map[string][]*Ciphertext, error) {
	p, pl := e.plan.prog, e.plan
	size := func(v int) int { return p.Values[v].Layout.Size() }
	nb := -1
	vals := make([][]*rlwe.Ciphertext, len(p.Values))
	for _, in := range p.Inputs {
		cts, ok := inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("ckks: missing input %q", in.Name)
		}
		k := size(in.Value)
		if len(cts)%k != 0 || (nb >= 0 && len(cts) != nb*k) {
			return nil, fmt.Errorf("ckks: input %q has %d ciphertexts, want a multiple of its %d elements (the same number of batches for every input)", in.Name, len(cts), k)
		}
		nb = len(cts) / k
		v := p.Values[in.Value]
		vals[in.Value] = make([]*rlwe.Ciphertext, len(cts))
		for i, ct := range cts {
			if ct == nil || ct.ct == nil {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d is nil", in.Name, i)
			}
			if err := pl.checkCiphertext(ct.ct); err != nil {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d: %w", in.Name, i, err)
			}
			if ct.ct.Level() != v.Level {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d is at level %d, the program expects %d", in.Name, i, ct.ct.Level(), v.Level)
			}
			if d := relDiff(ct.ct.Scale, e.scales[in.Value]); d > 1e-9 {
				return nil, fmt.Errorf("ckks: input %q: ciphertext %d has scale 2^%.4f, the program expects 2^%.4f", in.Name, i,
					math.Log2(ct.ct.Scale.Float64()), math.Log2(e.scales[in.Value].Float64()))
			}
			vals[in.Value][i] = ct.ct
		}
	}
	for name := range inputs {
		if _, err := findIO(p.Inputs, name, "input"); err != nil {
			return nil, err
		}
	}
	if nb < 0 {
		nb = 1
	}
	outs := make(map[string][]*Ciphertext, len(p.Outputs))
	if nb == 0 {
		for _, o := range p.Outputs {
			outs[o.Name] = []*Ciphertext{}
		}
		return outs, nil
	}
	cpus := e.cpus
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	states := make([]*laneState, cpus)
	for w := range states {
		states[w] = e.state(1)
	}
	defer func() {
		for _, st := range states {
			e.release(st)
		}
	}()
	done := 0
	for i := range e.instrs {
		c := &e.instrs[i]
		k := size(c.ins.Out)
		out := make([]*rlwe.Ciphertext, nb*k)
		var (
			next   atomic.Int64
			failed atomic.Bool
			wg     sync.WaitGroup
		)
		workers := min(cpus, len(out))
		errs := make([]error, workers)
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for !failed.Load() {
					j := int(next.Add(1)) - 1
					if j >= len(out) {
						return
					}
					err := recovered(func() error {
						ct, err := e.execFeature(states[w], c, vals, j/k, j%k)
						if err != nil {
							return err
						}
						if ct.Level() != c.outLevel {
							return fmt.Errorf("output at level %d, the program expects %d", ct.Level(), c.outLevel)
						}
						if err := snapScale(ct, c.outScale); err != nil {
							return err
						}
						out[j] = ct
						return nil
					})
					if err != nil {
						if !errors.Is(err, errPlan) {
							err = fmt.Errorf("ckks: %s: %w", c.where, err)
						}
						errs[w] = err
						failed.Store(true)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if e.trace != nil {
			e.trace(i, time.Since(start))
		}
		vals[c.ins.Out] = out
		for _, a := range c.ins.In {
			if e.lastUse[a] == i {
				vals[a] = nil // let the garbage collector take it (inputs stay with the caller)
			}
		}
		if e.progress != nil {
			for range nb {
				done++
				e.progress(e.step(done, nb*len(e.instrs), i))
			}
		}
	}
	for _, o := range p.Outputs {
		cts := make([]*Ciphertext, len(vals[o.Value]))
		for i, ct := range vals[o.Value] {
			cts[i] = &Ciphertext{ct: ct}
		}
		outs[o.Name] = cts
	}
	return outs, nil
}

// execFeature computes output ciphertext r of batch b of one instruction.
func (e *Evaluator) execFeature(st *laneState, c *compiled, vals [][]*rlwe.Ciphertext, b, r int) (*rlwe.Ciphertext, error) {
	params := e.plan.params
	p := e.plan.prog
	ev := st.evals[0]
	ins := c.ins
	in := func(k, idx int) *rlwe.Ciphertext {
		return vals[ins.In[k]][b*p.Values[ins.In[k]].Layout.Size()+idx]
	}
	addBias := func(ct *rlwe.Ciphertext, vec []float64) error {
		if vec == nil || vec[r] == 0 {
			return nil
		}
		return ev.Add(ct, vec[r], ct)
	}
	// mac sums coefficient·input over terms at scale midScale, rescales once
	// and lands exactly on the output scale.
	mac := func(terms func(acc *rlwe.Ciphertext) error) (*rlwe.Ciphertext, error) {
		acc := hefloat.NewCiphertext(params, 1, c.outLevel+1)
		acc.Scale = c.midScale
		acc.IsNTT, acc.IsBatched, acc.LogDimensions = true, true, params.LogMaxDimensions()
		if err := terms(acc); err != nil {
			return nil, err
		}
		if err := ev.Rescale(acc, acc); err != nil {
			return nil, err
		}
		if err := snapScale(acc, c.outScale); err != nil {
			return nil, err
		}
		return acc, nil
	}
	switch ins.Op {
	case ckksir.OpLinear:
		acc, err := mac(func(acc *rlwe.Ciphertext) error {
			for k, m := range ins.Dense {
				row := m.Data[r*m.Cols : (r+1)*m.Cols]
				for col, v := range row {
					if v == 0 {
						continue
					}
					if err := ev.MulThenAdd(in(k, col), v, acc); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return acc, addBias(acc, ins.Bias)
	case ckksir.OpMulConst:
		return mac(func(acc *rlwe.Ciphertext) error {
			if ins.Vector == nil || ins.Vector[r] == 0 {
				return nil
			}
			return ev.MulThenAdd(in(0, r), ins.Vector[r], acc)
		})
	case ckksir.OpAddConst:
		out := in(0, r).CopyNew()
		return out, addBias(out, ins.Bias)
	case ckksir.OpAdd:
		out := hefloat.NewCiphertext(params, 1, min(in(0, r).Level(), in(1, r).Level()))
		return out, ev.Add(in(0, r), in(1, r), out)
	case ckksir.OpMul:
		out := hefloat.NewCiphertext(params, 1, min(in(0, r).Level(), in(1, r).Level()))
		if err := ev.MulRelin(in(0, r), in(1, r), out); err != nil {
			return nil, err
		}
		return out, ev.Rescale(out, out)
	case ckksir.OpPoly:
		return e.poly(st, c, in(0, r))
	case ckksir.OpBootstrap:
		return e.bootstrap(st, c, in(0, r))
	}
	return nil, fmt.Errorf("unknown op %s", ins.Op)
}
