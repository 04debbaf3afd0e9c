package passes

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// splitChain is input -> Dense_1 -> Relu_2 -> Dense_3 -> Relu_4 -> Dense_5.
func splitChain(t *testing.T) *ir.Graph {
	b := newBuilder("chain", 13)
	x := b.input("x", 1, 4)
	h := b.op("Dense", nil, x, b.konst("w1", ir.Shape{4, 8}), b.konst("b1", ir.Shape{8}))
	h = b.op("Relu", nil, h)
	h = b.op("Dense", nil, h, b.konst("w3", ir.Shape{8, 8}), b.konst("b3", ir.Shape{8}))
	h = b.op("Relu", nil, h)
	h = b.op("Dense", nil, h, b.konst("w5", ir.Shape{8, 2}), b.konst("b5", ir.Shape{2}))
	g := b.output(h)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// splitResidual is input -> Dense_1 -> Relu_2 -> Dense_3 -> Relu_4, Add_5
// of Relu_4 and Relu_2 (a skip connection), Relu_6, Dense_7.
func splitResidual(t *testing.T) *ir.Graph {
	b := newBuilder("residual", 13)
	x := b.input("x", 1, 4)
	h := b.op("Dense", nil, x, b.konst("w1", ir.Shape{4, 8}), b.konst("b1", ir.Shape{8}))
	skip := b.op("Relu", nil, h)
	h = b.op("Dense", nil, skip, b.konst("w3", ir.Shape{8, 8}), b.konst("b3", ir.Shape{8}))
	h = b.op("Relu", nil, h)
	h = b.op("Add", nil, h, skip)
	h = b.op("Relu", nil, h)
	h = b.op("Dense", nil, h, b.konst("w7", ir.Shape{8, 2}), b.konst("b7", ir.Shape{2}))
	g := b.output(h)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// testCoster costs an encrypted stage at 1 s plus perAct seconds per
// activation it evaluates (a polynomial and its share of bootstraps), and
// one megabyte each way per value crossing it.
func testCoster(g *ir.Graph, perAct float64) (StageCoster, *int) {
	op := map[string]string{}
	for _, n := range g.Nodes {
		op[n.Name] = n.Op
	}
	calls := 0
	return func(s StageSpec) (StageCost, error) {
		calls++
		c := StageCost{WorkerSeconds: 1, EncryptSeconds: 0.01, DecryptSeconds: 0.01,
			UploadBytes: int64(len(s.Inputs)) << 20, DownloadBytes: int64(len(s.Outputs)) << 20}
		for _, n := range s.Nodes {
			if op[n] == "Relu" {
				c.WorkerSeconds += perAct
				c.Bootstraps++
			}
		}
		return c, nil
	}, &calls
}

func TestSplitChainOptimum(t *testing.T) {
	g := splitChain(t)
	coster, _ := testCoster(g, 5)
	cases := []struct {
		name   string
		policy SplitPolicy
		cut    string
		want   string // label of the chosen split
		stages []StageKind
	}{
		{"default policy: last layer and the activation before it", SplitPolicy{RevealSuffix: -1}, "auto",
			"suffix from Relu_4", []StageKind{StageEncrypted, StageSuffix}},
		{"reveal one leading layer", SplitPolicy{RevealPrefix: 1, RevealSuffix: -1}, "auto",
			"after Relu_2 + suffix from Relu_4", []StageKind{StagePrefix, StageEncrypted, StageSuffix}},
		{"cut none", SplitPolicy{RevealPrefix: 3, RevealSuffix: 3}, "none",
			"none", []StageKind{StageEncrypted}},
		{"cut after Dense_1", SplitPolicy{RevealPrefix: 1, RevealSuffix: 0}, "after=Dense_1",
			"after Dense_1", []StageKind{StagePrefix, StageEncrypted}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := ChooseSplit(g, SplitOptions{Cut: tc.cut, Policy: tc.policy}, coster)
			if err != nil {
				t.Fatal(err)
			}
			if !ch.Chain {
				t.Error("chain not recognized")
			}
			if ch.Chosen.Label != tc.want {
				t.Errorf("chose %q, want %q; candidates:\n%v", ch.Chosen.Label, tc.want, ch.Candidates)
			}
			var kinds []StageKind
			for _, s := range ch.Chosen.Stages {
				kinds = append(kinds, s.Kind)
			}
			if !reflect.DeepEqual(kinds, tc.stages) {
				t.Errorf("stages %v, want %v", kinds, tc.stages)
			}
			for i := 1; i < len(ch.Candidates); i++ {
				if ch.Candidates[i].Cost.Total < ch.Candidates[i-1].Cost.Total {
					t.Errorf("candidates not sorted by cost")
				}
			}
		})
	}
	// Every feasible cut point of the chain is a candidate: with every
	// layer revealable, prefixes after each of the 5 nodes but the last
	// (and none) times the suffixes that leave a node to encrypt.
	ch, err := ChooseSplit(g, SplitOptions{Policy: SplitPolicy{RevealPrefix: 3, RevealSuffix: 3}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Candidates) != 15 {
		t.Errorf("%d candidates on a chain of 5 nodes, want 15 (6+5+4 choose-2 pairs leaving a node)", len(ch.Candidates))
	}
	// Fewer allowed: the best few, no longer every cut point.
	ch, err = ChooseSplit(g, SplitOptions{MaxCandidates: 5, Policy: SplitPolicy{RevealPrefix: 3, RevealSuffix: 3}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Candidates) != 5 || ch.Chain {
		t.Errorf("%d candidates, chain %v; want 5 and not every cut point", len(ch.Candidates), ch.Chain)
	}
}

func TestSplitClientAided(t *testing.T) {
	g := splitChain(t)
	// Expensive activations: both run client-aided.
	coster, _ := testCoster(g, 5)
	ch, err := ChooseSplit(g, SplitOptions{Cut: "none", Policy: SplitPolicy{ClientAided: ClientAidedActivations}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	c := ch.Chosen
	if !reflect.DeepEqual(c.ClientAided, []string{"Relu_2", "Relu_4"}) {
		t.Errorf("client-aided %v, want both activations", c.ClientAided)
	}
	want := []StageKind{StageEncrypted, StageClientAided, StageEncrypted, StageClientAided, StageEncrypted}
	var kinds []StageKind
	for _, s := range c.Stages {
		kinds = append(kinds, s.Kind)
	}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("stages %v, want %v", kinds, want)
	}
	if c.Cost.Bootstraps != 0 || c.Cost.RoundTrips != 3 {
		t.Errorf("%d bootstraps, %d round trips; want 0 and 3", c.Cost.Bootstraps, c.Cost.RoundTrips)
	}
	// Cheap activations: a round trip costs more than the polynomial.
	coster, _ = testCoster(g, 0.001)
	ch, err = ChooseSplit(g, SplitOptions{Cut: "none", Policy: SplitPolicy{ClientAided: ClientAidedActivations}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Chosen.ClientAided) != 0 {
		t.Errorf("client-aided %v with cheap activations, want none", ch.Chosen.ClientAided)
	}
	// The policy forbids it: no client-aided step whatever the cost.
	coster, _ = testCoster(g, 5)
	ch, err = ChooseSplit(g, SplitOptions{Cut: "none"}, coster)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Chosen.ClientAided) != 0 {
		t.Errorf("client-aided %v under --client-aided none", ch.Chosen.ClientAided)
	}
}

func TestSplitResidual(t *testing.T) {
	g := splitResidual(t)
	coster, _ := testCoster(g, 5)
	ch, err := ChooseSplit(g, SplitOptions{Policy: SplitPolicy{RevealPrefix: 1, RevealSuffix: -1}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Chain {
		t.Error("residual graph taken for a chain")
	}
	// The data owner may run everything but Dense_1 and Dense_3 (no
	// weights, or the last layer's): the encrypted part is Dense_3 alone.
	if got, want := ch.Chosen.Label, "after Relu_2 + suffix from Relu_4"; got != want {
		t.Errorf("chose %q, want %q; candidates %v", got, want, ch.Candidates)
	}
	// The skip connection: the encrypted part reads Relu_2 twice (Dense_3
	// and Add_5), one value crossing.
	if !reflect.DeepEqual(ch.Chosen.Cut, []string{"relu_2"}) {
		t.Errorf("cut %v, want [relu_2]", ch.Chosen.Cut)
	}
	// With two leading layers revealable, a cut through the skip
	// connection (two values cross) is among the candidates.
	ch, err = ChooseSplit(g, SplitOptions{Policy: SplitPolicy{RevealPrefix: 2, RevealSuffix: 0}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range ch.Candidates {
		if reflect.DeepEqual(c.Cut, []string{"dense_3", "relu_2"}) || reflect.DeepEqual(c.Cut, []string{"relu_4", "relu_2"}) {
			found = true
		}
	}
	if !found {
		t.Errorf("no cut through the skip connection among %v", ch.Candidates)
	}
	// Client-aided inside the residual block: the second segment reads the
	// skip value from the prefix and the client-aided Relu_4.
	ch, err = ChooseSplit(g, SplitOptions{Cut: "after=Relu_2", Policy: SplitPolicy{RevealPrefix: 1, RevealSuffix: 0, ClientAided: ClientAidedActivations}}, coster)
	if err != nil {
		t.Fatal(err)
	}
	c := ch.Chosen
	if !reflect.DeepEqual(c.ClientAided, []string{"Relu_4", "Relu_6"}) {
		t.Fatalf("client-aided %v, want Relu_4 and Relu_6", c.ClientAided)
	}
	var kinds []StageKind
	for _, s := range c.Stages {
		kinds = append(kinds, s.Kind)
	}
	want := []StageKind{StagePrefix, StageEncrypted, StageClientAided, StageEncrypted, StageClientAided, StageEncrypted}
	if !reflect.DeepEqual(kinds, want) {
		t.Fatalf("stages %v, want %v", kinds, want)
	}
	if in := c.Stages[3].Inputs; !reflect.DeepEqual(in, []string{"relu_4", "relu_2"}) {
		t.Errorf("second segment reads %v, want [relu_4 relu_2]", in)
	}
}

func TestSplitPolicyErrors(t *testing.T) {
	g := splitChain(t)
	coster, _ := testCoster(g, 5)
	for _, tc := range []struct {
		opts SplitOptions
		want string
	}{
		{SplitOptions{Cut: "after=Dense_3", Policy: SplitPolicy{RevealPrefix: 1}}, "--reveal-prefix 1"},
		{SplitOptions{Cut: "after=Dense_5", Policy: SplitPolicy{RevealPrefix: 3}}, "leaves a node to encrypt"},
		{SplitOptions{Cut: "after=nope"}, `no node "nope"`},
		{SplitOptions{Cut: "sideways"}, "unknown --cut"},
	} {
		_, err := ChooseSplit(g, tc.opts, coster)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.opts, err, tc.want)
		}
	}
}

// TestSplitSkipsUncostableCandidates checks that a candidate whose stage
// cannot be lowered is left out, and that an error says so when none can.
func TestSplitSkipsUncostableCandidates(t *testing.T) {
	g := splitChain(t)
	coster, _ := testCoster(g, 5)
	picky := func(s StageSpec) (StageCost, error) {
		if len(s.Nodes) > 2 {
			return StageCost{}, fmt.Errorf("stage of %d nodes too large", len(s.Nodes))
		}
		return coster(s)
	}
	ch, err := ChooseSplit(g, SplitOptions{Policy: SplitPolicy{RevealPrefix: 1, RevealSuffix: 1}}, picky)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ch.Chosen.Label, "after Relu_2 + suffix from Relu_4"; got != want {
		t.Errorf("chose %q, want %q", got, want)
	}
	never := func(StageSpec) (StageCost, error) { return StageCost{}, fmt.Errorf("no ring holds it") }
	if _, err := ChooseSplit(g, SplitOptions{}, never); err == nil || !strings.Contains(err.Error(), "no candidate could be costed") || !strings.Contains(err.Error(), "no ring holds it") {
		t.Errorf("error %v, want one saying no candidate could be costed and why", err)
	}
}

// splitEmbedding is a token model: ids (int64) -> Gather_1 (embedding) ->
// Add_2 (positional) -> Dense_3 -> Relu_4 -> Dense_5.
func splitEmbedding(t *testing.T) *ir.Graph {
	b := newBuilder("tokens", 13)
	ids := &ir.Value{Name: "ids", DType: ir.Int64, Shape: ir.Shape{1, 4}}
	b.g.Inputs = append(b.g.Inputs, ids)
	h := b.op("Gather", nil, b.konst("table", ir.Shape{10, 8}), ids)
	h = b.op("Add", nil, h, b.konst("pos", ir.Shape{1, 4, 8}))
	h = b.op("Dense", nil, h, b.konst("w3", ir.Shape{8, 8}), b.konst("b3", ir.Shape{8}))
	h = b.op("Relu", nil, h)
	h = b.op("Dense", nil, h, b.konst("w5", ir.Shape{8, 3}), b.konst("b5", ir.Shape{3}))
	g := b.output(h)
	if err := InferShapes(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSplitEmbedding checks that nodes reading integer inputs stay on the
// data owner in every candidate, that the default policy reveals the token
// and positional embedding, and that a policy hiding the embedding is an
// error naming the integer input.
func TestSplitEmbedding(t *testing.T) {
	g := splitEmbedding(t)
	emb, err := Embedding(g)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(emb.Nodes, []string{"Gather_1"}) || !reflect.DeepEqual(emb.Embedding, []string{"Gather_1", "Add_2"}) || emb.Weighted != 2 {
		t.Fatalf("embedding %+v, want Gather_1 forced, Gather_1 and Add_2 revealed (2 weighted)", emb)
	}
	if !strings.Contains(emb.String(), "ids") {
		t.Errorf("note %q does not name the input", emb)
	}
	coster, _ := testCoster(g, 5)
	for _, cut := range []string{"auto", "none"} {
		ch, err := ChooseSplit(g, SplitOptions{Cut: cut, Policy: SplitPolicy{RevealPrefix: -1}}, coster)
		if err != nil {
			t.Fatalf("--cut %s: %v", cut, err)
		}
		for _, c := range ch.Candidates {
			if len(c.Prefix) == 0 || c.Prefix[0] != "Gather_1" {
				t.Errorf("--cut %s: candidate %s has prefix %v, want it to start with Gather_1", cut, c.Label, c.Prefix)
			}
			for _, s := range c.Stages {
				if s.Kind == StageEncrypted && slices.Contains(s.Inputs, "ids") {
					t.Errorf("--cut %s: candidate %s encrypts the token ids", cut, c.Label)
				}
			}
		}
	}
	_, err = ChooseSplit(g, SplitOptions{Cut: "none", Policy: SplitPolicy{RevealPrefix: 0}}, coster)
	if err == nil || !strings.Contains(err.Error(), "integer input ids") || !strings.Contains(err.Error(), "--reveal-prefix 1") {
		t.Errorf("error %v, want one naming the integer input and --reveal-prefix 1", err)
	}
}
