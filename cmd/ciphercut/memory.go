package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/split"
)

// memoryLimitFlag adds --memory-limit to cmd and returns where its value
// lands.
func memoryLimitFlag(cmd *cobra.Command) *string {
	var s string
	cmd.Flags().StringVar(&s, "memory-limit", "", "peak memory the encrypted run must stay within, e.g. 16GiB (default: the memory available now); "+
		"the run evaluates fewer ciphertexts at once and encodes more weights at each use to fit")
	return &s
}

// softLimitReserve is what parseMemoryLimit leaves below the limit for
// memory the Go runtime does not manage (at most 5% of it): the memory plan
// keeps its headroom for the garbage collector, and a soft limit much below
// the plan's peak leaves the collector no room once the live heap nears it
// (ResNet-20 within 15.75 GiB with a 95% soft limit slowed 40-fold in its
// second ciphertext).
const softLimitReserve = 256 << 20

// parseMemoryLimit reads a --memory-limit value (0 when empty) and, when
// set, makes it the Go runtime's soft memory limit too, less
// softLimitReserve.
func parseMemoryLimit(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := parseSize("--memory-limit", s)
	if err != nil {
		return 0, err
	}
	debug.SetMemoryLimit(b - min(b/20, softLimitReserve))
	return b, nil
}

// parseSize reads the value s of a size flag (16GiB, 512MB): positive and
// at most 1 PiB.
func parseSize(flag, s string) (int64, error) {
	b, err := humanize.ParseBytes(s)
	if err != nil || b == 0 || b > 1<<50 {
		return 0, fmt.Errorf("%s %q: want a size such as 16GiB", flag, s)
	}
	return int64(b), nil
}

// keyBudget is the evaluation-key memory a compiled program may need
// without bootstrapping (passes.LowerOptions.MaxKeyBytes) on a worker of
// the --worker-memory value s: three quarters of it, the rest left for the
// runtime, working ciphertexts and the weights (diagonals are encoded at
// each use when they do not fit).
func keyBudget(s string) (int64, error) {
	b, err := parseSize("--worker-memory", s)
	if err != nil {
		return 0, err
	}
	return b / 4 * 3, nil
}

// limitOrAvailable is the --memory-limit value s (parseMemoryLimit), or
// the memory available now when s is empty; 0 when neither is known.
func limitOrAvailable(s string) (int64, error) {
	limit, err := parseMemoryLimit(s)
	if err != nil || limit > 0 {
		return limit, err
	}
	return local.MemoryAvailable(), nil
}

// inProcessMemory plans the memory of an in-process run of prog on cpus
// cores (0: all of this machine's) within the --memory-limit value s
// (default: the memory available now). It returns nil when the limit is
// unknown or the run does not fit (printing why on stderr).
func inProcessMemory(prog *ckksir.Program, s string, cpus int) (*local.MemoryPlan, error) {
	limit, err := limitOrAvailable(s)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	m, _, err := local.PlanProgramMemory(prog, limit, cpus)
	var unfit *ir.UnsupportedError
	if errors.As(err, &unfit) {
		fmt.Fprintf(os.Stderr, "in-process run on %d cores: %v\n", cpus, err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// newSession starts an in-process session for prog within the memory
// limit flag s, showing its progress and printing its memory plan.
func newSession(prog *ckksir.Program, s string) (*local.Session, error) {
	limit, err := parseMemoryLimit(s)
	if err != nil {
		return nil, err
	}
	return newSessionWithin(prog, limit)
}

// newSessionWithin is newSession within limit bytes (0: the memory
// available).
func newSessionWithin(prog *ckksir.Program, limit int64) (*local.Session, error) {
	sess, err := local.NewSessionWithin(prog, sessionProgress(prog), limit)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, sess.Memory)
	return sess, nil
}

// keptSessions runs a split plan's encrypted stages in sessions kept
// between runs (split.KeepSessions: generate's tokens), each within its
// share of the memory limit flag s (default: the memory available), since
// they are all held at once (local.ShareMemory).
func keptSessions(stages []split.Stage, s string) (split.Runner, error) {
	limit, err := parseMemoryLimit(s)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = local.MemoryAvailable()
	}
	var progs []*ckksir.Program
	for _, st := range stages {
		if st.Program != nil {
			progs = append(progs, st.Program)
		}
	}
	shares, err := local.ShareMemory(progs, limit)
	if err != nil {
		return nil, fmt.Errorf("%w; in-process workers (--workers 2) hold one stage's keys at a time", err)
	}
	share := map[*ckksir.Program]int64{}
	for i, p := range progs {
		share[p] = shares[i]
	}
	return split.KeepSessions(func(p *ckksir.Program) (*local.Session, error) { return newSessionWithin(p, share[p]) }), nil
}
