package passes

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ciphercut/ciphercut/ir"
)

// Split cut (issue 7).
//
// ChooseSplit partitions a canonical tensor graph between the data owner
// (who holds the inputs and the secret key) and a worker (who holds the
// weights of the layers it runs and sees only ciphertexts). Every node runs
// in one of three modes: in plaintext on the data owner, in a prefix before
// the encrypted part or a suffix after it; encrypted on the worker; or, for
// an activation, client-aided: the worker returns the ciphertext of its
// input, the data owner decrypts it, applies the exact activation and
// encrypts the result for the next encrypted segment.
//
// The model owner's policy bounds what the data owner may learn: the
// weights of the first RevealPrefix and the last RevealSuffix weighted
// layers (nodes with a constant input of more than one element, in
// topological order), and, with ClientAided, the inputs of activations.
//
// Candidates are downward-closed prefixes and upward-closed suffixes of the
// node DAG (a cut is the set of edges leaving the prefix: with skip
// connections, several values may cross it), enumerated from the
// topological order and the ancestor and descendant cones of every node
// (gonum's topo and traverse); single-value cuts are the nodes dominating
// the graph's outputs (gonum's flow.Dominators). For each candidate the
// client-aided activations are chosen greedily by cost, and every
// encrypted segment's cost comes from the StageCoster, which lowers the
// segment (choosing its parameters and placing its bootstraps) and predicts
// its time with the cost model: bootstrap placement is decided per
// candidate, not after the choice.

// ClientAided says which nodes may run client-aided.
type ClientAided uint8

const (
	// ClientAidedNone (the default): every node of the encrypted part is
	// evaluated by the worker.
	ClientAidedNone ClientAided = iota
	// ClientAidedActivations: elementwise activations (see NeedsPolynomial).
	ClientAidedActivations
	// ClientAidedAll: every node that is not affine in its encrypted inputs
	// (activations, MaxPool, products of two encrypted values, layer
	// normalizations).
	ClientAidedAll
	// ClientAidedLayerNorm: layer normalizations only, kept whole
	// (TransformerOptions.KeepLayerNorm); softmax and every activation stay
	// encrypted.
	ClientAidedLayerNorm
)

func (c ClientAided) String() string {
	switch c {
	case ClientAidedNone:
		return "none"
	case ClientAidedActivations:
		return "activations"
	case ClientAidedAll:
		return "all"
	case ClientAidedLayerNorm:
		return "layernorm"
	}
	return fmt.Sprintf("client-aided(%d)", uint8(c))
}

// Set implements pflag.Value: none, activations, layernorm or all.
func (c *ClientAided) Set(s string) error {
	for _, v := range []ClientAided{ClientAidedNone, ClientAidedActivations, ClientAidedLayerNorm, ClientAidedAll} {
		if s == v.String() {
			*c = v
			return nil
		}
	}
	return fmt.Errorf("unknown client-aided mode %q (want none, activations, layernorm or all)", s)
}

// Type names the flag's value kind for pflag.
func (c *ClientAided) Type() string { return "none|activations|layernorm|all" }

// SplitPolicy is the model owner's privacy policy.
type SplitPolicy struct {
	// RevealPrefix is the number of leading weighted layers whose weights
	// the data owner may hold (run in plaintext). A negative value means
	// the default: 0, or for a model with integer inputs (token ids) the
	// weighted layers of its embedding (see Embedding), which must run on
	// the data owner.
	RevealPrefix int
	// RevealSuffix is the number of trailing weighted layers the data owner
	// may hold; DefaultRevealSuffix (the last layer: the data owner sees
	// the logits anyway) by default. A negative value means the default.
	RevealSuffix int
	// ClientAided says which nodes may run client-aided (revealing their
	// inputs to the data owner).
	ClientAided ClientAided
}

// DefaultRevealSuffix is the default SplitPolicy.RevealSuffix.
const DefaultRevealSuffix = 1

// Link describes the data owner and the network to the worker.
type Link struct {
	// Bandwidth in bits per second, both ways; 0 means DefaultBandwidth.
	Bandwidth float64
	// RTT is the round-trip time in seconds; negative means DefaultRTT.
	RTT float64
	// ClientSpeed is the data owner's speed relative to the machine of the
	// cost profile (2: twice as fast); 0 means 1. It scales the owner's
	// plaintext compute (OwnerMACsPerSecond at 1) and its encryption and
	// decryption.
	ClientSpeed float64
}

// Defaults of Link.
const (
	DefaultBandwidth   = 100e6 // 100 Mbit/s
	DefaultRTT         = 0.020 // 20 ms
	DefaultClientSpeed = 1.0
	// OwnerMACsPerSecond is the data owner's plaintext throughput at
	// ClientSpeed 1: multiply-accumulates per second of an optimized
	// float32 kernel on one core.
	OwnerMACsPerSecond = 1e9
)

