package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/cost/costplot"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/internal/atomicfile"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/runtime/split"
)

func generateCmd() *cobra.Command {
	var prompts []string
	var promptsFile, model, ckptPath, plotPath string
	var tokens int
	var rmt *remoteFlags
	var memLimit *string
	cmd := &cobra.Command{
		Use:   "generate PLAN (--prompt TEXT... | --prompts FILE) [--tokens N] [--workers N|--swarm MA...]",
		Short: "Generate text greedily from a language model's split plan, its blocks encrypted",
		Long: "generate tokenizes each prompt with the plan's vocabulary (the vocab.json beside the\n" +
			"model when it was compiled), and for each new token runs the split plan on the last\n" +
			"context-length tokens of every prompt at once (the windows share ciphertexts): the\n" +
			"embedding in plaintext on the data owner, the transformer blocks encrypted (in\n" +
			"process, or with --workers/--swarm on workers; with fewer workers than encrypted\n" +
			"stages, each worker serves consecutive stages), the head in plaintext, then takes\n" +
			"the most likely next token. Keys are generated once. It also runs the exact model\n" +
			"(--model, by default the testsuite/models folder of the plan's model when its\n" +
			"SHA-256 matches) greedily and reports per token whether the encrypted choice agrees\n" +
			"with it, on the same context and in the independent plaintext generation, with\n" +
			"time, bootstraps and bytes moved. With --checkpoint FILE it saves every token as it\n" +
			"comes and, run again, goes on after the last saved one.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rmt.memLimit = *memLimit
			if tokens <= 0 {
				return fmt.Errorf("--tokens %d: want a positive number of tokens to generate", tokens)
			}
			if plotPath != "" {
				if err := costplot.CheckPath(plotPath); err != nil {
					return err
				}
			}
			if promptsFile != "" {
				more, err := readPrompts(promptsFile)
				if err != nil {
					return err
				}
				prompts = append(prompts, more...)
			}
			if len(prompts) == 0 {
				return errors.New("no prompt: give --prompt TEXT (repeatable) or --prompts FILE")
			}
			plan, ref, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			lm, err := newLanguageModel(args[0], plan, ref)
			if err != nil {
				return err
			}
			exact, what, err := exactModel(plan, model)
			if err != nil {
				return err
			}
			var ids [][]int64
			for _, p := range prompts {
				row, err := lm.tokenize(p)
				if err != nil {
					return err
				}
				ids = append(ids, row)
			}
			planFile, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			ckpt, err := openCheckpoint(ckptPath, segment.PlanID(planFile), ids, tokens, len(lm.vocab))
			if err != nil {
				return err
			}
			ckpt.plot = plotPath
			ckpt.title = fmt.Sprintf("%s: wall time per token, %d prompt(s) together", plan.ModelName, len(ids))
			if n := len(ckpt.log.Steps); n == tokens {
				fmt.Printf("checkpoint %s already holds all %d tokens\n", ckptPath, n)
			} else if n > 0 {
				fmt.Printf("resuming from checkpoint %s after token %d of %d\n", ckptPath, n, tokens)
			}
			var stages []split.Stage
			var runner split.Runner
			if len(ckpt.log.Steps) == tokens {
				// Nothing left to run: only the summary.
			} else if rmt.enabled() {
				var closer func()
				stages, runner, closer, err = rmt.splitRunner(args[0], plan)
				if err != nil {
					return err
				}
				defer closer()
			} else {
				if stages, err = plan.RunStages(); err != nil {
					return err
				}
				if runner, err = keptSessions(stages, *memLimit); err != nil {
					return err
				}
			}
			for _, row := range ids {
				fmt.Printf("prompt %q (%d tokens, context %d)\n", lm.detokenize(row), len(row), lm.context)
			}
			fmt.Printf("plaintext reference: %s\n", what)
			if _, err = lm.generate(os.Stdout, ids, tokens, stages, runner, exact, ckpt); err != nil {
				return err
			}
			return ckpt.draw() // a run resumed with every token saved draws here
		},
	}
	cmd.Flags().StringArrayVar(&prompts, "prompt", nil, "text to continue (lower-cased; characters outside the vocabulary are an error); repeatable: the prompts are generated together")
	cmd.Flags().StringVar(&promptsFile, "prompts", "", "JSON file of prompts to continue together: a list of strings or of objects with a \"prompt\" field (as testsuite/models/tiny-gpt/prompts.json)")
	cmd.Flags().IntVar(&tokens, "tokens", 32, "tokens to generate")
	cmd.Flags().StringVar(&model, "model", "", "the exact model (ONNX) to compare with (default: testsuite/models/NAME/model.onnx when its SHA-256 matches the plan's, else the plan's polynomial reference)")
	cmd.Flags().StringVar(&plotPath, "plot", "", "draw wall time per token and each encrypted stage's largest error against the plan's bound into FILE.svg or FILE.png, after every token")
	cmd.Flags().StringVar(&ckptPath, "checkpoint", "", "save the generation to this JSON file after every token, and resume from it when it exists (same plan and prompts)")
	rmt = addRemoteFlags(cmd)
	memLimit = memoryLimitFlag(cmd)
	return cmd
}

