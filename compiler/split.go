package compiler

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/passes"
	"github.com/ciphercut/ciphercut/runtime/split"
)

// Stage is one stage of a split plan. The data owner runs the plaintext
// stages (prefix, client-aided, suffix) and encrypts the inputs of the
// encrypted stages and decrypts their outputs; a worker evaluates the
// encrypted stages with public keys only. Values pass between stages by
// name, through the data owner.
type Stage struct {
	Kind passes.StageKind
	// Nodes names the canonical graph's nodes the stage runs.
	Nodes []string
	// Inputs and Outputs name the tensor values the stage reads from
	// earlier stages (or the model inputs) and gives to later stages (or
	// the model outputs); an encrypted stage's program has inputs and
	// outputs of these names.
	Inputs, Outputs []string
	// Graph is ir.Graph.MarshalBinary of the stage's tensor graph: for a
	// plaintext stage the exact operators the data owner runs, for an
	// encrypted stage the approximated graph its program implements (its
	// plaintext reference).
	Graph []byte
	// Program is an encrypted stage's CKKS program; nil otherwise.
	Program *ckksir.Program
}

// SplitReport records how a split plan's split was chosen.
type SplitReport struct {
	Cut    string
	Policy passes.SplitPolicy
	Link   passes.Link
	// Chain says every feasible cut point was costed (the model is a
	// chain); otherwise Candidates are the best few.
	Chain bool
	// Candidates are the costed splits, cheapest first (costs from the
	// stages as lowered for costing, without calibration); the first is
	// the one chosen.
	Candidates []passes.SplitCandidate
	// Predicted is the chosen split's cost from its final programs.
	Predicted passes.SplitCost
	// Embedding is what the model's integer inputs (token ids) forced on
	// the data owner; zero for models with floating-point inputs.
	Embedding passes.EmbeddingPolicy
}

// verifyStages checks the stages of a split plan read from a file: known
// kinds, decodable graphs, valid programs on the encrypted stages only,
// programs whose inputs and outputs are the stage's, and every stage input
// given by an earlier stage or a model input.
func verifyStages(stages []Stage, model *ir.Graph) error {
	given := map[string]bool{}
	for _, in := range model.Inputs {
		given[in.Name] = true
	}
	for i, s := range stages {
		if s.Kind < passes.StagePrefix || s.Kind > passes.StageSuffix {
			return fmt.Errorf("stage %d: unknown kind %d", i, s.Kind)
		}
		if _, err := ir.UnmarshalGraph(s.Graph); err != nil {
			return fmt.Errorf("stage %d (%s): graph: %v", i, s.Kind, err)
		}
		if (s.Kind == passes.StageEncrypted) != (s.Program != nil) {
			return fmt.Errorf("stage %d (%s): a program belongs to encrypted stages only", i, s.Kind)
		}
		if s.Program != nil {
			if err := verifyProgram(s.Program); err != nil {
				return fmt.Errorf("stage %d (%s): %v", i, s.Kind, err)
			}
			if err := sameNames(s.Program.Inputs, s.Inputs); err != nil {
				return fmt.Errorf("stage %d (%s): program inputs: %v", i, s.Kind, err)
			}
			if err := sameNames(s.Program.Outputs, s.Outputs); err != nil {
				return fmt.Errorf("stage %d (%s): program outputs: %v", i, s.Kind, err)
			}
		}
		for _, in := range s.Inputs {
			if !given[in] {
				return fmt.Errorf("stage %d (%s) reads %q, which no earlier stage gives", i, s.Kind, in)
			}
		}
		for _, o := range s.Outputs {
			given[o] = true
		}
	}
	return nil
}

func sameNames(ios []ckksir.IO, names []string) error {
	if len(ios) != len(names) {
		return fmt.Errorf("%d values, the stage has %d", len(ios), len(names))
	}
	for i, io := range ios {
		if io.Name != names[i] {
			return fmt.Errorf("value %d is %q, the stage's %q", i, io.Name, names[i])
		}
	}
	return nil
}

// IsSplit reports whether p is a split plan (stages instead of one
// program).
func (p *Plan) IsSplit() bool { return len(p.Stages) > 0 }

// RunStages decodes a split plan's stages for runtime/split, named
// "prefix", "encrypted 1", "client-aided 1", ..., "suffix".
func (p *Plan) RunStages() ([]split.Stage, error) {
	if !p.IsSplit() {
		return nil, fmt.Errorf("plan of %s is not split", p.ModelName)
	}
	count := map[passes.StageKind]int{}
	out := make([]split.Stage, len(p.Stages))
	for i, s := range p.Stages {
		g, err := ir.UnmarshalGraph(s.Graph)
		if err != nil {
			return nil, fmt.Errorf("stage %d (%s): %w", i, s.Kind, err)
		}
		count[s.Kind]++
		name := s.Kind.String()
		if s.Kind == passes.StageEncrypted || s.Kind == passes.StageClientAided {
			name = fmt.Sprintf("%s %d", name, count[s.Kind])
		}
		out[i] = split.Stage{Name: name, Inputs: s.Inputs, Outputs: s.Outputs, Graph: g, Program: s.Program}
		if s.Program != nil {
			out[i].Bootstraps = s.Program.Bootstraps()
		}
	}
	return out, nil
}
