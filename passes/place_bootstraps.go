package passes

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// Bootstrap placement.
//
// A program deeper than the modulus chain needs bootstraps: an OpBootstrap
// refreshes a ciphertext to BootLevel whatever its level. Where they go
// decides the total time twice over: each bootstrap costs seconds, and every
// other instruction costs more at a higher level (its work grows with the
// number of primes), so bootstrapping late, or on the narrower of two
// values, pays.
//
// PlaceBootstraps solves the placement exactly by dynamic programming over
// the program's instructions in order. After instruction i the values still
// needed later (the live values: for a chain one, for a residual block two
// or three) each have a level; a state is the tuple of those levels. At
// each instruction the choice is which of its inputs to bootstrap first (a
// bootstrapped value stays refreshed for its later readers too); the
// instruction then runs at the lowest level of its inputs and consumes its
// levels. The states of one step are kept with their cheapest cost and a
// back pointer, so the best placement over every skip connection is found,
// not only along chains: two branches of a residual block meet at the level
// that is cheapest for both. The state space is the product of the live
// values' levels. When one step holds more than PlacementBeam states (many
// values live at once: a transformer's attention computed in many parts),
// only the PlacementBeam cheapest are kept, and the placement is no longer
// proven optimal (Placement.Pruned counts those steps).

// PlaceOptions control PlaceBootstraps.
type PlaceOptions struct {
	// InputLevel is the level fresh input ciphertexts start at.
	InputLevel int
	// BootLevel is the level a bootstrap outputs (the top of the residual
	// chain); it must be at least the largest level an instruction
	// consumes.
	BootLevel int
	// Cost is the predicted time of an instruction whose inputs are at
	// level (it runs there); nil means PlacementCost.
	Cost func(ins *ckksir.Instr, level int) float64
	// BootCost is the predicted time of one bootstrap; 0 means
	// DefaultBootCost.
	BootCost float64
	// Naive bootstraps a value only when an instruction cannot run on it
	// (too few levels left), instead of minimizing the total cost.
	Naive bool
	// Bounds, when set, gives per value of the program a bound on its
	// magnitude: each bootstrap then reads its input divided by the
	// smallest power of two B above the bound (Instr.Bound), outputs at
	// BootLevel+1, and an OpMulConst by B restores the value at BootLevel.
	Bounds []float64
}

// DefaultBootCost is the default time of one bootstrap, in the units of
// PlacementCost: about 150 rotations at level 30 (measured: one bootstrap
// at N=2^16 takes 12.8 s, a rotation near the top of a 30-level chain
// about 0.08 s).
const DefaultBootCost = 150 * 31 * 4

// PlacementBeam is the most states one step of the dynamic program keeps:
// beyond it, the cheapest so far (ties broken by levels, for the same
// result on every run).
const PlacementBeam = 1 << 15

// Placement is the result of PlaceBootstraps.
type Placement struct {
	// Program is a copy of the input program with OpBootstrap instructions
	// inserted and every value's level set.
	Program *ckksir.Program
	// Bootstraps is the number of bootstraps inserted.
	Bootstraps int
	// Cost is the predicted total time (instructions plus bootstraps).
	Cost float64
	// Pruned counts the steps whose states were cut to PlacementBeam: when
	// not zero, a cheaper placement may exist.
	Pruned int
}

// PlacementCost is a simple time model in arbitrary units: a key switch at
// level l costs about 4(l+1), a plaintext product (l+1); a linear
// transformation with d diagonals does d products and about 2√d key
// switches, a polynomial of degree n about 2√n + log2 n relinearized
// products.
func PlacementCost(ins *ckksir.Instr, level int) float64 {
	l := float64(level + 1)
	switch ins.Op {
	case ckksir.OpLinear:
		d := 0
		for _, m := range ins.Matrices {
			d += len(m.Diagonals)
		}
		for _, m := range ins.Dense {
			d += m.NonZeros()
		}
		return float64(d)*l + 2*math.Sqrt(float64(d))*4*l
	case ckksir.OpPoly:
		n := float64(max(1, ins.Poly.Degree()))
		return (2*math.Sqrt(n) + math.Log2(n) + 1) * 5 * l
	case ckksir.OpMul:
		return 5 * l
	case ckksir.OpMulConst:
		return l
	}
	return 0.1 * l
}

// placeStep is one step's state table: states by key, each with its cost
// and back pointer.
type placeState struct {
	levels []int8 // aligned with the step's live values
	cost   float64
	prev   string // key of the previous step's state
	boots  []int  // values bootstrapped before this step's instruction
}