// readPrompts reads a prompts file: a JSON list of strings, or of objects
// whose "prompt" field is the text.
func readPrompts(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: want a JSON list of prompts: %w", path, err)
	}
	var out []string
	for i, r := range raw {
		var text string
		if err := json.Unmarshal(r, &text); err != nil {
			var obj struct {
				Prompt *string `json:"prompt"`
			}
			if err := json.Unmarshal(r, &obj); err != nil || obj.Prompt == nil {
				return nil, fmt.Errorf("%s: entry %d is neither a string nor an object with a \"prompt\" string", path, i)
			}
			text = *obj.Prompt
		}
		out = append(out, text)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	return out, nil
}

// languageModel is what generate needs of a split plan: its stages read
// token ids [1, context] and the last stage writes logits [1, context,
// vocab].
type languageModel struct {
	path          string
	vocab         []string
	index         map[string]int
	context       int
	input, output string
}

// newLanguageModel checks that plan (read from path, reference graph ref)
// is a language model's split plan.
func newLanguageModel(path string, plan *compiler.Plan, ref *ir.Graph) (*languageModel, error) {
	if len(ref.Inputs) != 1 || len(ref.Outputs) != 1 {
		return nil, fmt.Errorf("%s: generate needs a model with one input and one output, not %d and %d", path, len(ref.Inputs), len(ref.Outputs))
	}
	in, out := ref.Inputs[0], ref.Outputs[0]
	if in.DType.IsFloat() || len(in.Shape) != 2 || in.Shape[1] <= 0 {
		return nil, fmt.Errorf("%s: generate needs token ids as input (integers [N, context]); %q is %s %v", path, in.Name, in.DType, in.Shape)
	}
	if !plan.IsSplit() {
		return nil, fmt.Errorf("%s is not a split plan; recompile it (models with integer inputs compile to split plans)", path)
	}
	if len(plan.Vocab) == 0 {
		return nil, fmt.Errorf("%s has no vocabulary: compile the model from a folder with vocab.json (a JSON list of the tokens, id i being entry i)", path)
	}
	if len(out.Shape) != 3 || out.Shape[1] != in.Shape[1] || out.Shape[2] != len(plan.Vocab) {
		return nil, fmt.Errorf("%s: output %q is %v; generate needs logits [N, %d, %d] (context, vocabulary)", path, out.Name, out.Shape, in.Shape[1], len(plan.Vocab))
	}
	lm := &languageModel{path: path, vocab: plan.Vocab, index: map[string]int{}, context: in.Shape[1], input: in.Name, output: out.Name}
	for i, t := range plan.Vocab {
		lm.index[t] = i
	}
	return lm, nil
}

