package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/split"
	"github.com/ciphercut/ciphercut/testsuite/smallring"
	"github.com/ciphercut/ciphercut/testsuite/synth"
)

// TestGenerateInsecureSmallRing compiles a tiny synthetic causal language
// model (token and positional embedding, one causal attention block,
// LayerNormalization, head; see synth.GPT) to a 128-bit split plan: the
// embedding on the data owner by the default policy, the block encrypted,
// the last LayerNormalization and the head on the data owner
// (--reveal-suffix 2). It moves the encrypted stage to the test-only ring
// N=2^12 (same levels and rotations) and generates tokens greedily,
// encrypted: every token must equal the exact model's greedy generation.
func TestGenerateInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take tens of seconds; skipped in -short mode")
	}
	o := synth.GPTOptions{AttentionOptions: synth.AttentionOptions{Tokens: 6, Dim: 8, Heads: 2, Seed: 2}, Vocab: 8}
	plan, lm, exact := compileGPTSmallRing(t, o, passes.SplitPolicy{RevealPrefix: -1, RevealSuffix: 2})
	var kinds []passes.StageKind
	for _, s := range plan.Stages {
		kinds = append(kinds, s.Kind)
	}
	if want := []passes.StageKind{passes.StagePrefix, passes.StageEncrypted, passes.StageSuffix}; !slices.Equal(kinds, want) {
		t.Fatalf("stages %v, want %v", kinds, want)
	}
	if n := plan.Stages[0].Nodes; !slices.Contains(n, "Gather_2") {
		t.Errorf("prefix %v does not hold the embedding", n)
	}
	stages, err := plan.RunStages()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := lm.tokenize("BadCab")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != o.Tokens {
		t.Fatalf("prompt of %d tokens, want it padded to %d", len(ids), o.Tokens)
	}
	var out bytes.Buffer
	res, err := lm.generate(&out, [][]int64{ids}, 4, stages, split.KeepSessions(nil), exact, nil)
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.SameSequence != res.Tokens {
		t.Errorf("encrypted generation %v, plaintext %v", res.Encrypted, res.Plain)
	}
	// Each token measures its encrypted stage against the plaintext
	// reference on the same inputs, within the plan's bound.
	if !strings.Contains(out.String(), "max error ") || res.Bound <= 0 || res.MaxError > res.Bound {
		t.Errorf("stage error %.3e against a bound of %.3e; want it measured and within", res.MaxError, res.Bound)
	}
	if !strings.Contains(out.String(), ": largest error ") {
		t.Errorf("the summary gives no stage's largest error against its bound")
	}
	// The same plan from a file, its encrypted stage on an in-process
	// libp2p worker (compared with the plan's polynomial reference: the
	// synthetic model has no ONNX file). Two prompts share the
	// ciphertexts.
	path := filepath.Join(t.TempDir(), "gpt.plan")
	if err := compiler.WritePlan(path, plan); err != nil {
		t.Fatal(err)
	}
	if err := run("generate", path, "--prompt", "BadCab", "--prompt", "hgfedc", "--tokens", "2", "--workers", "1"); err != nil {
		t.Fatal(err)
	}
	// In process, the stages' sessions kept within shares of the memory;
	// checkpointed after one token, then resumed for a second, its
	// plot drawn after each.
	ckpt := filepath.Join(t.TempDir(), "gen.json")
	chart := filepath.Join(t.TempDir(), "gen.svg")
	for tokens := range 2 {
		if err := run("generate", path, "--prompt", "BadCab", "--tokens", fmt.Sprint(tokens+1), "--checkpoint", ckpt, "--plot", chart); err != nil {
			t.Fatal(err)
		}
		if svg, err := os.ReadFile(chart); err != nil {
			t.Fatal(err)
		} else if !strings.Contains(string(svg), fmt.Sprintf(">%d<", tokens+1)) || !strings.Contains(string(svg), "bound") {
			t.Errorf("plot after token %d lacks its label or the error panel", tokens+1)
		}
		var saved generationLog
		if data, err := os.ReadFile(ckpt); err != nil {
			t.Fatal(err)
		} else if err := json.Unmarshal(data, &saved); err != nil {
			t.Fatal(err)
		}
		if len(saved.Steps) != tokens+1 {
			t.Fatalf("checkpoint holds %d steps after --tokens %d", len(saved.Steps), tokens+1)
		}
		if ss := saved.Steps[tokens].Stages; len(ss) == 0 || ss[0].Bound <= 0 || ss[0].MaxError > ss[0].Bound {
			t.Errorf("token %d keeps its stages' errors %+v; want each measured and within its bound", tokens+1, ss)
		}
		if tokens == 1 && !slices.Equal([]int64{saved.Steps[0].Encrypted[0], saved.Steps[1].Encrypted[0]}, res.Encrypted[0][:2]) {
			t.Errorf("resumed generation %v, want %v", saved.Steps, res.Encrypted[0][:2])
		}
	}
}

