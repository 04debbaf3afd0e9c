package local

import (
	"fmt"
	"strings"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
	"github.com/ciphercut/ciphercut/runtime/ckks"
)

// RuntimeOverhead is the memory an encrypted run needs beyond what
// MemoryPlan itemizes: the Go runtime, the plaintext reference, transient
// buffers of Lattigo's bootstrapping and the garbage collector's headroom
// over the live heap. 1.75 GiB: ResNet-20 (N=2^16, 36 bootstraps over two
// ciphertexts) peaked at 16.72 GiB against a plan of 16.00 GiB made with
// 1 GiB.
const RuntimeOverhead int64 = 7 << 28

// WeightBytes is the memory an in-process run keeps of prog's plaintext
// data: the program as loaded (ckksir.Program.WeightBytes) and the
// evaluator's copy of the matrix diagonals regrouped by full-slot rotation,
// about as large as the program's own (ckksir.Program.DiagonalBytes).
func WeightBytes(prog *ckksir.Program) int64 {
	return prog.WeightBytes() + prog.DiagonalBytes()
}

// MemoryPlan is the predicted peak resident memory of an encrypted run in
// one process and the strategy chosen to keep it within a limit: how many
// ciphertexts are evaluated at once (lanes) and how many matrix diagonals
// stay encoded between uses (the rest are encoded again at each use, one
// giant step at a time).
type MemoryPlan struct {
	// Limit is the budget the plan was made for, in bytes.
	Limit int64
	// Keys is the evaluation keys' size, bootstrapping keys included.
	Keys int64
	// BootMatrices is the bootstrapping circuit's encoded DFT matrices.
	BootMatrices int64
	// Weights is the program's plaintext data as loaded and the
	// evaluator's regrouped copy of its diagonals (WeightBytes), which it
	// keeps to encode
	// diagonals at each use.
	Weights int64
	// Lanes is the number of ciphertexts evaluated at once, each with
	// LaneBytes of working memory (its cores' share included), on Cores
	// cores in all.
	Lanes     int
	LaneBytes int64
	Cores     int
	// Encoded is the memory of the diagonals kept encoded; EncodedAll is
	// what keeping every diagonal would take.
	Encoded, EncodedAll int64
	// Overhead is RuntimeOverhead.
	Overhead int64
}

// Peak is the predicted peak resident memory.
func (m MemoryPlan) Peak() int64 {
	return m.Keys + m.BootMatrices + m.Weights + int64(m.Lanes)*m.LaneBytes + m.Encoded + m.Overhead
}

// Budget is the encoded-diagonal budget to give the evaluator: -1 when
// every diagonal stays encoded.
func (m MemoryPlan) Budget() int64 {
	if m.Encoded >= m.EncodedAll {
		return -1
	}
	return m.Encoded
}

// String is a one-table summary of the plan, in GiB.
func (m MemoryPlan) String() string {
	gib := func(b int64) string { return fmt.Sprintf("%6.2f GiB", float64(b)/(1<<30)) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "memory plan (limit %s):\n", strings.TrimSpace(gib(m.Limit)))
	fmt.Fprintf(&sb, "  evaluation keys          %s\n", gib(m.Keys))
	if m.BootMatrices > 0 {
		fmt.Fprintf(&sb, "  bootstrapping matrices   %s\n", gib(m.BootMatrices))
	}
	fmt.Fprintf(&sb, "  plaintext weights        %s\n", gib(m.Weights))
	fmt.Fprintf(&sb, "  %d lane(s) x %s (%d cores) %s\n", m.Lanes, strings.TrimSpace(gib(m.LaneBytes)), m.Cores, gib(int64(m.Lanes)*m.LaneBytes))
	what := "all pre-encoded"
	if m.Encoded < m.EncodedAll {
		what = fmt.Sprintf("of %s, the rest encoded at each use", strings.TrimSpace(gib(m.EncodedAll)))
	}
	fmt.Fprintf(&sb, "  encoded diagonals        %s (%s)\n", gib(m.Encoded), what)
	fmt.Fprintf(&sb, "  runtime and headroom     %s\n", gib(m.Overhead))
	fmt.Fprintf(&sb, "  predicted peak           %s", gib(m.Peak()))
	return sb.String()
}