// PlaceBootstraps inserts bootstraps into p (whose levels are ignored) and
// assigns every value's level, minimizing the predicted total time (or with
// opts.Naive, bootstrapping only when out of levels). It fails when an
// instruction consumes more levels than BootLevel or InputLevel allow.
func PlaceBootstraps(p *ckksir.Program, opts PlaceOptions) (*Placement, error) {
	if opts.Cost == nil {
		opts.Cost = PlacementCost
	}
	if opts.BootCost <= 0 {
		opts.BootCost = DefaultBootCost
	}
	if opts.BootLevel < 0 || opts.InputLevel < 0 || opts.BootLevel > math.MaxInt8 || opts.InputLevel > math.MaxInt8 {
		return nil, fmt.Errorf("placing bootstraps: levels %d (input) and %d (bootstrap) out of range", opts.InputLevel, opts.BootLevel)
	}
	n := len(p.Instrs)
	lastUse := make([]int, len(p.Values))
	for i := range lastUse {
		lastUse[i] = -1
	}
	for i, ins := range p.Instrs {
		if ins.Op == ckksir.OpBootstrap {
			return nil, fmt.Errorf("placing bootstraps: instruction %d is already a bootstrap", i)
		}
		if c := lowerCost(&ins); c > opts.BootLevel {
			return nil, fmt.Errorf("placing bootstraps: instruction %d (%s, %s) consumes %d levels, more than the %d a bootstrap leaves",
				i, ins.Op, ins.Layer, c, opts.BootLevel)
		}
		for _, a := range ins.In {
			lastUse[a] = i
		}
	}
	for _, o := range p.Outputs {
		lastUse[o.Value] = n
	}
	// live[i] lists the values live after instruction i (i = -1: inputs).
	liveAfter := func(i int, defined []bool) []int {
		var live []int
		for v, d := range defined {
			if d && lastUse[v] > i {
				live = append(live, v)
			}
		}
		return live
	}
	defined := make([]bool, len(p.Values))
	for _, in := range p.Inputs {
		defined[in.Value] = true
	}
	prevLive := liveAfter(-1, defined)
	start := &placeState{levels: make([]int8, len(prevLive))}
	for k := range start.levels {
		start.levels[k] = int8(opts.InputLevel)
	}
	steps := make([]map[string]*placeState, n+1)
	steps[0] = map[string]*placeState{placeKey(start.levels): start}
	lives := make([][]int, n+1)
	lives[0] = prevLive
	pruned := 0
	for i, ins := range p.Instrs {
		defined[ins.Out] = true
		live := liveAfter(i, defined)
		lives[i+1] = live
		pos := map[int]int{}
		for k, v := range prevLive {
			pos[v] = k
		}
		inputs := distinct(ins.In)
		cost := lowerCost(&ins)
		next := map[string]*placeState{}
		for _, key := range placeSortedKeys(steps[i]) {
			st := steps[i][key]
			masks, err := placeMasks(inputs, pos, st.levels)
			if err != nil {
				return nil, fmt.Errorf("placing bootstraps: instruction %d %w", i, err)
			}
			for _, mask := range masks {
				levels := append([]int8(nil), st.levels...)
				var boots []int
				minLevel := math.MaxInt
				useless := false
				for b, a := range inputs {
					k, ok := pos[a]
					if !ok {
						return nil, fmt.Errorf("placing bootstraps: instruction %d reads v%d before it is defined", i, a)
					}
					if mask&(1<<b) != 0 {
						if int(levels[k]) >= opts.BootLevel {
							useless = true
						}
						levels[k] = int8(opts.BootLevel)
						boots = append(boots, a)
					}
					minLevel = min(minLevel, int(levels[k]))
				}
				if useless {
					continue
				}
				if len(inputs) == 0 {
					minLevel = opts.InputLevel
				}
				if opts.Naive && !placeNaiveChoice(inputs, pos, st.levels, mask, cost) {
					continue
				}
				out := minLevel - cost
				if out < 0 {
					continue
				}
				c := st.cost + opts.Cost(&ins, minLevel) + float64(len(boots))*opts.BootCost
				nl := make([]int8, len(live))
				for k, v := range live {
					if v == ins.Out {
						nl[k] = int8(out)
					} else {
						nl[k] = levels[pos[v]]
					}
				}
				nk := placeKey(nl)
				if old, ok := next[nk]; !ok || c < old.cost {
					next[nk] = &placeState{levels: nl, cost: c, prev: key, boots: boots}
				}
			}
		}
		if len(next) == 0 {
			return nil, fmt.Errorf("placing bootstraps: no placement reaches instruction %d (%s, %s)", i, ins.Op, ins.Layer)
		}
		if len(next) > PlacementBeam {
			next = placePrune(next, PlacementBeam)
			pruned++
		}
		steps[i+1] = next
		prevLive = live
	}
	var best *placeState
	for _, key := range placeSortedKeys(steps[n]) {
		if st := steps[n][key]; best == nil || st.cost < best.cost {
			best = st
		}
	}
	// Walk back for the bootstraps chosen before each instruction.
	chosen := make([][]int, n)
	st := best
	for i := n; i > 0; i-- {
		chosen[i-1] = st.boots
		st = steps[i-1][st.prev]
	}
	pl, err := placeRewrite(p, chosen, opts, best.cost)
	if err != nil {
		return nil, err
	}
	pl.Pruned = pruned
	return pl, nil
}

