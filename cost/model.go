package cost

import (
	"fmt"
	"math"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// Keys summarizes the evaluation keys of a program (runtime/ckks.PlanKeys
// derives them).
type Keys struct {
	// Rotations lists the rotations the Galois keys serve.
	Rotations []int `json:"rotations"`
	// Relinearization says whether a relinearization key is needed.
	Relinearization bool `json:"relinearization"`
	// KeyBytes is the size of one switching key, TotalBytes of all of them,
	// EncodedBytes of the worker's pre-encoded diagonals.
	KeyBytes     int64 `json:"keyBytes"`
	TotalBytes   int64 `json:"totalBytes"`
	EncodedBytes int64 `json:"encodedBytes"`
}

// Options tune a prediction.
type Options struct {
	// Ciphertexts is the number of input ciphertexts evaluated in one run
	// (slot packing: samples / samples per ciphertext, rounded up; feature
	// packing: batches); 0 means 1.
	Ciphertexts int
	// CPUs is the number of cores the evaluator uses; 0 means the
	// profile's.
	CPUs int
	// Lanes is the number of ciphertexts evaluated at once, the cores
	// shared among them (the memory plan's choice, local.MemoryPlan); 0
	// means one per core, up to Ciphertexts.
	Lanes int
	// Magnitudes maps output names to the largest output magnitude the
	// precision in bits is relative to; a missing output counts as 1 (the
	// bits are then bits of absolute precision).
	Magnitudes map[string]float64
}

// Instr is the prediction for one instruction.
type Instr struct {
	Index int `json:"index"`
	OpCounts
	// Seconds is the predicted wall time on one ciphertext lane, with the
	// cores a lane gets when Options.Ciphertexts lanes run at once.
	Seconds float64 `json:"seconds"`
	// Bound is the program's error bound on the instruction's output.
	Bound float64 `json:"bound"`
}

// Layer is the prediction for the instructions of one layer
// (ckksir.Instr.Layer), in program order of first appearance.
type Layer struct {
	Name   string   `json:"name"`
	Instrs []int    `json:"instrs"`
	Ops    string   `json:"ops"`
	Counts OpCounts `json:"counts"`
	// Rotations is the number of distinct rotation keys the layer uses.
	Rotations int     `json:"rotations"`
	LevelIn   int     `json:"levelIn"`
	LevelOut  int     `json:"levelOut"`
	Seconds   float64 `json:"seconds"`
	// Bound is the error bound of the layer's last output; Bits is
	// log2(1/Bound), the bits of absolute precision it guarantees.
	Bound float64 `json:"bound"`
	Bits  float64 `json:"bits"`
	// Measured fields are filled by Report.Attach: seconds per lane and,
	// for the layer producing an output, the measured maximum error and
	// its bits.
	MeasuredSeconds *float64 `json:"measuredSeconds,omitempty"`
	MeasuredError   *float64 `json:"measuredError,omitempty"`
	MeasuredBits    *float64 `json:"measuredBits,omitempty"`
}

// Output is the predicted precision of one program output.
type Output struct {
	Name string `json:"name"`
	// Bound is the predicted bound on every slot's absolute error;
	// Magnitude the output magnitude the bits are relative to; Bits is
	// log2(Magnitude/Bound).
	Bound     float64 `json:"bound"`
	Magnitude float64 `json:"magnitude"`
	Bits      float64 `json:"bits"`
	// Measured maximum error (and its bits) when attached.
	MeasuredError *float64 `json:"measuredError,omitempty"`
	MeasuredBits  *float64 `json:"measuredBits,omitempty"`
}

// Totals sums a prediction.
type Totals struct {
	Counts OpCounts `json:"counts"`
	// LaneSeconds is one lane's evaluation time, EvalSeconds the whole
	// run's (Options.Ciphertexts lanes on CPUs cores); EncryptSeconds and
	// DecryptSeconds the client's.
	LaneSeconds    float64 `json:"laneSeconds"`
	EvalSeconds    float64 `json:"evalSeconds"`
	EncryptSeconds float64 `json:"encryptSeconds"`
	DecryptSeconds float64 `json:"decryptSeconds"`
	Bootstraps     int     `json:"bootstraps"`
	// RotationKeys is the number of Galois keys, KeyBytes the size of one
	// switching key, EvalKeyBytes of the whole evaluation key set (sent
	// once to the worker when the plan is split), EncodedBytes of the
	// encoded diagonals.
	RotationKeys int   `json:"rotationKeys"`
	KeyBytes     int64 `json:"keyBytes"`
	EvalKeyBytes int64 `json:"evalKeyBytes"`
	EncodedBytes int64 `json:"encodedBytes"`
	// PeakMemoryBytes estimates the worker's peak: keys, encoded
	// diagonals, and the largest set of live ciphertexts and temporaries
	// over the run.
	PeakMemoryBytes int64 `json:"peakMemoryBytes"`
	// UploadBytes and DownloadBytes cross the network per run when the
	// plan is split between client and worker (input and output
	// ciphertexts).
	UploadBytes   int64 `json:"uploadBytes"`
	DownloadBytes int64 `json:"downloadBytes"`
	// Measured evaluation seconds when attached.
	MeasuredEvalSeconds *float64 `json:"measuredEvalSeconds,omitempty"`
}

// Report is a whole prediction.
type Report struct {
	Params      string   `json:"params"`
	Packing     string   `json:"packing"`
	Ciphertexts int      `json:"ciphertexts"`
	CPUs        int      `json:"cpus"`
	Profile     string   `json:"profile"`
	Notes       []string `json:"notes,omitempty"`
	Instrs      []Instr  `json:"instrs"`
	Layers      []Layer  `json:"layers"`
	Outputs     []Output `json:"outputs"`
	Totals      Totals   `json:"totals"`
}

// Predict predicts the cost of running p: counts are its per-instruction
// operation counts (runtime/ckks.InstrStats), keys its evaluation keys
// (runtime/ckks.PlanKeys).
//
// Time model. Every operation costs the profile's time at the level it
// runs at, interpolated across measured levels (and scaled from the nearest
// measured ring when the program's is absent). Key-switching operations are
// scaled from the profile's number of P primes to the program's by the
// ratio of digits × (level+1+|P|). A linear transformation costs, per
// matrix, one decomposition, its baby steps as hoisted rotations, its
// diagonals as multiply-accumulates and its giant steps as full rotations,
// plus the final ModDown of both components; the evaluator spreads baby
// steps, diagonals and giant steps over the cores a lane gets (all cores
// divided among the lanes running at once), and the model divides by the
// speedup the profile measured for that many cores (Profile.Speedup); lanes
// running at once slow each other the same way. A polynomial costs its ciphertext products (multiply, relinearize,
// rescale at the middle of its levels) and its scalar terms, corrected by
// the ratio of measured to modelled whole polynomial evaluations of the
// profile. Feature packing spreads every instruction's ciphertexts over all
// cores. Bootstraps cost the profile's bootstrap time (a note says when it
// was not measured).
func Predict(p *ckksir.Program, counts []OpCounts, keys Keys, prof *Profile, opts Options) (*Report, error) {
	if len(counts) != len(p.Instrs) {
		return nil, fmt.Errorf("cost: %d operation counts for %d instructions", len(counts), len(p.Instrs))
	}
	if prof == nil {
		return nil, fmt.Errorf("cost: no profile")
	}
	if err := prof.Validate(); err != nil {
		return nil, fmt.Errorf("cost: %w", err)
	}
	n := max(1, opts.Ciphertexts)
	cpus := opts.CPUs
	if cpus <= 0 {
		cpus = max(1, prof.CPUs)
	}
	m := newMachine(p, prof)
	rep := &Report{
		Params:      p.Params.String(),
		Packing:     p.Packing.String(),
		Ciphertexts: n,
		CPUs:        cpus,
		Profile:     prof.Machine,
	}
	if m.scaled {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the profile has no ring 2^%d: times are scaled from ring 2^%d", p.Params.LogN, m.ring.LogN))
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("whole-operation corrections from the profile: linear transformations ×%.2f, polynomials ×%.2f", m.linFix, m.polyFix))
	feature := p.Packing == ckksir.PackFeature
	workers := min(cpus, n)
	if opts.Lanes > 0 {
		workers = min(workers, opts.Lanes)
	}
	inner := max(1, cpus/workers)
	if feature {
		inner = cpus // every instruction's ciphertexts spread over all cores
	}
	layerIdx := map[string]int{}
	layerRots := map[string]map[int]bool{}
	var tot Totals
	for i := range p.Instrs {
		c := counts[i]
		secs := m.instrSeconds(c, inner, feature)
		rep.Instrs = append(rep.Instrs, Instr{Index: i, OpCounts: c, Seconds: secs, Bound: p.Values[p.Instrs[i].Out].Bound})
		tot.LaneSeconds += secs
		addCounts(&tot.Counts, c)
		name := layerName(i, c.Op, c.Layer)
		li, ok := layerIdx[name]
		if !ok {
			li = len(rep.Layers)
			layerIdx[name] = li
			layerRots[name] = map[int]bool{}
			rep.Layers = append(rep.Layers, Layer{Name: name, LevelIn: c.LevelIn})
		}
		l := &rep.Layers[li]
		l.Instrs = append(l.Instrs, i)
		if l.Ops == "" {
			l.Ops = c.Op
		} else {
			l.Ops += "+" + c.Op
		}
		addCounts(&l.Counts, c)
		for _, r := range c.Rotations {
			layerRots[name][r] = true
		}
		l.Rotations = len(layerRots[name])
		l.LevelIn = max(l.LevelIn, c.LevelIn)
		l.LevelOut = c.LevelOut
		l.Seconds += secs
		l.Bound = p.Values[p.Instrs[i].Out].Bound
		l.Bits = bits(1, l.Bound)
	}
	tot.Bootstraps = tot.Counts.Bootstraps
	if e := tot.Counts.Encodes; e > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d of the %d diagonals are encoded at each use (the memory budget keeps the others encoded)", e, tot.Counts.Diagonals))
	}
	if tot.Bootstraps > 0 && m.ring.Bootstrap == 0 {
		rep.Notes = append(rep.Notes, "bootstrapping was not measured by the profile: its time counts as 0")
	}
	if feature {
		tot.EvalSeconds = float64(n) * tot.LaneSeconds
	} else {
		// Lanes on separate cores slow each other as cores do.
		tot.EvalSeconds = math.Ceil(float64(n)/float64(workers)) * tot.LaneSeconds * float64(workers) / m.speedup(workers)
	}
	tot.RotationKeys = len(keys.Rotations)
	tot.KeyBytes, tot.EvalKeyBytes, tot.EncodedBytes = keys.KeyBytes, keys.TotalBytes, keys.EncodedBytes

	// Client side and network.
	perValue := func(v int) int {
		if feature {
			return p.Values[v].Layout.Size()
		}
		return 1
	}
	clientPar := float64(cpus)
	for _, in := range p.Inputs {
		k := n * perValue(in.Value)
		lv := m.at(p.Values[in.Value].Level)
		tot.EncryptSeconds += float64(k) * (lv.Encode + lv.Encrypt) / math.Min(clientPar, float64(k))
		tot.UploadBytes += int64(k) * m.ctBytes(p.Values[in.Value].Level)
	}
	for _, o := range p.Outputs {
		k := n * perValue(o.Value)
		lv := m.at(p.Values[o.Value].Level)
		tot.DecryptSeconds += float64(k) * lv.Decrypt / math.Min(clientPar, float64(k))
		tot.DownloadBytes += int64(k) * m.ctBytes(p.Values[o.Value].Level)
		mag := 1.0
		if v, ok := opts.Magnitudes[o.Name]; ok && v > 0 {
			mag = v
		}
		b := p.Values[o.Value].Bound
		rep.Outputs = append(rep.Outputs, Output{Name: o.Name, Bound: b, Magnitude: mag, Bits: bits(mag, b)})
	}
	tot.PeakMemoryBytes = keys.TotalBytes + keys.EncodedBytes + int64(workers)*m.peakLive(counts, perValue)
	rep.Totals = tot
	return rep, nil
}

