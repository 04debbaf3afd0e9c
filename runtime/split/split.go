// Package split runs a split plan's stages in order, in one process: the
// data owner's plaintext stages (prefix, client-aided activations, suffix)
// with the reference interpreter, and each encrypted stage through a
// runtime/local session, whose client (secret key, encryption, decryption)
// stands for the data owner and whose evaluator (public evaluation keys
// only) for the worker. Every value passes between stages through the data
// owner, as plaintext; the worker sees only ciphertexts.
package split

import (
	"fmt"
	"math"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/plain"
)

// Stage is one stage to run.
type Stage struct {
	// Name labels the stage in errors and timings ("prefix", "encrypted
	// 2", ...).
	Name string
	// Inputs and Outputs are value names; Graph computes the outputs from
	// the inputs in plaintext (for an encrypted stage, its plaintext
	// reference); Program, when set, makes the stage encrypted.
	Inputs, Outputs []string
	Graph           *ir.Graph
	Program         *ckksir.Program
	// Bootstraps is the encrypted stage's bootstraps per ciphertext, for
	// the report (Program may be an interface without instructions).
	Bootstraps int
}

// Options control Run.
type Options struct {
	// Verify runs every encrypted stage's plaintext reference on the same
	// inputs and fails when an output leaves the program's error bound.
	// Measure does the same without failing: StageTiming.MaxError and
	// Bound report it (stages without a plaintext reference are skipped).
	Verify, Measure bool
	// NewSession starts the session of an encrypted stage (keys and
	// evaluator) when Runner is nil; nil means local.NewSession without
	// progress.
	NewSession func(*ckksir.Program) (*local.Session, error)
	// Runner, if set, runs the encrypted stages instead of an in-process
	// session: on remote workers, say (runtime/remote's SplitOwner). Every
	// other part of Run (order, plaintext stages, verification, report) is
	// the same.
	Runner Runner
}

// Runner runs the encrypted stage st (index: its position in the stages)
// on feeds, its inputs by name (samples stacked along the leading axis):
// it encrypts them, has them evaluated, decrypts the outputs and returns
// them by name, recording its times and bytes in tm (Setup, Timing, and
// for a remote run Where, Network and KeyUpload).
type Runner func(index int, st Stage, feeds map[string]*ir.Tensor, tm *StageTiming) (map[string]*ir.Tensor, error)

// LocalRunner runs each encrypted stage in an in-process session started
// by newSession (nil: local.NewSession without progress): its keys are
// generated when the stage starts and dropped when it is done, so that
// only one stage's keys are held at a time.
func LocalRunner(newSession func(*ckksir.Program) (*local.Session, error)) Runner {
	newSession = sessionOrDefault(newSession)
	return func(_ int, st Stage, feeds map[string]*ir.Tensor, tm *StageTiming) (map[string]*ir.Tensor, error) {
		sess, err := newSession(st.Program)
		if err != nil {
			return nil, err
		}
		tm.Setup = sess.Setup
		outs, t, err := sess.Run(feeds)
		tm.Timing = t
		return outs, err
	}
}

// KeepSessions is LocalRunner for runs that repeat (greedy generation runs
// the same stages once per token): each encrypted stage's session starts
// at its first run and is kept for the next ones, so that its keys are
// generated once (its first run's timing carries the setup, later ones
// none), and every stage's keys are held at once.
func KeepSessions(newSession func(*ckksir.Program) (*local.Session, error)) Runner {
	newSession = sessionOrDefault(newSession)
	sessions := map[int]*local.Session{}
	return func(index int, st Stage, feeds map[string]*ir.Tensor, tm *StageTiming) (map[string]*ir.Tensor, error) {
		sess := sessions[index]
		if sess == nil {
			var err error
			if sess, err = newSession(st.Program); err != nil {
				return nil, err
			}
			sessions[index] = sess
			tm.Setup = sess.Setup
		}
		outs, t, err := sess.Run(feeds)
		tm.Timing = t
		return outs, err
	}
}

