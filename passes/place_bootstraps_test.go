package passes

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// pbProgram builds placement test programs: every value is a [4] tensor in
// blocks of 4, on a ring whose chain has top levels.
type pbProgram struct{ p *ckksir.Program }

func newPBProgram(top int) *pbProgram {
	logQ := make([]int, top+1)
	for i := range logQ {
		logQ[i] = 30
	}
	logQ[0] = 40
	p := &ckksir.Program{Params: ckksir.Params{LogN: 12, LogQ: logQ, LogP: []int{40}, LogScale: 30}, BlockSize: 4, Batch: 512,
		Boot: ckksir.DefaultBootParams()}
	b := &pbProgram{p: p}
	x := b.value()
	p.Inputs = []ckksir.IO{{Name: "x", Value: x}}
	return b
}

func (b *pbProgram) value() int {
	b.p.Values = append(b.p.Values, ckksir.Value{Layout: ckksir.Layout{Shape: ir.Shape{4}}})
	return len(b.p.Values) - 1
}

// poly appends a polynomial of the given depth (degree 2^depth - 1 on
// [-1, 1]).
func (b *pbProgram) poly(x, depth int) int {
	coeffs := make([]float64, 1<<depth)
	coeffs[len(coeffs)-1] = 1
	out := b.value()
	b.p.Instrs = append(b.p.Instrs, ckksir.Instr{Op: ckksir.OpPoly, Out: out, In: []int{x},
		Poly: &ckksir.Poly{Func: "Test", A: -1, B: 1, Coeffs: coeffs}, Layer: "poly"})
	return out
}

// linear appends a linear map of its inputs (one level).
func (b *pbProgram) linear(xs ...int) int {
	out := b.value()
	ins := ckksir.Instr{Op: ckksir.OpLinear, Out: out, In: xs, Layer: "linear"}
	for range xs {
		ins.Matrices = append(ins.Matrices, ckksir.NewMatrix(map[int][]float64{0: {1, 1, 1, 1}, 1: {1, 1, 1, 0}}))
	}
	b.p.Instrs = append(b.p.Instrs, ins)
	return out
}

func (b *pbProgram) op(op ckksir.Op, xs ...int) int {
	out := b.value()
	b.p.Instrs = append(b.p.Instrs, ckksir.Instr{Op: op, Out: out, In: xs, Layer: op.String()})
	return out
}

func (b *pbProgram) output(v int) *ckksir.Program {
	b.p.Outputs = []ckksir.IO{{Name: "y", Value: v}}
	return b.p
}

