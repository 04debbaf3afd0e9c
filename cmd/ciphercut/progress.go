package main

import (
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

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

// sessionProgress shows key generation and evaluation (layer by layer) as
// progress bars.
func sessionProgress() local.Progress {
	var keys, eval *progressbar.ProgressBar
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
		Eval: func(instr, total int, layer string) {
			if instr == 1 || eval == nil {
				eval = newBar(total, "evaluating")
			}
			if eval != nil {
				eval.Describe("evaluating " + shorten(layer, 32))
				_ = eval.Set(instr)
				if instr == total {
					_ = eval.Finish()
				}
			}
		},
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}