// tokenize maps a prompt to token ids, one character a token, lower-cased
// and digits read as "#" when the vocabulary has no digits (as the zoo's
// tiny-gpt was trained); a prompt shorter than the context is padded on
// the left with spaces, a longer one keeps its end.
func (lm *languageModel) tokenize(prompt string) ([]int64, error) {
	var ids []int64
	for _, r := range strings.ToLower(prompt) {
		c := string(r)
		if _, ok := lm.index[c]; !ok && unicode.IsDigit(r) {
			c = "#"
		}
		if _, ok := lm.index[c]; !ok && unicode.IsSpace(r) {
			c = " "
		}
		id, ok := lm.index[c]
		if !ok {
			return nil, fmt.Errorf("prompt character %q is not in the vocabulary of %s (%q)", r, lm.path, strings.Join(lm.vocab, ""))
		}
		ids = append(ids, int64(id))
	}
	if len(ids) == 0 {
		return nil, errors.New("empty --prompt")
	}
	if pad, ok := lm.index[" "]; ok {
		for len(ids) < lm.context {
			ids = append([]int64{int64(pad)}, ids...)
		}
	} else if len(ids) < lm.context {
		return nil, fmt.Errorf("prompt of %d tokens, shorter than the context of %d, and no space token to pad it with", len(ids), lm.context)
	}
	return ids, nil
}

func (lm *languageModel) detokenize(ids []int64) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(lm.vocab[id])
	}
	return b.String()
}

// window returns the last context ids of each row, the rows stacked as
// a batch.
func (lm *languageModel) window(rows [][]int64) *ir.Tensor {
	w := make([]int64, 0, len(rows)*lm.context)
	for _, ids := range rows {
		w = append(w, ids[len(ids)-lm.context:]...)
	}
	return ir.NewInt(ir.Shape{len(rows), lm.context}, w)
}

// next is the most likely token after each window, from logits [rows,
// context, vocab].
func (lm *languageModel) next(logits *ir.Tensor, rows int) ([]int64, error) {
	v := len(lm.vocab)
	f := logits.Floats()
	if len(f) != rows*lm.context*v {
		return nil, fmt.Errorf("logits of shape %v, want [%d, %d, %d]", logits.Shape, rows, lm.context, v)
	}
	out := make([]int64, rows)
	for r := range out {
		last := f[((r+1)*lm.context-1)*v : (r+1)*lm.context*v]
		best := 0
		for i, x := range last {
			if x > last[best] {
				best = i
			}
		}
		out[r] = int64(best)
	}
	return out, nil
}

// plainNext is the exact model's next token after the window of each row.
func (lm *languageModel) plainNext(exact *ir.Graph, rows [][]int64) ([]int64, error) {
	out := make([]int64, len(rows))
	for r, ids := range rows {
		outs, err := plain.Run(exact, map[string]*ir.Tensor{lm.input: lm.window([][]int64{ids})}, nil)
		if err != nil {
			return nil, fmt.Errorf("plaintext model: %w", err)
		}
		tok, err := lm.next(outs[lm.output], 1)
		if err != nil {
			return nil, err
		}
		out[r] = tok[0]
	}
	return out, nil
}

// generation is the result of languageModel.generate.
type generation struct {
	// Encrypted and Plain are the generated tokens of each prompt, through
	// the split plan and by the exact model alone.
	Encrypted, Plain [][]int64
	// SameSequence counts the positions (over all prompts) where the two
	// agree, SameContext the encrypted choices that equal the exact
	// model's on the same context, Tokens the tokens generated.
	SameSequence, SameContext, Tokens int
	// MaxError and Bound are the steps' largest stage error relative to
	// its bound (tokenStep), 0 when none was measured.
	MaxError, Bound float64
}

// tokenStep records one generation step (one new token for every prompt).
type tokenStep struct {
	// Encrypted holds each prompt's token through the split plan, Context
	// the exact model's choice on the same (encrypted run's) context, Plain
	// the exact model's own greedy generation.
	Encrypted, Context, Plain []int64
	// Seconds is the step's wall time less key generation and setup
	// (SetupSeconds).
	Seconds, SetupSeconds  float64
	RoundTrips, Bootstraps int
	Upload, Download       int64
	// MaxError is the largest |encrypted - plaintext reference| over an
	// encrypted stage's outputs on the same inputs, Bound the error bound
	// the plan predicts for them and Stage its name, for the stage with
	// the largest error relative to its bound (absent from checkpoints
	// written before they were measured).
	MaxError, Bound float64 `json:",omitempty"`
	Stage           string  `json:",omitempty"`
	// Stages holds every measured encrypted stage's error and bound
	// (absent from checkpoints written before they were kept).
	Stages []costplot.StageError `json:",omitempty"`
}