// sessionOrDefault is newSession, or local.NewSession without progress
// when it is nil.
func sessionOrDefault(newSession func(*ckksir.Program) (*local.Session, error)) func(*ckksir.Program) (*local.Session, error) {
	if newSession == nil {
		return func(p *ckksir.Program) (*local.Session, error) { return local.NewSession(p, local.Progress{}) }
	}
	return newSession
}

// StageTiming is what running one stage took.
type StageTiming struct {
	Name      string
	Encrypted bool
	// Plain is a plaintext stage's time; Setup an encrypted stage's key
	// generation and worker setup; Timing its encryption, evaluation,
	// decryption and bytes moved.
	Plain  time.Duration
	Setup  local.Setup
	Timing local.Timing
	// Where an encrypted stage ran: empty in process, else the worker(s)
	// (a Runner's description); Network is the part of its round trips
	// that was not evaluation (transfers, serialization, validation), and
	// KeyUpload the evaluation-key bytes uploaded to workers during the
	// run.
	Where     string
	Network   time.Duration
	KeyUpload int64
	// MaxError is, with Options.Verify, the largest difference from the
	// stage's plaintext reference over its outputs, Bound the smallest
	// predicted bound among them.
	MaxError, Bound float64
}

// Report sums a run.
type Report struct {
	Stages []StageTiming
	// Total is the wall time of the stages (setups excluded, network
	// included); Upload and Download the ciphertext bytes moved;
	// RoundTrips the encrypted stages; Bootstraps those of every
	// ciphertext of every encrypted stage.
	Total            time.Duration
	Upload, Download int64
	RoundTrips       int
	Bootstraps       int
}

// Run runs the stages in order on the named inputs (samples stacked along
// the leading axis, which replaces the batch axis of 1 of every stage
// value) and returns every value the stages produced. Encrypted stages run
// through opts.Runner (default: LocalRunner(opts.NewSession)).
func Run(stages []Stage, inputs map[string]*ir.Tensor, opts Options) (map[string]*ir.Tensor, *Report, error) {
	env := map[string]*ir.Tensor{}
	n := -1
	for name, x := range inputs {
		if len(x.Shape) == 0 {
			return nil, nil, fmt.Errorf("split: input %q has no sample axis", name)
		}
		if n >= 0 && x.Shape[0] != n {
			return nil, nil, fmt.Errorf("split: input %q has %d samples, another input %d", name, x.Shape[0], n)
		}
		n = x.Shape[0]
		env[name] = x
	}
	runner := opts.Runner
	if runner == nil {
		runner = LocalRunner(opts.NewSession)
	}
	rep := &Report{}
	for i, st := range stages {
		feeds := map[string]*ir.Tensor{}
		for _, in := range st.Inputs {
			x, ok := env[in]
			if !ok {
				return nil, nil, fmt.Errorf("split: stage %s reads %q, which no earlier stage produced", st.Name, in)
			}
			feeds[in] = x
		}
		tm := StageTiming{Name: st.Name, Encrypted: st.Program != nil}
		var outs map[string]*ir.Tensor
		var err error
		if st.Program == nil {
			start := time.Now()
			outs, err = runPlain(st.Graph, feeds, n)
			tm.Plain = time.Since(start)
			rep.Total += tm.Plain
		} else {
			outs, err = runner(i, st, feeds, &tm)
			switch {
			case err == nil && opts.Verify:
				err = verify(st, feeds, outs, &tm, true)
			case err == nil && opts.Measure && st.Graph != nil:
				err = verify(st, feeds, outs, &tm, false)
			}
			rep.Total += tm.Timing.Total() + tm.Network
			rep.Upload += tm.Timing.UploadBytes
			rep.Download += tm.Timing.DownloadBytes
			rep.RoundTrips++
			rep.Bootstraps += st.Bootstraps * max(tm.Timing.Ciphertexts, 1)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("split: stage %s: %w", st.Name, err)
		}
		for _, o := range st.Outputs {
			y, ok := outs[o]
			if !ok {
				return nil, nil, fmt.Errorf("split: stage %s did not produce %q", st.Name, o)
			}
			env[o] = y
		}
		rep.Stages = append(rep.Stages, tm)
	}
	return env, rep, nil
}