// TestGenerateLayerNormClientAidedInsecureSmallRing compiles the synthetic
// model of TestGenerateInsecureSmallRing with layer normalizations
// client-aided (--client-aided layernorm; softmax stays encrypted): the
// data owner computes each LayerNormalization exactly between encrypted
// stages. Two prompts generate together, encrypted on the test-only ring
// N=2^12, every token equal to the exact model's.
func TestGenerateLayerNormClientAidedInsecureSmallRing(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted runs take tens of seconds; skipped in -short mode")
	}
	o := synth.GPTOptions{AttentionOptions: synth.AttentionOptions{Tokens: 6, Dim: 8, Heads: 2, Seed: 2}, Vocab: 8}
	plan, lm, exact := compileGPTSmallRing(t, o, passes.SplitPolicy{RevealPrefix: -1, ClientAided: passes.ClientAidedLayerNorm})
	aided, softmax := 0, false
	for _, s := range plan.Stages {
		if s.Kind == passes.StageClientAided {
			aided++
		}
		if s.Program != nil {
			softmax = softmax || strings.Contains(strings.Join(s.Nodes, " "), "Softmax")
		}
	}
	if aided == 0 || !softmax {
		t.Fatalf("%d client-aided stages, softmax encrypted %v: want layer normalizations client-aided and the softmax encrypted", aided, softmax)
	}
	for _, s := range plan.Stages {
		for _, n := range s.Nodes {
			if strings.Contains(n, "LayerNormalization") && s.Kind == passes.StageEncrypted {
				t.Errorf("encrypted stage holds %s", n)
			}
		}
	}
	stages, err := plan.RunStages()
	if err != nil {
		t.Fatal(err)
	}
	var prompts [][]int64
	for _, p := range []string{"BadCab", "hgfedc"} {
		ids, err := lm.tokenize(p)
		if err != nil {
			t.Fatal(err)
		}
		prompts = append(prompts, ids)
	}
	var out bytes.Buffer
	res, err := lm.generate(&out, prompts, 3, stages, split.KeepSessions(nil), exact, nil)
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Tokens != 6 || res.SameSequence != res.Tokens {
		t.Errorf("encrypted generation %v, plaintext %v", res.Encrypted, res.Plain)
	}
	// On two in-process workers, one per block of stages, within a memory
	// limit that holds one stage's evaluator at a time: the workers' pool
	// drops each evaluator for the next and builds it again from the key
	// cache at the next token.
	path := filepath.Join(t.TempDir(), "gpt.plan")
	if err := compiler.WritePlan(path, plan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) }) // --memory-limit sets the process's
	stdout, err := runCaptured(t, "generate", path, "--prompt", "BadCab", "--prompt", "hgfedc", "--tokens", "2", "--workers", "2", "--memory-limit", "3GiB")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "agreement: 4/4 tokens") {
		t.Errorf("generation on two workers within 3 GiB:\n%s", stdout)
	}
}