// sameContext counts the prompts whose encrypted token is the exact
// model's choice on the same context.
func (st tokenStep) sameContext() int {
	n := 0
	for r := range st.Encrypted {
		if st.Encrypted[r] == st.Context[r] {
			n++
		}
	}
	return n
}

// generationLog is what --checkpoint saves after every step: enough to
// resume a long generation where it stopped.
type generationLog struct {
	// Plan is the SHA-256 of the plan file, Prompts the prompts' token ids.
	Plan    string
	Prompts [][]int64
	Steps   []tokenStep
}

// checkpoint saves and restores a generation's steps (no file: neither),
// and with plot draws them after every step.
type checkpoint struct {
	path string
	log  generationLog
	// plot is the chart to draw (.svg or .png; "": none), titled title.
	plot, title string
}

// openCheckpoint returns the checkpoint at path for the plan and prompts:
// its saved steps when the file exists (an error when it was written for
// another plan or other prompts, holds more than tokens steps or a token
// id outside a vocabulary of vocab tokens), none when it does not. An
// empty path checkpoints nothing.
func openCheckpoint(path, planSHA string, prompts [][]int64, tokens, vocab int) (*checkpoint, error) {
	c := &checkpoint{path: path, log: generationLog{Plan: planSHA, Prompts: prompts}}
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var saved generationLog
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	switch {
	case saved.Plan != planSHA:
		return nil, fmt.Errorf("checkpoint %s was written for another plan (remove it to start again)", path)
	case !slices.EqualFunc(saved.Prompts, prompts, slices.Equal[[]int64]):
		return nil, fmt.Errorf("checkpoint %s was written for other prompts (remove it to start again)", path)
	case len(saved.Steps) > tokens:
		return nil, fmt.Errorf("checkpoint %s holds %d tokens, more than --tokens %d", path, len(saved.Steps), tokens)
	}
	for i, st := range saved.Steps {
		for _, se := range st.Stages {
			if se.MaxError < 0 || se.Bound < 0 {
				return nil, fmt.Errorf("checkpoint %s: token %d: stage %q has a negative error or bound", path, i+1, se.Stage)
			}
		}
		if st.MaxError < 0 || st.Bound < 0 || st.Seconds < 0 || st.SetupSeconds < 0 {
			return nil, fmt.Errorf("checkpoint %s: token %d: negative error, bound or time", path, i+1)
		}
		for _, ids := range [][]int64{st.Encrypted, st.Context, st.Plain} {
			if len(ids) != len(prompts) {
				return nil, fmt.Errorf("checkpoint %s: token %d does not hold one token per prompt", path, i+1)
			}
			for _, id := range ids {
				if id < 0 || id >= int64(vocab) {
					return nil, fmt.Errorf("checkpoint %s: token %d holds id %d, outside the vocabulary of %d", path, i+1, id, vocab)
				}
			}
		}
	}
	c.log.Steps = saved.Steps
	return c, nil
}

// add records a step and, with a file, saves the log atomically; with a
// plot, it draws the steps so far, a failure to draw being only reported
// on stderr (the run goes on; the last draw reports it as an error).
func (c *checkpoint) add(st tokenStep) error {
	c.log.Steps = append(c.log.Steps, st)
	if c.path != "" {
		data, err := json.Marshal(&c.log)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(c.path, data, 0o600); err != nil { // the prompts are the data owner's secret
			return err
		}
	}
	if err := c.draw(); err != nil {
		fmt.Fprintf(os.Stderr, "warning: token %d: %v\n", len(c.log.Steps), err)
	}
	return nil
}

// draw plots the steps into c.plot (nothing without one, or steps): time
// per token, and error against the plan's bound (costplot.WriteTokens).
func (c *checkpoint) draw() error {
	if c.plot == "" || len(c.log.Steps) == 0 {
		return nil
	}
	bars := make([]costplot.TokenBar, len(c.log.Steps))
	for i, st := range c.log.Steps {
		bars[i] = costplot.TokenBar{Seconds: st.Seconds, SetupSeconds: st.SetupSeconds, Stages: st.Stages, Equal: st.sameContext(), Prompts: len(st.Encrypted)}
		if len(st.Stages) == 0 && st.Bound > 0 { // saved before every stage was kept
			bars[i].Stages = []costplot.StageError{{Stage: st.Stage, MaxError: st.MaxError, Bound: st.Bound}}
		}
	}
	return costplot.WriteTokens(c.title, bars, c.plot)
}