// verify runs an encrypted stage's plaintext reference on its inputs and
// records the largest difference of its outputs and their bound; strict,
// it fails when an output leaves the program's error bound.
func verify(st Stage, feeds, outs map[string]*ir.Tensor, tm *StageTiming, strict bool) error {
	if st.Graph == nil {
		return fmt.Errorf("no plaintext reference to verify against")
	}
	n := 0
	for _, x := range feeds {
		n = x.Shape[0]
	}
	want, err := runPlain(st.Graph, feeds, n)
	if err != nil {
		return fmt.Errorf("plaintext reference: %w", err)
	}
	tm.Bound = math.Inf(1)
	for _, o := range st.Program.Outputs {
		bound := st.Program.Values[o.Value].Bound
		tm.Bound = min(tm.Bound, bound)
		got, ref := outs[o.Name], want[o.Name]
		if got == nil || ref == nil || len(got.Float) != len(ref.Float) {
			return fmt.Errorf("output %q: encrypted and reference results differ in shape", o.Name)
		}
		maxErr := 0.0
		for i, v := range got.Float {
			maxErr = math.Max(maxErr, math.Abs(v-ref.Float[i]))
		}
		tm.MaxError = math.Max(tm.MaxError, maxErr)
		if strict && maxErr > bound {
			return fmt.Errorf("output %q: max |encrypted - reference| = %.3e exceeds the predicted bound %.3e", o.Name, maxErr, bound)
		}
	}
	return nil
}

// runPlain runs g on every sample of feeds (stacked along the leading
// axis; g's values have a batch axis of 1) and stacks its outputs.
func runPlain(g *ir.Graph, feeds map[string]*ir.Tensor, n int) (map[string]*ir.Tensor, error) {
	outs := map[string]*ir.Tensor{}
	for s := range n {
		one := map[string]*ir.Tensor{}
		for _, in := range g.Inputs {
			x, ok := feeds[in.Name]
			if !ok {
				return nil, fmt.Errorf("no value for input %q", in.Name)
			}
			per := x.Len() / max(1, x.Shape[0])
			if in.Shape.Known() && in.Shape.Size() != per {
				return nil, fmt.Errorf("input %q: %d elements per sample, the graph takes %v", in.Name, per, in.Shape)
			}
			if !x.DType.IsFloat() {
				// Token ids: only a plaintext stage reads them.
				one[in.Name] = &ir.Tensor{DType: x.DType, Shape: in.Shape.Clone(), Int: x.Int[s*per : (s+1)*per]}
				continue
			}
			one[in.Name] = &ir.Tensor{DType: ir.Float64, Shape: in.Shape.Clone(), Float: x.Float[s*per : (s+1)*per]}
		}
		res, err := plain.Run(g, one, nil)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", s, err)
		}
		for _, o := range g.Outputs {
			y := res[o.Name]
			if y == nil || !y.DType.IsFloat() {
				return nil, fmt.Errorf("output %q is missing or not real", o.Name)
			}
			acc := outs[o.Name]
			if acc == nil {
				shape := ir.Shape{n}
				if len(y.Shape) > 0 {
					shape = append(shape, y.Shape[1:]...)
				}
				acc = &ir.Tensor{DType: ir.Float64, Shape: shape, Float: make([]float64, 0, n*len(y.Float))}
				outs[o.Name] = acc
			}
			acc.Float = append(acc.Float, y.Float...)
		}
	}
	return outs, nil
}