// WithDefaults fills the unset fields of l with their defaults.
func (l Link) WithDefaults() Link {
	if l.Bandwidth <= 0 {
		l.Bandwidth = DefaultBandwidth
	}
	if l.RTT < 0 {
		l.RTT = DefaultRTT
	}
	if l.ClientSpeed <= 0 {
		l.ClientSpeed = DefaultClientSpeed
	}
	return l
}

// SplitOptions control ChooseSplit.
type SplitOptions struct {
	// Cut is "auto" (or ""): the cheapest feasible cut; "none": no
	// plaintext prefix or suffix (client-aided activations are still
	// chosen when the policy allows them); "after=NODE": the data owner
	// runs NODE and every node it depends on, the rest is chosen as with
	// auto.
	Cut    string
	Policy SplitPolicy
	Link   Link
	// MaxCandidates bounds the (prefix, suffix) pairs costed; 0 means
	// DefaultMaxSplitCandidates. On a chain every feasible cut point is
	// costed when they fit.
	MaxCandidates int
	// MaxEvaluations bounds the stage costings of the client-aided search
	// per candidate; 0 means DefaultMaxSplitEvaluations.
	MaxEvaluations int
	// Log, when set, receives a line per candidate costed.
	Log io.Writer
}

// Defaults of SplitOptions.
const (
	DefaultMaxSplitCandidates  = 32
	DefaultMaxSplitEvaluations = 48
)

// StageKind is what a stage of a split plan is.
type StageKind uint8

const (
	// StagePrefix runs in plaintext on the data owner before any
	// encryption.
	StagePrefix StageKind = iota + 1
	// StageEncrypted runs on the worker on ciphertexts.
	StageEncrypted
	// StageClientAided runs in plaintext on the data owner between two
	// encrypted stages (decrypt, exact activations, encrypt).
	StageClientAided
	// StageSuffix runs in plaintext on the data owner after decryption.
	StageSuffix
)

func (k StageKind) String() string {
	switch k {
	case StagePrefix:
		return "prefix"
	case StageEncrypted:
		return "encrypted"
	case StageClientAided:
		return "client-aided"
	case StageSuffix:
		return "suffix"
	}
	return fmt.Sprintf("stage(%d)", uint8(k))
}

// StageSpec is one stage of a split: the nodes it runs (names of the
// canonical graph's nodes, in graph order) and the values it reads from
// earlier stages or the graph inputs, and gives to later stages or the
// graph outputs.
type StageSpec struct {
	Kind            StageKind
	Nodes           []string
	Inputs, Outputs []string
}

// StageCost is the predicted cost of one encrypted stage on one ciphertext.
type StageCost struct {
	// WorkerSeconds is the worker's evaluation time; EncryptSeconds and
	// DecryptSeconds the data owner's (on the profile's machine).
	WorkerSeconds, EncryptSeconds, DecryptSeconds float64
	// UploadBytes and DownloadBytes are the stage's input and output
	// ciphertexts.
	UploadBytes, DownloadBytes int64
	Bootstraps                 int
}

// StageCoster predicts the cost of an encrypted stage (the compiler lowers
// it and asks the cost model).
type StageCoster func(s StageSpec) (StageCost, error)

// SplitCost is the predicted end-to-end latency of one sample under a
// split, in seconds, by part. Evaluation keys are sent once per session and
// are not counted.
type SplitCost struct {
	Owner     float64 `json:"owner"`     // plaintext prefix, client-aided steps, suffix
	Encrypt   float64 `json:"encrypt"`   // data owner
	Upload    float64 `json:"upload"`    // ciphertexts to the worker
	Worker    float64 `json:"worker"`    // homomorphic evaluation
	Download  float64 `json:"download"`  // ciphertexts back
	Decrypt   float64 `json:"decrypt"`   // data owner
	RoundTrip float64 `json:"roundTrip"` // RTT per encrypted stage
	Total     float64 `json:"total"`

	UploadBytes   int64 `json:"uploadBytes"`
	DownloadBytes int64 `json:"downloadBytes"`
	RoundTrips    int   `json:"roundTrips"`
	Bootstraps    int   `json:"bootstraps"`
}