// generate appends tokens tokens to each prompt's ids greedily, running
// the split plan's stages (encrypted ones through runner) once per token
// on every prompt's window together, and writes per-token progress and a
// summary comparing with the exact model's greedy generation. It resumes
// after the steps ckpt holds and adds each new step to it (nil: none).
func (lm *languageModel) generate(w io.Writer, prompts [][]int64, tokens int, stages []split.Stage, runner split.Runner, exact *ir.Graph, ckpt *checkpoint) (*generation, error) {
	if ckpt == nil {
		ckpt = &checkpoint{log: generationLog{Prompts: prompts}}
	}
	rows := len(prompts)
	enc, pl := make([][]int64, rows), make([][]int64, rows)
	for r, ids := range prompts {
		enc[r] = append([]int64(nil), ids...)
		pl[r] = append([]int64(nil), ids...)
	}
	for k, st := range ckpt.log.Steps {
		for r := range rows {
			enc[r], pl[r] = append(enc[r], st.Encrypted[r]), append(pl[r], st.Plain[r])
		}
		fmt.Fprintln(w, lm.stepLine(k, tokens, st)+" (from the checkpoint)")
	}
	setUp := map[string]bool{} // stages whose setup was counted (a remote runner reports it at every run)
	for k := len(ckpt.log.Steps); k < tokens; k++ {
		start := time.Now()
		env, rep, err := split.Run(stages, map[string]*ir.Tensor{lm.input: lm.window(enc)}, split.Options{Runner: runner, Measure: true})
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", k+1, err)
		}
		wall := time.Since(start)
		st := tokenStep{RoundTrips: rep.RoundTrips, Bootstraps: rep.Bootstraps, Upload: rep.Upload, Download: rep.Download}
		for _, s := range rep.Stages {
			if !s.Encrypted || s.Bound <= 0 {
				continue
			}
			// JSON has no infinity: an unbounded stage (or a NaN error)
			// is saved as the largest float.
			e, b := finiteOrMax(s.MaxError), finiteOrMax(s.Bound)
			st.Stages = append(st.Stages, costplot.StageError{Stage: s.Name, MaxError: e, Bound: b})
			if closerToBound(e, b, st.MaxError, st.Bound) {
				st.MaxError, st.Bound, st.Stage = e, b, s.Name
			}
		}
		if st.Encrypted, err = lm.next(env[lm.output], rows); err != nil {
			return nil, fmt.Errorf("token %d: %w", k+1, err)
		}
		if st.Context, err = lm.plainNext(exact, enc); err != nil {
			return nil, err
		}
		if st.Plain, err = lm.plainNext(exact, pl); err != nil {
			return nil, err
		}
		var keys time.Duration
		for _, s := range rep.Stages {
			if !setUp[s.Name] {
				keys += s.Setup.KeyGen + s.Setup.Encode
				setUp[s.Name] = s.Encrypted
			}
		}
		st.Seconds, st.SetupSeconds = (wall - keys).Seconds(), keys.Seconds()
		for r := range rows {
			enc[r], pl[r] = append(enc[r], st.Encrypted[r]), append(pl[r], st.Plain[r])
		}
		if err := ckpt.add(st); err != nil {
			return nil, fmt.Errorf("token %d: %w", k+1, err)
		}
		fmt.Fprintln(w, lm.stepLine(k, tokens, st))
	}
	return lm.summarize(w, prompts, enc, pl, ckpt.log.Steps), nil
}