// bits is log2(mag/bound), +Inf for a zero bound.
func bits(mag, bound float64) float64 {
	if bound <= 0 {
		return math.Inf(1)
	}
	return math.Log2(mag / bound)
}

// addCounts adds c into t (levels and names are left alone).
func addCounts(t *OpCounts, c OpCounts) {
	t.Ciphertexts += c.Ciphertexts
	t.Matrices += c.Matrices
	t.Diagonals += c.Diagonals
	t.Encodes += c.Encodes
	t.BabySteps += c.BabySteps
	t.GiantSteps += c.GiantSteps
	t.ScalarMults += c.ScalarMults
	t.PlainMults += c.PlainMults
	t.NonScalarMults += c.NonScalarMults
	t.Rescales += c.Rescales
	t.Adds += c.Adds
	t.PlainAdds += c.PlainAdds
	t.PolyDegree = max(t.PolyDegree, c.PolyDegree)
	t.Bootstraps += c.Bootstraps
	t.Temporaries = max(t.Temporaries, c.Temporaries)
}

// machine is a profile bound to a program's parameters.
type machine struct {
	p          *ckksir.Program
	ring       *Ring
	factor     float64 // ring scaling
	scaled     bool
	nP, ringNP int
	speedup    func(int) float64
	polyFix    float64 // measured / modelled polynomial evaluation time
	linFix     float64 // measured / modelled linear transformation time
}