// placePrune keeps the keep cheapest states of a step (ties broken by key).
func placePrune(states map[string]*placeState, keep int) map[string]*placeState {
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		ca, cb := states[keys[a]].cost, states[keys[b]].cost
		if ca != cb {
			return ca < cb
		}
		return keys[a] < keys[b]
	})
	out := make(map[string]*placeState, keep)
	for _, k := range keys[:keep] {
		out[k] = states[k]
	}
	return out
}

// placeMasks returns the choices of inputs to bootstrap before an
// instruction, as bit masks over inputs (their levels read through pos):
// the inputs below each of their distinct levels, from none to all. Only
// these can matter: the instruction runs at its inputs' lowest level, so
// bootstrapping an input without all those below it leaves that level
// unchanged, and a bootstrap of a value that this instruction does not
// need costs the same before any later reader, with the same levels after.
func placeMasks(inputs []int, pos map[int]int, levels []int8) ([]int, error) {
	var distinctLevels []int8
	for _, a := range inputs {
		k, ok := pos[a]
		if !ok {
			return nil, fmt.Errorf("reads v%d before it is defined", a)
		}
		if !slices.Contains(distinctLevels, levels[k]) {
			distinctLevels = append(distinctLevels, levels[k])
		}
	}
	slices.Sort(distinctLevels)
	masks := []int{0}
	for t := 1; t <= len(distinctLevels); t++ {
		mask := 0
		for b, a := range inputs {
			if t == len(distinctLevels) || levels[pos[a]] < distinctLevels[t] {
				mask |= 1 << b
			}
		}
		masks = append(masks, mask)
	}
	return masks, nil
}

// placeNaiveChoice reports whether bootstrapping the inputs in mask is what
// the naive policy does: exactly the inputs with fewer levels left than the
// instruction consumes.
func placeNaiveChoice(inputs []int, pos map[int]int, levels []int8, mask, cost int) bool {
	for b, a := range inputs {
		need := int(levels[pos[a]]) < cost
		if need != (mask&(1<<b) != 0) {
			return false
		}
	}
	return true
}

// placeRewrite returns the placement: a copy of p with bootstraps inserted
// before the instructions that chose them, readers redirected to the
// refreshed values, and levels assigned.
func placeRewrite(p *ckksir.Program, chosen [][]int, opts PlaceOptions, cost float64) (*Placement, error) {
	q := *p
	q.Values = append([]ckksir.Value(nil), p.Values...)
	q.Instrs = nil
	current := make([]int, len(p.Values)) // value id -> id of its latest version
	for v := range current {
		current[v] = v
	}
	for _, in := range p.Inputs {
		q.Values[in.Value].Level = opts.InputLevel
	}
	boots := 0
	for i, ins := range p.Instrs {
		for _, a := range chosen[i] {
			b := len(q.Values)
			v := q.Values[current[a]]
			v.Level = opts.BootLevel
			boot := ckksir.Instr{Op: ckksir.OpBootstrap, Out: b, In: []int{current[a]}, Layer: ins.Layer}
			if opts.Bounds == nil {
				q.Values = append(q.Values, v)
				q.Instrs = append(q.Instrs, boot)
				current[a] = b
				boots++
				continue
			}
			boot.Bound = placeBound(opts.Bounds[a])
			v.Level = opts.BootLevel + 1
			q.Values = append(q.Values, v)
			v.Level = opts.BootLevel
			q.Values = append(q.Values, v)
			restore := ckksir.Instr{Op: ckksir.OpMulConst, Out: b + 1, In: []int{b}, Vector: placeFill(&q, v.Layout, boot.Bound), Layer: ins.Layer}
			q.Instrs = append(q.Instrs, boot, restore)
			current[a] = b + 1
			boots++
		}
		ins.In = append([]int(nil), ins.In...)
		level := math.MaxInt
		for k, a := range ins.In {
			ins.In[k] = current[a]
			level = min(level, q.Values[current[a]].Level)
		}
		if len(ins.In) == 0 {
			level = opts.InputLevel
		}
		q.Values[ins.Out].Level = level - lowerCost(&ins)
		q.Instrs = append(q.Instrs, ins)
	}
	return &Placement{Program: &q, Bootstraps: boots, Cost: cost}, nil
}

// placeKey encodes a state's levels as a map key.
func placeKey(levels []int8) string {
	b := make([]byte, len(levels))
	for i, l := range levels {
		b[i] = byte(l)
	}
	return string(b)
}

// placeSortedKeys returns the keys of a step's states in a fixed order, so
// that ties resolve the same way on every run.
func placeSortedKeys(m map[string]*placeState) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// placeBound is the smallest power of two at least bound (and at least 1).
func placeBound(bound float64) float64 {
	b := 1.0
	for b < bound && !math.IsInf(b, 0) {
		b *= 2
	}
	return b
}

// placeFill is a constant vector of x over the elements of a value in
// layout lay (zero elsewhere): one value per block slot, or per element in
// feature packing.
func placeFill(p *ckksir.Program, lay ckksir.Layout, x float64) []float64 {
	if p.Packing == ckksir.PackFeature {
		return lowerFill(lay.Size(), x)
	}
	v := make([]float64, p.BlockSize)
	for k := range lay.Size() {
		v[lay.Slot(k)] = x
	}
	return v
}