// stepLine describes step k of tokens.
func (lm *languageModel) stepLine(k, tokens int, st tokenStep) string {
	var got, want strings.Builder
	same := st.sameContext()
	for r := range st.Encrypted {
		got.WriteString(lm.vocab[st.Encrypted[r]])
		want.WriteString(lm.vocab[st.Context[r]])
	}
	mark := "="
	if same < len(st.Encrypted) {
		mark = fmt.Sprintf("≠ (%d/%d equal)", same, len(st.Encrypted))
	}
	line := fmt.Sprintf("token %d/%d: %q %s plaintext %q on the same context; %v (%d round trips, %d bootstraps, %.2f MiB up, %.2f MiB down)",
		k+1, tokens, got.String(), mark, want.String(), seconds(st.Seconds).Round(time.Millisecond), st.RoundTrips, st.Bootstraps,
		float64(st.Upload)/(1<<20), float64(st.Download)/(1<<20))
	if st.Bound > 0 {
		line += fmt.Sprintf("; max error %.2e against a bound of %.2e (stage %s)", st.MaxError, st.Bound, st.Stage)
	}
	if st.SetupSeconds > 0 {
		line += fmt.Sprintf("; keys and setup %v", seconds(st.SetupSeconds).Round(time.Millisecond))
	}
	return line
}

// summarize writes each prompt's generations and the agreement and cost
// over all steps, and returns them.
func (lm *languageModel) summarize(w io.Writer, prompts, enc, pl [][]int64, steps []tokenStep) *generation {
	res := &generation{Tokens: len(prompts) * len(steps)}
	var total, setup float64
	var up, down int64
	boots := 0
	for _, st := range steps {
		res.SameContext += st.sameContext()
		for r := range st.Encrypted {
			if st.Encrypted[r] == st.Plain[r] {
				res.SameSequence++
			}
		}
		total, setup = total+st.Seconds, setup+st.SetupSeconds
		up, down, boots = up+st.Upload, down+st.Download, boots+st.Bootstraps
		if closerToBound(st.MaxError, st.Bound, res.MaxError, res.Bound) {
			res.MaxError, res.Bound = st.MaxError, st.Bound
		}
	}
	for r, ids := range prompts {
		n := len(ids)
		res.Encrypted = append(res.Encrypted, enc[r][n:])
		res.Plain = append(res.Plain, pl[r][n:])
		fmt.Fprintf(w, "prompt %d\n  encrypted: %q\n  plaintext: %q\n", r+1, lm.detokenize(enc[r][n:]), lm.detokenize(pl[r][n:]))
	}
	fmt.Fprintf(w, "agreement: %d/%d tokens equal the plaintext greedy generation (%.1f%%); %d/%d equal the plaintext choice on the same context\n",
		res.SameSequence, res.Tokens, 100*float64(res.SameSequence)/float64(res.Tokens), res.SameContext, res.Tokens)
	if res.Bound > 0 {
		fmt.Fprintf(w, "precision: the stage closest to its bound erred by %.3e against the plan's %.3e\n", res.MaxError, res.Bound)
	}
	for _, se := range stageWorst(steps) {
		fmt.Fprintf(w, "  stage %s: largest error %.3e against its bound %.3e\n", se.Stage, se.MaxError, se.Bound)
	}
	fmt.Fprintf(w, "per token: %v for %d prompt(s) together (keys and setup: %v); %d bootstraps, %.2f MiB up, %.2f MiB down in all\n",
		seconds(total/float64(len(steps))).Round(time.Millisecond), len(prompts), seconds(setup).Round(time.Millisecond), boots, float64(up)/(1<<20), float64(down)/(1<<20))
	return res
}

// stageWorst returns each encrypted stage's largest error over the steps
// that kept their stages, with its bound (the smallest seen), in the order
// the stages first appear.
func stageWorst(steps []tokenStep) []costplot.StageError {
	var out []costplot.StageError
	at := map[string]int{}
	for _, st := range steps {
		for _, se := range st.Stages {
			i, ok := at[se.Stage]
			if !ok {
				at[se.Stage] = len(out)
				out = append(out, se)
				continue
			}
			out[i].MaxError, out[i].Bound = max(out[i].MaxError, se.MaxError), min(out[i].Bound, se.Bound)
		}
	}
	return out
}