// SplitCandidate is one costed split.
type SplitCandidate struct {
	// Label names the split: "none", "after NODE", "prefix NODE,...".
	Label string `json:"label"`
	// Cut lists the values crossing from the plaintext prefix to the
	// encrypted part (the graph inputs when there is no prefix); SuffixCut
	// the values crossing into the plaintext suffix.
	Cut       []string `json:"cut"`
	SuffixCut []string `json:"suffixCut,omitempty"`
	// Prefix, Suffix and ClientAided are node names.
	Prefix      []string    `json:"prefix,omitempty"`
	Suffix      []string    `json:"suffix,omitempty"`
	ClientAided []string    `json:"clientAided,omitempty"`
	Stages      []StageSpec `json:"stages"`
	Cost        SplitCost   `json:"cost"`
}

// SplitChoice is the result of ChooseSplit: the costed candidates, cheapest
// first; Chosen is the first.
type SplitChoice struct {
	Chosen     *SplitCandidate
	Candidates []*SplitCandidate
	// Chain says the graph is a chain and every feasible cut point was a
	// candidate (none left out by MaxCandidates).
	Chain bool
}

// WithDefaults resolves the defaults of o: Cut "auto", the default
// RevealSuffix, link, candidate and evaluation bounds.
func (o SplitOptions) WithDefaults() SplitOptions {
	if o.Cut == "" {
		o.Cut = "auto"
	}
	if o.Policy.RevealSuffix < 0 {
		o.Policy.RevealSuffix = DefaultRevealSuffix
	}
	if o.MaxCandidates <= 0 {
		o.MaxCandidates = DefaultMaxSplitCandidates
	}
	if o.MaxEvaluations <= 0 {
		o.MaxEvaluations = DefaultMaxSplitEvaluations
	}
	o.Link = o.Link.WithDefaults()
	return o
}

// ChooseSplit enumerates the feasible splits of the canonical graph g under
// opts.Policy, costs them with cost (encrypted stages) and opts.Link
// (plaintext compute, transfers, round trips), and returns them cheapest
// first. A policy no split satisfies is an error naming the constraint.
func ChooseSplit(g *ir.Graph, opts SplitOptions, cost StageCoster) (*SplitChoice, error) {
	opts = opts.WithDefaults()
	sg, err := newSplitGraph(g)
	if err != nil {
		return nil, err
	}
	if opts.Policy.RevealPrefix < 0 {
		opts.Policy.RevealPrefix = sg.weightedIn(sg.embedding())
	}
	pairs, truncated, err := sg.candidates(opts)
	if err != nil {
		return nil, err
	}
	ev := &splitEvaluator{sg: sg, opts: opts, cost: cost, stages: map[string]StageCost{}}
	choice := &SplitChoice{Chain: sg.chain && !truncated}
	var failed []error
	for k, pr := range pairs {
		c, err := ev.best(pr)
		if err != nil {
			// A candidate whose stage cannot be lowered (a value too large
			// for any ring, say) is left out; only when every one fails is
			// it an error.
			failed = append(failed, fmt.Errorf("split %s: %w", pr.label, err))
			if opts.Log != nil {
				fmt.Fprintf(opts.Log, "split candidate %d/%d: %s: %v\n", k+1, len(pairs), pr.label, err)
			}
			continue
		}
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "split candidate %d/%d: %s (%d stages costed so far)\n", k+1, len(pairs), c, len(ev.stages))
		}
		choice.Candidates = append(choice.Candidates, c)
	}
	if len(choice.Candidates) == 0 {
		return nil, fmt.Errorf("split %q: no candidate could be costed: %w", g.Name, errors.Join(failed...))
	}
	sort.SliceStable(choice.Candidates, func(i, j int) bool {
		return choice.Candidates[i].Cost.Total < choice.Candidates[j].Cost.Total
	})
	// Two pairs may give the same stages (a client-aided activation next
	// to the suffix joins it): keep the first.
	seen := map[string]bool{}
	kept := choice.Candidates[:0]
	for _, c := range choice.Candidates {
		var key strings.Builder
		for _, s := range c.Stages {
			fmt.Fprintf(&key, "%d:%s;", s.Kind, strings.Join(s.Nodes, ","))
		}
		if !seen[key.String()] {
			seen[key.String()] = true
			kept = append(kept, c)
		}
	}
	choice.Candidates = kept
	choice.Chosen = choice.Candidates[0]
	return choice, nil
}

// String is a one-line summary of a candidate: its label, its stages by
// kind, its predicted total.
func (c *SplitCandidate) String() string {
	count := map[StageKind]int{}
	for _, s := range c.Stages {
		count[s.Kind]++
	}
	var kinds []string
	for _, k := range []StageKind{StagePrefix, StageEncrypted, StageClientAided, StageSuffix} {
		if count[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%d %s", count[k], k))
		}
	}
	return fmt.Sprintf("%s: %d stages (%s), %d bootstraps, predicted %.3gs", c.Label, len(c.Stages), strings.Join(kinds, ", "), c.Cost.Bootstraps, c.Cost.Total)
}