// compileGPTSmallRing compiles synth.GPT(o) under policy to a 128-bit
// split plan, moves its encrypted stages to the test-only ring N=2^12 and
// returns it with its language model and the exact model.
func compileGPTSmallRing(t *testing.T, o synth.GPTOptions, policy passes.SplitPolicy) (*compiler.Plan, *languageModel, *ir.Graph) {
	t.Helper()
	g := synth.GPT(o)
	plan, err := compiler.Compile(g, "gpt", []byte("synthetic gpt"), compiler.CompileOptions{Calib: synth.GPTTokens(o, 256, 5),
		Split: &passes.SplitOptions{Cut: "auto", Policy: policy}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", plan.Approximations)
	if !strings.Contains(plan.Approximations, "causal mask") {
		t.Errorf("no causal mask rewritten:\n%s", plan.Approximations)
	}
	for i, s := range plan.Stages {
		if p := s.Program; p != nil {
			if p.Params.SecurityBits < 128 {
				t.Fatalf("stage %d: %s, want 128-bit security", i, p.Params)
			}
			t.Logf("stage %d (%s): %s, depth %d, %d bootstraps", i, s.Kind, p.Params, p.Depth(), p.Bootstraps())
			if plan.Stages[i].Program, err = smallring.Move(p, 12); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Logf("stage %d (%s): %v", i, s.Kind, s.Nodes)
		}
	}
	plan.Vocab = strings.Split("abcdefgh", "")
	ref, err := ir.UnmarshalGraph(plan.Graph)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := newLanguageModel("gpt.plan", plan, ref)
	if err != nil {
		t.Fatal(err)
	}
	exact := g.Clone()
	if err := passes.BindInputs(exact, map[string]ir.Shape{"input": {1, o.Tokens}}); err != nil {
		t.Fatal(err)
	}
	if err := compiler.RunPasses(exact, compiler.Canonicalize, compiler.Options{}); err != nil {
		t.Fatal(err)
	}
	return plan, lm, exact
}

// TestGenerateErrors checks generate's errors on plans it cannot use.
func TestGenerateErrors(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "mlp.plan")
	if err := run("compile", filepath.Join(digitsMLP, "model.onnx"), "-o", plan); err != nil {
		t.Fatal(err)
	}
	badPrompts := filepath.Join(dir, "bad-prompts.json")
	if err := os.WriteFile(badPrompts, []byte(`["ok", {"text": "no prompt field"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"generate", plan, "--prompt", "hi"}, "token ids"},
		{[]string{"generate", plan, "--prompt", "hi", "--tokens", "0"}, "--tokens 0"},
		{[]string{"generate", plan}, "no prompt"},
		{[]string{"generate", plan, "--prompts", badPrompts}, "bad-prompts.json: entry 1"},
		{[]string{"generate", plan, "--prompt", "hi", "--plot", "tokens.jpg"}, "tokens.jpg: want a .svg or .png"},
		{[]string{"generate", plan, "--prompt", "hi", "--plot", filepath.Join(dir, "missing", "tokens.svg")}, "no directory"},
	} {
		err := run(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestCompileTinyGPT compiles the zoo's tiny-gpt with the defaults: a
// split plan whose prefix is the token and positional embedding and whose
// suffix is the head, the two blocks encrypted at 128-bit security. Its
// compilation probes replicated attention products of 32768 slots and
// takes tens of minutes on two cores, so it runs only with
// CIPHERCUT_TINY_GPT=1 (and not in -short mode).
func TestCompileTinyGPT(t *testing.T) {
	if testing.Short() || os.Getenv("CIPHERCUT_TINY_GPT") != "1" {
		t.Skip("tiny-gpt compiles in tens of minutes; set CIPHERCUT_TINY_GPT=1 (not in -short mode)")
	}
	dir := t.TempDir()
	planPath := filepath.Join(dir, "tiny.plan")
	if err := run("compile", "../../testsuite/models/tiny-gpt/model.onnx", "-o", planPath); err != nil {
		t.Fatal(err)
	}
	plan, err := compiler.ReadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []passes.StageKind
	for _, s := range plan.Stages {
		kinds = append(kinds, s.Kind)
		if p := s.Program; p != nil && p.Params.SecurityBits < 128 {
			t.Errorf("%s stage: %s, want 128-bit security", s.Kind, p.Params)
		}
	}
	if len(kinds) < 3 || kinds[0] != passes.StagePrefix || kinds[len(kinds)-1] != passes.StageSuffix {
		t.Fatalf("stages %v, want a prefix, encrypted stages and a suffix", kinds)
	}
	if !slices.Contains(plan.Stages[0].Nodes, "/tok/Gather") || !slices.Contains(plan.Stages[len(kinds)-1].Nodes, "/head/MatMul") {
		t.Errorf("prefix %v, suffix %v: want the embedding and the head on the data owner", plan.Stages[0].Nodes, plan.Stages[len(kinds)-1].Nodes)
	}
	if len(plan.Vocab) != 42 {
		t.Errorf("vocabulary of %d tokens, want tiny-gpt's 42", len(plan.Vocab))
	}
}

// TestCheckpointRefusesOtherRuns checks that a checkpoint resumes only the
// generation it was written for.
func TestCheckpointRefusesOtherRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gen.json")
	prompts := [][]int64{{1, 2, 3}}
	c, err := openCheckpoint(path, "plan-a", prompts, 4, 8)
	if err != nil || len(c.log.Steps) != 0 {
		t.Fatalf("new checkpoint: %v, %d steps", err, len(c.log.Steps))
	}
	for range 2 {
		if err := c.add(tokenStep{Encrypted: []int64{4}, Context: []int64{4}, Plain: []int64{5}}); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := openCheckpoint(path, "plan-a", prompts, 4, 8); err != nil || len(c.log.Steps) != 2 {
		t.Fatalf("resumed checkpoint: %v, want 2 steps", err)
	}
	for _, tc := range []struct {
		plan    string
		prompts [][]int64
		tokens  int
		want    string
	}{
		{"plan-b", prompts, 4, "another plan"},
		{"plan-a", [][]int64{{1, 2, 4}}, 4, "other prompts"},
		{"plan-a", [][]int64{{1, 2, 3}, {1, 2, 3}}, 4, "other prompts"},
		{"plan-a", prompts, 1, "more than --tokens 1"},
	} {
		if _, err := openCheckpoint(path, tc.plan, tc.prompts, tc.tokens, 8); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v --tokens %d: error %v, want one saying %q", tc.plan, tc.prompts, tc.tokens, err, tc.want)
		}
	}
	if _, err := openCheckpoint(path, "plan-a", prompts, 4, 5); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("token 5 in a vocabulary of 5: error %v", err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openCheckpoint(path, "plan-a", prompts, 4, 8); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt checkpoint: error %v, want one naming %s", err, path)
	}
}

// FuzzCheckpoint feeds arbitrary bytes to the checkpoint reader: an error
// or a checkpoint whose steps hold one token of the vocabulary per prompt,
// never a panic.
func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte(`{"Plan":"p","Prompts":[[1,2]],"Steps":[{"Encrypted":[3],"Context":[3],"Plain":[4]}]}`))
	f.Add([]byte(`{"Plan":"p","Prompts":[[1,2]],"Steps":[{"Encrypted":[9],"Context":[3],"Plain":[-1]}]}`))
	f.Add([]byte(`{"Plan":"p","Prompts":[[1,2]],"Steps":[null]}`))
	f.Add([]byte(`{"Plan":"p","Prompts":[[1,2]],"Steps":[{"Encrypted":[3],"Context":[3],"Plain":[4],"Seconds":600,` +
		`"Stages":[{"Stage":"encrypted 1","MaxError":8e-4,"Bound":9e59},{"Stage":"encrypted 2","MaxError":0,"Bound":1.7976931348623157e308}]}]}`))
	f.Add([]byte(`{"Plan":"p","Prompts":[[1,2]],"Steps":[{"Encrypted":[3],"Context":[3],"Plain":[4],"Stages":[{"MaxError":-1,"Bound":1}]}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "gen.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := openCheckpoint(path, "p", [][]int64{{1, 2}}, 4, 8)
		if err != nil {
			return
		}
		lm := &languageModel{vocab: []string{"a", "b", "c", "d", "e", "f", "g", "h"}}
		for k, st := range c.log.Steps {
			lm.stepLine(k, 4, st)
		}
		lm.summarize(io.Discard, c.log.Prompts, c.log.Prompts, c.log.Prompts, c.log.Steps)
		// Whatever a checkpoint that opens holds, its chart draws or
		// fails with an error, never a panic.
		c.plot, c.title = filepath.Join(dir, "gen.svg"), "fuzz"
		_ = c.draw()
	})
}