// seconds converts seconds to a Duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// exactModel returns the exact model to compare with and a description:
// the ONNX file path (or, when empty, the zoo's model of the plan's name
// when its SHA-256 matches), canonicalized; else the plan's polynomial
// reference.
func exactModel(plan *compiler.Plan, path string) (*ir.Graph, string, error) {
	explicit := path != ""
	if !explicit {
		path = filepath.Join("testsuite", "models", plan.ModelName, "model.onnx")
	}
	data, err := os.ReadFile(path)
	if err == nil {
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != plan.ModelSHA256 {
			if explicit {
				return nil, "", fmt.Errorf("--model %s is not the model the plan was compiled from (SHA-256 differs)", path)
			}
			err = fmt.Errorf("SHA-256 of %s differs from the plan's model", path)
		}
	}
	if err != nil {
		if explicit {
			return nil, "", err
		}
		g, err := ir.UnmarshalGraph(plan.Graph)
		if err != nil {
			return nil, "", err
		}
		return g, "the plan's polynomial reference (no exact model found; pass --model)", nil
	}
	g, err := onnx.Decode(data, path)
	if err != nil {
		return nil, "", err
	}
	if err := passes.BindInputs(g, map[string]ir.Shape{g.Inputs[0].Name: {1, g.Inputs[0].Shape[1]}}); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if err := compiler.RunPasses(g, compiler.Canonicalize, compiler.Options{}); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return g, "the exact model " + path, nil
}

// readVocab reads a vocabulary file (a JSON list of strings); a missing
// file is nil without error unless required.
func readVocab(path string, required bool) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vocab []string
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("%s: want a JSON list of token strings: %w", path, err)
	}
	seen := map[string]bool{}
	for i, t := range vocab {
		if seen[t] {
			return nil, fmt.Errorf("%s: token %q appears twice (again at %d)", path, t, i)
		}
		seen[t] = true
	}
	return vocab, nil
}

// splitRunner connects to the workers of the flags for the split plan (of
// the file planPath) and returns the data owner's stages, a split.Runner
// that runs the encrypted ones on the workers (keys set up once, for every
// later run) and what closes the connection.
func (rf *remoteFlags) splitRunner(planPath string, plan *compiler.Plan) ([]split.Stage, split.Runner, func(), error) {
	job, err := rf.planJob(planPath, plan)
	if err != nil {
		return nil, nil, nil, err
	}
	sess, so, err := rf.splitOwner(job)
	if err != nil {
		return nil, nil, nil, err
	}
	stages, err := job.owner.RunStages()
	if err != nil {
		sess.close()
		return nil, nil, nil, err
	}
	return stages, so.Runner(context.Background()), sess.close, nil
}

// splitOwner connects for a split job and sets up one data owner per
// encrypted stage, printing how each stage's keys came.
func (rf *remoteFlags) splitOwner(job *remoteJob) (*remoteSession, *remote.SplitOwner, error) {
	op := job.owner
	if len(op.Inputs) != 1 || len(op.Outputs) != 1 {
		return nil, nil, fmt.Errorf("split plans of models with %d inputs and %d outputs are not supported; want one of each", len(op.Inputs), len(op.Outputs))
	}
	sess, err := rf.connect(job)
	if err != nil {
		return nil, nil, err
	}
	so, setups, err := remote.NewSplitOwner(sess.host, sess.find, op, sess.opts)
	if err != nil {
		sess.close()
		return nil, nil, err
	}
	for i, st := range op.Stages {
		if s := setups[i]; s != nil {
			dir := filepath.Join(rf.keys, fmt.Sprintf("stage-%d", st.Encrypted.Segments[0].Index))
			fmt.Printf("keys of stage %s: %v (%s)\n", st.Name, s.KeyGen.Round(time.Millisecond), keysHow(s, filepath.Join(dir, remote.SecretKeyFile)))
		}
	}
	return sess, so, nil
}

// closerToBound reports whether an error e measured against bound b is
// larger, relative to its bound, than the worst one so far (worst against
// worstBound; none yet when worstBound is 0). Unmeasured errors (b <= 0)
// never are.
// finiteOrMax is x, or the largest float64 for +Inf and NaN.
func finiteOrMax(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 1) {
		return math.MaxFloat64
	}
	return x
}

func closerToBound(e, b, worst, worstBound float64) bool {
	return b > 0 && (worstBound == 0 || e/b > worst/worstBound)
}