func newMachine(p *ckksir.Program, prof *Profile) *machine {
	r, f := prof.ring(p.Params.LogN)
	m := &machine{p: p, ring: r, factor: f, scaled: r.LogN != p.Params.LogN,
		nP: max(1, len(p.Params.LogP)), ringNP: max(1, len(r.LogP)), polyFix: 1, linFix: 1, speedup: prof.Speedup}
	// Correct the polynomial model by the profile's whole evaluations.
	var meas, model float64
	for _, pt := range r.Poly {
		lv := r.at(pt.Level-polyDepth(pt.Degree)/2, 1)
		meas += pt.Seconds
		model += polyModel(lv, pt.NonScalar, pt.Degree+1)
	}
	if meas > 0 && model > 0 {
		m.polyFix = meas / model
	}
	// And the linear model by its whole transformations.
	meas, model = 0, 0
	for _, lt := range r.Linear {
		meas += lt.Seconds
		model += matrixModel(r.at(lt.Level, 1), 1, lt.Diagonals, lt.BabySteps, lt.GiantSteps, 1, prof.Speedup)
	}
	if meas > 0 && model > 0 {
		m.linFix = meas / model
	}
	return m
}

// polyDepth is ceil(log2(d+1)).
func polyDepth(d int) int {
	k := 0
	for (1 << k) <= d {
		k++
	}
	return k
}

