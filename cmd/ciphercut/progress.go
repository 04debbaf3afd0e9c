package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
	"github.com/ciphercut/ciphercut/runtime/local"
)

// showProgress is true when stderr is a terminal: bars would only clutter
// logs and test output otherwise.
var showProgress = term.IsTerminal(int(os.Stderr.Fd()))

// newBar returns a progress bar on stderr, or nil when progress is hidden.
func newBar(total int, what string) *progressbar.ProgressBar {
	if !showProgress {
		return nil
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
}

// sessionProgress shows key generation and evaluation of prog: as progress
// bars on a terminal, otherwise (logs, background runs) as a line on stderr
// at each bootstrap and at least every 30 seconds (see evalTracker).
func sessionProgress(prog *ckksir.Program) local.Progress {
	var keys *progressbar.ProgressBar
	track := newEvalTracker(prog)
	return local.Progress{
		Keys: func(done, total int) {
			if keys == nil {
				keys = newBar(total, "generating evaluation keys")
			}
			if keys != nil {
				_ = keys.Set(done)
				if done == total {
					_ = keys.Finish()
				}
			}
		},
		Eval: track.step,
	}
}

// evalTracker follows an encrypted evaluation: the layer it is on,
// bootstraps done and left, elapsed and estimated remaining time. The
// estimate is the cost model's prediction for the steps left (default or
// calibrated profile), scaled by how the time so far compares with the
// prediction for the steps done; without a prediction every step counts
// the same.
type evalTracker struct {
	pred []float64 // predicted seconds per instruction; nil when unknown
	// perCiphertext is the sum of weight over the program's instructions.
	perCiphertext float64
	boots         int // bootstrap instructions in the program
	instrs        int // instructions in the program
	start         time.Time
	predDone      float64
	bootsDone     int
	lastLog       time.Time
	bar           *progressbar.ProgressBar
}

func newEvalTracker(prog *ckksir.Program) *evalTracker {
	t := &evalTracker{}
	if prog == nil {
		return t
	}
	t.boots, t.instrs = prog.Bootstraps(), len(prog.Instrs)
	if rep, err := buildReport(prog, "", "", 0, 0, nil); err == nil && len(rep.Instrs) == len(prog.Instrs) {
		t.pred = make([]float64, len(prog.Instrs))
		for i, in := range rep.Instrs {
			t.pred[i] = in.Seconds
		}
		for i := range t.pred {
			t.perCiphertext += t.weight(i)
		}
	}
	return t
}

// weight is the predicted cost of one execution of instruction i.
func (t *evalTracker) weight(i int) float64 {
	if t.pred == nil || i >= len(t.pred) {
		return 1
	}
	return max(t.pred[i], 1e-6)
}

func (t *evalTracker) step(s ckks.Step) {
	now := time.Now()
	if s.Done == 1 {
		t.start, t.predDone, t.bootsDone, t.lastLog = now, 0, 0, now
		t.bar = newBar(s.Total, "evaluating")
	}
	t.predDone += t.weight(s.Instr)
	if s.Op == ckksir.OpBootstrap {
		t.bootsDone++
	}
	cts := max(1, s.Total/max(t.instrs, 1)) // ciphertexts in this run
	predTotal := float64(s.Total)
	if t.pred != nil {
		predTotal = t.perCiphertext * float64(cts)
	}
	elapsed := now.Sub(t.start)
	left := time.Duration(float64(elapsed) * max(predTotal-t.predDone, 0) / t.predDone)
	boots := ""
	if t.boots > 0 {
		boots = fmt.Sprintf(", bootstraps %d/%d", t.bootsDone, t.boots*cts)
	}
	msg := fmt.Sprintf("%s%s, %s elapsed, about %s left", shorten(s.Layer, 32), boots, elapsed.Round(time.Second), left.Round(time.Second))
	if t.bar != nil {
		t.bar.Describe(msg)
		_ = t.bar.Set(s.Done)
		if s.Done == s.Total {
			_ = t.bar.Finish()
		}
		return
	}
	if s.Op == ckksir.OpBootstrap || now.Sub(t.lastLog) >= 30*time.Second || s.Done == s.Total {
		t.lastLog = now
		fmt.Fprintf(os.Stderr, "evaluating: %3.0f%% (%d/%d steps) %s\n", 100*min(t.predDone/predTotal, 1), s.Done, s.Total, msg)
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}