// pbCheck places p, verifies the result and returns it.
func pbCheck(t *testing.T, p *ckksir.Program, opts PlaceOptions) *Placement {
	t.Helper()
	pl, err := PlaceBootstraps(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := ckksir.Verify(pl.Program); err != nil {
		t.Fatalf("placed program: %v\n%s", err, lcDump(t, pl.Program))
	}
	n := 0
	for _, ins := range pl.Program.Instrs {
		if ins.Op == ckksir.OpBootstrap {
			n++
			if want := opts.BootLevel + min(1, len(opts.Bounds)); pl.Program.Values[ins.Out].Level != want {
				t.Errorf("bootstrap outputs level %d, want %d", pl.Program.Values[ins.Out].Level, want)
			}
		}
	}
	if n != pl.Bootstraps {
		t.Errorf("%d bootstraps in the program, %d reported", n, pl.Bootstraps)
	}
	return pl
}

// TestPlaceBootstrapsFork: x, two levels deep, forks into two branches of
// two depth-2 polynomials each, joined by an add. Bootstrapping when out of
// levels refreshes each branch (2 bootstraps); the optimum refreshes x once
// before the fork.
func TestPlaceBootstrapsFork(t *testing.T) {
	b := newPBProgram(4)
	x := b.linear(b.linear(0))
	a := b.poly(b.poly(x, 2), 2)
	c := b.poly(b.poly(x, 2), 2)
	p := b.output(b.op(ckksir.OpAdd, a, c))
	opts := PlaceOptions{InputLevel: 4, BootLevel: 4}
	best := pbCheck(t, p, opts)
	opts.Naive = true
	naive := pbCheck(t, p, opts)
	if best.Bootstraps != 1 || naive.Bootstraps != 2 || !(best.Cost < naive.Cost) {
		t.Errorf("optimal %d bootstraps (cost %.0f), naive %d (cost %.0f); want 1 and 2",
			best.Bootstraps, best.Cost, naive.Bootstraps, naive.Cost)
	}
	if boot := best.Program.Instrs[2]; boot.Op != ckksir.OpBootstrap || boot.In[0] != x {
		t.Errorf("the bootstrap is not on the fork:\n%s", lcDump(t, best.Program))
	}
}

// TestPlaceBootstrapsResidual chains three residual blocks (linear, poly,
// linear, add of the skip, poly) on a 5-level chain and checks the placement
// against exhaustive search, and that both branches of every join meet.
func TestPlaceBootstrapsResidual(t *testing.T) {
	b := newPBProgram(5)
	x := 0
	for range 3 {
		h := b.linear(b.poly(b.linear(x), 2))
		x = b.poly(b.linear(h, x), 2)
	}
	p := b.output(x)
	opts := PlaceOptions{InputLevel: 5, BootLevel: 5}
	best := pbCheck(t, p, opts)
	want, wantBoots := pbBruteForce(p, opts)
	if math.Abs(best.Cost-want) > 1e-9*want || best.Bootstraps != wantBoots {
		t.Errorf("placement cost %.1f with %d bootstraps, exhaustive search %.1f with %d", best.Cost, best.Bootstraps, want, wantBoots)
	}
	opts.Naive = true
	naive := pbCheck(t, p, opts)
	t.Logf("residual: optimal %d bootstraps cost %.0f, naive %d cost %.0f", best.Bootstraps, best.Cost, naive.Bootstraps, naive.Cost)
	if naive.Cost < best.Cost {
		t.Errorf("naive placement %.1f beats the optimum %.1f", naive.Cost, best.Cost)
	}
}

// TestPlaceBootstrapsMatchesExhaustiveSearch compares the dynamic program
// with exhaustive search on random small DAGs.
func TestPlaceBootstrapsMatchesExhaustiveSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 40 {
		top := 3 + rng.IntN(3)
		b := newPBProgram(top)
		vals := []int{0}
		for range 4 + rng.IntN(4) {
			x := vals[rng.IntN(len(vals))]
			var v int
			switch rng.IntN(4) {
			case 0:
				v = b.poly(x, 1+rng.IntN(min(3, top)))
			case 1:
				v = b.linear(x)
			case 2:
				v = b.op(ckksir.OpMul, x, vals[rng.IntN(len(vals))])
			default:
				v = b.op(ckksir.OpAdd, x, vals[rng.IntN(len(vals))])
			}
			vals = append(vals, v)
		}
		p := b.output(vals[len(vals)-1])
		opts := PlaceOptions{InputLevel: top - rng.IntN(2), BootLevel: top}
		best := pbCheck(t, p, opts)
		want, _ := pbBruteForce(p, opts)
		if math.Abs(best.Cost-want) > 1e-9*want {
			t.Errorf("trial %d: placement cost %.2f, exhaustive search %.2f\n%s", trial, best.Cost, want, lcDump(t, best.Program))
		}
	}
}

func TestPlaceBootstrapsErrors(t *testing.T) {
	b := newPBProgram(4)
	p := b.output(b.poly(0, 3))
	if _, err := PlaceBootstraps(p, PlaceOptions{InputLevel: 2, BootLevel: 2}); err == nil || !strings.Contains(err.Error(), "consumes 3 levels, more than the 2") {
		t.Errorf("got %v", err)
	}
	if _, err := PlaceBootstraps(p, PlaceOptions{InputLevel: -1, BootLevel: 4}); err == nil {
		t.Error("negative input level accepted")
	}
}