// polyModel is the uncorrected time of a polynomial: its products with
// relinearization and rescale, and its scalar terms.
func polyModel(lv Level, nonScalar, scalars int) float64 {
	return float64(nonScalar)*(lv.MulRelin+lv.Rescale) + float64(scalars)*lv.MulScalar
}

// matrixModel is the uncorrected time of applying matrices with the given
// diagonals, baby steps and giant steps in total, on k cores: per matrix
// one decomposition, the final ModDown of both components and the scaling
// of the input by P; baby steps (hoisted rotations) spread over k cores,
// diagonals (multiply-accumulates) and giant steps (full rotations) over
// min(k, giants) parts whose results are then summed; speedup(k) is how
// much faster k cores are than one (Profile.Speedup).
func matrixModel(lv Level, matrices, diags, babies, giants, k int, speedup func(int) float64) float64 {
	kb := min(k, max(1, babies))
	kg := min(k, max(1, giants))
	t := float64(matrices)*(lv.Decompose+2*lv.ModDown+lv.MulScalar) +
		float64(babies)*lv.HoistedRotate/speedup(kb) +
		(float64(diags)*lv.Diagonal+float64(giants)*lv.Rotate)/speedup(kg)
	if kg > 1 {
		t += float64(matrices*(kg-1)) * lv.Add
	}
	return t
}

// at is the profile at a level of the program, key switching scaled to the
// program's P primes.
func (m *machine) at(level int) Level {
	lv := m.ring.at(level, m.factor)
	ks := ksCost(level, m.nP) / ksCost(level, m.ringNP)
	ext := float64(level+1+m.nP) / float64(level+1+m.ringNP)
	lv.Rotate *= ks
	lv.HoistedRotate *= ks
	lv.Decompose *= ks
	lv.MulRelin *= ks
	lv.Diagonal *= ext
	lv.ModDown *= ext
	return lv
}

// ksCost is proportional to the cost of a key switch at a level with nP
// key-switching primes, in NTTs of one prime: each of the digits is raised
// to the extended basis and transformed there (digits × primes of Q_l·P),
// and ModDown transforms both components back through every prime of
// Q_l·P (2 × primes). More P primes mean fewer digits but a wider ModDown.
func ksCost(level, nP int) float64 {
	digits := (level + nP) / nP // ceil((level+1)/nP)
	return float64((digits + 2) * (level + 1 + nP))
}

