// Package local runs a CKKS program end to end in one process: the data
// owner's client (secret key, encryption, decryption) and a worker's
// evaluator (public evaluation keys only) side by side. It is the embedded
// default of `ciphercut run`, `eval` and `demo`; the worker never sees the
// client: it gets the evaluation keys and ciphertexts, as over a network.
package local

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

// Setup records the one-time costs of a session.
type Setup struct {
	KeyGen       time.Duration // secret, relinearization and Galois keys
	Encode       time.Duration // the worker pre-encoding the program's plaintexts
	EvalKeyBytes int64         // serialized size of the evaluation keys
	GaloisKeys   int
}

// Timing records one inference call.
type Timing struct {
	Encrypt, Eval, Decrypt time.Duration
	Ciphertexts            int   // input ciphertexts (samples / batch, rounded up)
	UploadBytes            int64 // input ciphertexts
	DownloadBytes          int64 // output ciphertexts
}

// Total is the wall time of the call.
func (t Timing) Total() time.Duration { return t.Encrypt + t.Eval + t.Decrypt }

// Session holds one program's client and evaluator.
type Session struct {
	prog   *ckksir.Program
	client *ckks.Client
	worker *ckks.Evaluator
	Setup  Setup
	// Memory is the memory plan the session runs under.
	Memory MemoryPlan
}

// Progress receives key-generation and evaluation progress.
type Progress struct {
	Keys func(done, total int)
	Eval func(ckks.Step)
}

// NewSession generates keys for prog and prepares an evaluator holding only
// the public evaluation keys, within the memory available (MemAvailable of
// /proc/meminfo, when readable): see NewSessionWithin.
func NewSession(prog *ckksir.Program, progress Progress) (*Session, error) {
	return NewSessionWithin(prog, progress, 0)
}

// NewSessionWithin is NewSession keeping the run's predicted peak memory
// within limit bytes (0: the memory available now; no limit when that is
// unknown). It refuses, before allocating anything, a program whose keys
// and one lane's working memory would not fit (an ir.UnsupportedError
// naming the sizes), and otherwise evaluates as many ciphertexts at once and
// keeps as many matrix diagonals encoded as fit (PlanMemory; the plan is in
// Session.Memory).
func NewSessionWithin(prog *ckksir.Program, progress Progress, limit int64) (*Session, error) {
	if limit <= 0 {
		limit = memoryAvailable()
	}
	var mem MemoryPlan
	if limit > 0 {
		var err error
		if mem, _, err = PlanProgramMemory(prog, limit, runtime.NumCPU()); err != nil {
			return nil, err
		}
	} else { // unknown: every lane, every diagonal encoded
		need, err := ckks.PlanKeys(prog)
		if err != nil {
			return nil, err
		}
		mem = leastMemory(need, WeightBytes(prog), 0)
		mem.Lanes, mem.Cores = runtime.NumCPU(), runtime.NumCPU()
		mem.Encoded = need.EncodedBytes
	}
	s := &Session{prog: prog, Memory: mem}
	start := time.Now()
	client, err := ckks.NewClient(prog)
	if err != nil {
		return nil, err
	}
	evk, err := client.EvaluationKeys(progress.Keys)
	if err != nil {
		return nil, err
	}
	s.Setup.KeyGen = time.Since(start)
	s.Setup.EvalKeyBytes = evk.Bytes()
	s.Setup.GaloisKeys = evk.Count()
	start = time.Now()
	worker, err := ckks.NewEvaluatorWithBudget(prog, evk, mem.Budget())
	if err != nil {
		return nil, err
	}
	worker.SetLanes(mem.Lanes)
	worker.SetCores(mem.Cores)
	if progress.Eval != nil {
		worker.SetProgress(progress.Eval)
	}
	s.Setup.Encode = time.Since(start)
	s.client, s.worker = client, worker
	return s, nil
}

// SetTrace installs the evaluator's per-instruction timing callback (see
// ckks.Evaluator.SetTrace); nil removes it.
func (s *Session) SetTrace(f func(instr int, d time.Duration)) { s.worker.SetTrace(f) }

// Infer encrypts x (samples along the leading axis) for the program's single
// input, evaluates, decrypts and returns the single output with the same
// leading axis.
func (s *Session) Infer(x *ir.Tensor) (*ir.Tensor, Timing, error) {
	if len(s.prog.Inputs) != 1 || len(s.prog.Outputs) != 1 {
		return nil, Timing{}, fmt.Errorf("program has %d inputs and %d outputs; want one of each", len(s.prog.Inputs), len(s.prog.Outputs))
	}
	out, t, err := s.Run(map[string]*ir.Tensor{s.prog.Inputs[0].Name: x})
	if err != nil {
		return nil, t, err
	}
	return out[s.prog.Outputs[0].Name], t, nil
}

// Run encrypts every program input (by name; samples along the leading
// axis, the same number for each), evaluates, decrypts and returns every
// output by name with the same leading axis.
func (s *Session) Run(inputs map[string]*ir.Tensor) (map[string]*ir.Tensor, Timing, error) {
	var t Timing
	n := -1
	for _, in := range s.prog.Inputs {
		x, ok := inputs[in.Name]
		if !ok {
			return nil, t, fmt.Errorf("no tensor for program input %q", in.Name)
		}
		if len(x.Shape) == 0 {
			return nil, t, fmt.Errorf("input %q has no sample axis", in.Name)
		}
		if n >= 0 && x.Shape[0] != n {
			return nil, t, fmt.Errorf("input %q has %d samples, the first input %d", in.Name, x.Shape[0], n)
		}
		n = x.Shape[0]
	}
	start := time.Now()
	cts := map[string][]*ckks.Ciphertext{}
	for _, in := range s.prog.Inputs {
		c, err := s.client.Encrypt(in.Name, inputs[in.Name])
		if err != nil {
			return nil, t, err
		}
		cts[in.Name] = c
		t.Ciphertexts = max(t.Ciphertexts, len(c))
		for _, ct := range c {
			t.UploadBytes += ct.Bytes()
		}
	}
	t.Encrypt = time.Since(start)
	start = time.Now()
	res, err := s.worker.Run(cts)
	if err != nil {
		return nil, t, err
	}
	t.Eval = time.Since(start)
	start = time.Now()
	outs := map[string]*ir.Tensor{}
	for _, o := range s.prog.Outputs {
		for _, ct := range res[o.Name] {
			t.DownloadBytes += ct.Bytes()
		}
		y, err := s.client.Decrypt(o.Name, res[o.Name], n)
		if err != nil {
			return nil, t, err
		}
		outs[o.Name] = y
	}
	t.Decrypt = time.Since(start)
	return outs, t, nil
}

// memoryAvailable is the budget NewSession checks plans against; tests
// replace it.
var memoryAvailable = availableMemory

// MemoryAvailable is the memory the system can give this process now
// (MemAvailable of /proc/meminfo, in bytes), or 0 when unknown.
func MemoryAvailable() int64 { return availableMemory() }

// availableMemory reads MemAvailable from /proc/meminfo, in bytes; 0 when
// unknown.
func availableMemory() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