// pbBruteForce returns the cheapest placement's cost and bootstrap count by
// trying every subset of (instruction, input) pairs to bootstrap before.
func pbBruteForce(p *ckksir.Program, opts PlaceOptions) (float64, int) {
	if opts.Cost == nil {
		opts.Cost = PlacementCost
	}
	if opts.BootCost <= 0 {
		opts.BootCost = DefaultBootCost
	}
	type use struct{ instr, value int }
	var uses []use
	for i, ins := range p.Instrs {
		for _, a := range distinct(ins.In) {
			uses = append(uses, use{i, a})
		}
	}
	best, bestBoots := math.Inf(1), 0
	for mask := 0; mask < 1<<len(uses); mask++ {
		level := make([]int, len(p.Values))
		for _, in := range p.Inputs {
			level[in.Value] = opts.InputLevel
		}
		cost, boots, ok, u := 0.0, 0, true, 0
		for i := range p.Instrs {
			ins := &p.Instrs[i]
			lo := math.MaxInt
			for range distinct(ins.In) {
				a := uses[u].value
				if mask&(1<<u) != 0 {
					level[a] = opts.BootLevel
					boots++
				}
				lo = min(lo, level[a])
				u++
			}
			out := lo - lowerCost(ins)
			if out < 0 {
				ok = false
				break
			}
			level[ins.Out] = out
			cost += opts.Cost(ins, lo)
		}
		cost += float64(boots) * opts.BootCost
		if ok && cost < best {
			best, bestBoots = cost, boots
		}
	}
	return best, bestBoots
}

// TestPlaceBootstrapsBounds checks the scaled form: a bootstrap reading its
// input divided by a power of two above the value's bound, at the top level,
// then a constant product restoring the value one level below.
func TestPlaceBootstrapsBounds(t *testing.T) {
	b := newPBProgram(5)
	x := b.linear(b.linear(0))
	p := b.output(b.poly(b.poly(x, 2), 2))
	bounds := make([]float64, len(p.Values))
	bounds[x] = 5.5
	pl := pbCheck(t, p, PlaceOptions{InputLevel: 5, BootLevel: 4, Bounds: bounds})
	if pl.Bootstraps != 1 {
		t.Fatalf("%d bootstraps, want 1:\n%s", pl.Bootstraps, lcDump(t, pl.Program))
	}
	boot, restore := pl.Program.Instrs[2], pl.Program.Instrs[3]
	if boot.Op != ckksir.OpBootstrap || boot.Bound != 8 || restore.Op != ckksir.OpMulConst || restore.Vector[0] != 8 ||
		pl.Program.Values[restore.Out].Level != 4 || pl.Program.Instrs[4].In[0] != restore.Out {
		t.Errorf("bootstrap and restore not as expected:\n%s", lcDump(t, pl.Program))
	}
}

// TestPlaceBootstrapsBeam runs many branches live at once (as a
// transformer's attention computed in many parts): more states than
// PlacementBeam, so steps are pruned to the cheapest; the placement must
// still be valid and no worse than bootstrapping when out of levels.
func TestPlaceBootstrapsBeam(t *testing.T) {
	b := newPBProgram(6)
	x := b.linear(b.linear(0))
	var branches []int
	for range 14 {
		branches = append(branches, b.poly(b.linear(x), 2))
	}
	var outs []int
	for _, v := range branches {
		outs = append(outs, b.poly(v, 2))
	}
	p := b.output(b.linear(outs...))
	opts := PlaceOptions{InputLevel: 6, BootLevel: 6}
	best := pbCheck(t, p, opts)
	opts.Naive = true
	naive := pbCheck(t, p, opts)
	t.Logf("beam: %d bootstraps, cost %.0f, %d steps pruned; naive: %d bootstraps, cost %.0f", best.Bootstraps, best.Cost, best.Pruned, naive.Bootstraps, naive.Cost)
	if best.Pruned == 0 {
		t.Errorf("no step pruned: the test no longer exercises the beam")
	}
	if best.Cost > naive.Cost {
		t.Errorf("pruned placement costs %.0f, more than the naive %.0f", best.Cost, naive.Cost)
	}
}