// ctBytes is the size of a degree-1 ciphertext at a level: two polynomials
// of N coefficients over level+1 primes, 8 bytes each.
func (m *machine) ctBytes(level int) int64 {
	return 2 * int64(1) << m.p.Params.LogN * int64(level+1) * 8
}

// instrSeconds predicts one instruction on one lane; inner is the number of
// cores the lane's linear transformations (slot packing) or the
// instruction's ciphertexts (feature packing) spread over.
func (m *machine) instrSeconds(c OpCounts, inner int, feature bool) float64 {
	lv := m.at(c.LevelIn)
	out := m.at(c.LevelOut)
	var t float64
	switch c.Op {
	case "linear":
		if feature {
			t = float64(c.ScalarMults)*lv.MulScalar + float64(c.Rescales)*lv.Rescale + float64(c.PlainAdds)*out.AddPlain
			return t / m.speedup(min(inner, max(1, c.Ciphertexts)))
		}
		t = m.linFix*matrixModel(lv, c.Matrices, c.Diagonals, c.BabySteps, c.GiantSteps, inner, m.speedup) +
			float64(c.Adds)*lv.Add + float64(c.Rescales)*lv.Rescale + float64(c.PlainAdds)*out.AddPlain
		// Diagonals encoded at each use, over the extended basis Q_l·P: an
		// encoding's FFT is the same at every level and its NTTs grow by
		// one prime per level, which the profile's levels interpolate, so
		// nP primes more cost what nP levels more do. Spread over the
		// lane's cores with the giant steps.
		enc := m.at(c.LevelIn + m.nP).Encode
		t += float64(c.Encodes) * enc / m.speedup(min(inner, max(1, c.GiantSteps)))
		return t
	case "poly":
		mid := m.at((c.LevelIn + c.LevelOut) / 2)
		t = m.polyFix*polyModel(mid, c.NonScalarMults, c.ScalarMults) + float64(c.PlainAdds)*lv.AddPlain
	case "add":
		t = float64(c.Adds) * lv.Add
	case "mul":
		t = float64(c.NonScalarMults) * (lv.MulRelin + lv.Rescale)
	case "add-const":
		t = float64(c.PlainAdds) * lv.AddPlain
	case "mul-const":
		t = float64(c.PlainMults)*lv.MulPlain + float64(c.ScalarMults)*lv.MulScalar + float64(c.Rescales)*lv.Rescale
	case "bootstrap":
		t = float64(c.Bootstraps) * m.ring.Bootstrap * m.factor
	}
	if feature {
		t /= m.speedup(min(inner, max(1, c.Ciphertexts)))
	}
	return t
}

// peakLive walks one lane and returns the largest memory its live values
// and an instruction's temporaries take at once.
func (m *machine) peakLive(counts []OpCounts, perValue func(int) int) int64 {
	p := m.p
	last := make([]int, len(p.Values))
	for i := range last {
		last[i] = -1
	}
	for i, ins := range p.Instrs {
		for _, a := range ins.In {
			last[a] = i
		}
	}
	for _, o := range p.Outputs {
		last[o.Value] = len(p.Instrs)
	}
	live := map[int]bool{}
	size := func(v int) int64 { return int64(perValue(v)) * m.ctBytes(p.Values[v].Level) }
	var cur, peak int64
	for _, in := range p.Inputs {
		live[in.Value] = true
		cur += size(in.Value)
	}
	top := p.Params.MaxLevel()
	extended := 2 * int64(1) << p.Params.LogN * int64(top+1+len(p.Params.LogP)) * 8
	for i, ins := range p.Instrs {
		tmp := int64(counts[i].Temporaries) * m.ctBytes(top)
		if counts[i].Op == "linear" {
			tmp = int64(counts[i].Temporaries) * extended
		}
		cur += size(ins.Out)
		live[ins.Out] = true
		peak = max(peak, cur+tmp)
		for _, a := range ins.In {
			if last[a] == i && live[a] {
				delete(live, a)
				cur -= size(a)
			}
		}
	}
	return max(peak, cur)
}

// layerName names the layer of instruction i: its Layer, or its index and
// op when it has none.
func layerName(i int, op, layer string) string {
	if layer == "" {
		return fmt.Sprintf("#%d %s", i, op)
	}
	return layer
}