// PlanMemory chooses, for the keys and working memory kp describes and
// weights bytes of plaintext program data, how to run within limit bytes on
// up to cpus cores: as many lanes as cores (parallel lanes are the largest
// speed-up, since a bootstrap runs on one core) as long as the keys, the
// bootstrapping matrices, the weights, the lanes and the runtime fit, then
// as many encoded diagonals as the rest allows, largest matrices encoded at
// each use first. A lane gets cpus/lanes cores, each beyond the first
// adding kp.WorkerBytes; when even one lane on every core does not fit, one
// lane on fewer cores is tried. It fails, naming the sizes, when one lane on
// one core without any encoded diagonal does not fit.
func PlanMemory(kp *ckks.KeyPlan, weights, limit int64, cpus int) (MemoryPlan, error) {
	m := leastMemory(kp, weights, limit)
	cpus = max(cpus, 1)
	try := func(lanes, cores int) bool {
		m.Lanes, m.Cores = lanes, cores
		m.LaneBytes = kp.LaneBytes + int64(cores/lanes-1)*kp.WorkerBytes
		m.Encoded = 0
		if left := limit - m.Peak(); left >= 0 {
			m.Encoded = min(left, m.EncodedAll)
			return true
		}
		return false
	}
	for lanes := cpus; lanes >= 1; lanes-- {
		if try(lanes, cpus) {
			return m, nil
		}
	}
	for cores := cpus - 1; cores >= 1; cores-- {
		if try(1, cores) {
			return m, nil
		}
	}
	return m, &ir.UnsupportedError{Reason: fmt.Sprintf("plan needs about %.1f GiB (%.1f GiB of evaluation keys, %.1f GiB of bootstrapping matrices, %.1f GiB of weights, %.1f GiB to work in), more than the %.1f GiB memory limit",
		float64(m.Peak())/(1<<30), float64(m.Keys)/(1<<30), float64(m.BootMatrices)/(1<<30), float64(m.Weights)/(1<<30), float64(m.LaneBytes+m.Overhead)/(1<<30), float64(limit)/(1<<30))}
}

// leastMemory is the least a program of key plan kp and weights runs in:
// one lane on one core, no diagonal kept encoded.
func leastMemory(kp *ckks.KeyPlan, weights, limit int64) MemoryPlan {
	return MemoryPlan{Limit: limit, Keys: kp.TotalBytes, BootMatrices: kp.BootstrapMatrixBytes, Weights: weights,
		Lanes: 1, Cores: 1, LaneBytes: kp.LaneBytes, EncodedAll: kp.EncodedBytes, Overhead: RuntimeOverhead}
}

// PlanProgramMemory is PlanMemory for prog, with its key plan.
func PlanProgramMemory(prog *ckksir.Program, limit int64, cpus int) (MemoryPlan, *ckks.KeyPlan, error) {
	kp, err := ckks.PlanKeys(prog)
	if err != nil {
		return MemoryPlan{}, nil, err
	}
	m, err := PlanMemory(kp, WeightBytes(prog), limit, cpus)
	return m, kp, err
}

// ShareMemory divides limit among sessions of progs that live in one
// process at once (a split plan's encrypted stages kept between the tokens
// of a generation): each gets the least it runs in (its keys,
// bootstrapping matrices and weights, one lane on one core) plus a share
// of what is left in proportion to the diagonals it could keep encoded,
// the runtime's overhead counted once for the process and included in
// every share, so that each session's own PlanMemory within its share
// fits and the shares' peaks together stay within limit. It fails, naming
// the sizes, when the programs' least needs do not fit together.
func ShareMemory(progs []*ckksir.Program, limit int64) ([]int64, error) {
	kps := make([]*ckks.KeyPlan, len(progs))
	weights := make([]int64, len(progs))
	for i, p := range progs {
		kp, err := ckks.PlanKeys(p)
		if err != nil {
			return nil, err
		}
		kps[i], weights[i] = kp, WeightBytes(p)
	}
	return shareMemory(kps, weights, limit)
}

// shareMemory is ShareMemory on the programs' key plans and weights.
func shareMemory(kps []*ckks.KeyPlan, weights []int64, limit int64) ([]int64, error) {
	least := make([]int64, len(kps))
	var sumLeast, sumEncoded int64
	for i, kp := range kps {
		least[i] = leastMemory(kp, weights[i], limit).Peak() - RuntimeOverhead // the overhead is counted once
		sumLeast += least[i]
		sumEncoded += kp.EncodedBytes
	}
	left := limit - RuntimeOverhead - sumLeast
	if left < 0 {
		return nil, &ir.UnsupportedError{Reason: fmt.Sprintf("%d encrypted stages held at once need at least %.1f GiB (their keys, bootstrapping matrices and weights, and one lane each), more than the %.1f GiB memory limit",
			len(kps), float64(sumLeast+RuntimeOverhead)/(1<<30), float64(limit)/(1<<30))}
	}
	shares := make([]int64, len(kps))
	for i, kp := range kps {
		extra := left / int64(len(kps))
		if sumEncoded > 0 {
			extra = int64(float64(left) * float64(kp.EncodedBytes) / float64(sumEncoded))
		}
		shares[i] = least[i] + extra + RuntimeOverhead
	}
	return shares, nil
}
