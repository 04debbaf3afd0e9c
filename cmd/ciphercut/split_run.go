package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/zoo"
)

// runSplit runs a split plan's stages in process on the samples x of the
// model's single input (ref's) and returns the single output. With verify,
// every encrypted stage is checked against its plaintext reference within
// its predicted bound. Each stage's session plans its memory within the
// --memory-limit flag memLimit.
func runSplit(plan *compiler.Plan, ref *ir.Graph, x *ir.Tensor, verify bool, memLimit string) (*ir.Tensor, *split.Report, error) {
	if len(ref.Inputs) != 1 || len(ref.Outputs) != 1 {
		return nil, nil, fmt.Errorf("split plans of models with %d inputs and %d outputs are not supported; want one of each", len(ref.Inputs), len(ref.Outputs))
	}
	stages, err := plan.RunStages()
	if err != nil {
		return nil, nil, err
	}
	env, rep, err := split.Run(stages, map[string]*ir.Tensor{ref.Inputs[0].Name: x}, split.Options{Verify: verify,
		NewSession: func(p *ckksir.Program) (*local.Session, error) { return newSession(p, memLimit) }})
	if err != nil {
		return nil, nil, err
	}
	y, ok := env[ref.Outputs[0].Name]
	if !ok {
		return nil, nil, fmt.Errorf("split plan: no stage produced the output %q", ref.Outputs[0].Name)
	}
	return y, rep, nil
}

// printSplitTiming prints each stage's time and bytes and the totals.
func printSplitTiming(w io.Writer, rep *split.Report, samples int) {
	var keys time.Duration
	for _, st := range rep.Stages {
		if !st.Encrypted {
			fmt.Fprintf(w, "  %-16s plaintext on the data owner %v\n", st.Name, st.Plain.Round(time.Microsecond))
			continue
		}
		t := st.Timing
		keys += st.Setup.KeyGen + st.Setup.Encode
		line := fmt.Sprintf("  %-16s encrypt %v, evaluate %v, decrypt %v; up %.2f MiB, down %.2f MiB; keys %v",
			st.Name, t.Encrypt.Round(time.Millisecond), t.Eval.Round(time.Millisecond), t.Decrypt.Round(time.Millisecond),
			float64(t.UploadBytes)/(1<<20), float64(t.DownloadBytes)/(1<<20), (st.Setup.KeyGen + st.Setup.Encode).Round(time.Millisecond))
		if st.Where != "" {
			line += fmt.Sprintf("; network and serialization %v, keys uploaded %.1f MiB\n  %-16s %s", st.Network.Round(time.Millisecond),
				float64(st.KeyUpload)/(1<<20), "", st.Where)
		} else {
			line += "; in process"
		}
		if st.Bound > 0 {
			line += fmt.Sprintf("; max |encrypted - reference| %.3e (bound %.3e)", st.MaxError, st.Bound)
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "%d samples: %v end to end without key setup (%v keys), %d round trips, %d bootstraps, %.2f MiB up, %.2f MiB down\n",
		samples, rep.Total.Round(time.Millisecond), keys.Round(time.Millisecond), rep.RoundTrips, rep.Bootstraps,
		float64(rep.Upload)/(1<<20), float64(rep.Download)/(1<<20))
}

// finishSplitRun writes or prints a split run's output (the model output
// name) and, with verify, its agreement with the plan's polynomial
// reference ref.
func finishSplitRun(w io.Writer, name string, ref *ir.Graph, x, y *ir.Tensor, output string, verify bool, rep *split.Report) error {
	if output != "" {
		if err := writeTensor(output, name, y); err != nil {
			return err
		}
	} else {
		printTensor(name, y)
	}
	printSplitTiming(w, rep, x.Shape[0])
	if !verify {
		return nil
	}
	want, err := zoo.RunBatched(ref, x, 1)
	if err != nil {
		return fmt.Errorf("plaintext reference: %w", err)
	}
	fmt.Fprintf(w, "verify: every encrypted stage within its predicted bound; top-1 agreement %.2f%% with the all-polynomial reference\n",
		100*zoo.Agreement(y, want))
	return nil
}
