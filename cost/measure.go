package cost

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// MeasurementVersion is the measurement format this package reads and
// writes.
const MeasurementVersion = 1

// Measurement is what an encrypted run measured (`ciphercut run` or `eval`
// with --profile), as JSON: version; plan (its path); machine and cpus;
// samples and ciphertexts (input ciphertexts per input, the lanes);
// evalSeconds, encryptSeconds and decryptSeconds (wall time of the whole
// run's phases); instrs, the seconds of every instruction on one lane
// (averaged over lanes in slot packing; the instruction's wall time in
// feature packing); layers, the same summed per layer; outputs, per output
// the largest absolute error against the plan's plaintext reference
// (maxError), the largest output magnitude (maxAbs) and the plan's bound.
type Measurement struct {
	Version        int              `json:"version"`
	Plan           string           `json:"plan"`
	Machine        string           `json:"machine"`
	CPUs           int              `json:"cpus"`
	Samples        int              `json:"samples"`
	Ciphertexts    int              `json:"ciphertexts"`
	EvalSeconds    float64          `json:"evalSeconds"`
	EncryptSeconds float64          `json:"encryptSeconds"`
	DecryptSeconds float64          `json:"decryptSeconds"`
	Instrs         []float64        `json:"instrs"`
	Layers         []MeasuredLayer  `json:"layers"`
	Outputs        []MeasuredOutput `json:"outputs"`
}

// MeasuredLayer is one layer's measured seconds on one lane.
type MeasuredLayer struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// MeasuredOutput is one output's measured precision.
type MeasuredOutput struct {
	Name     string  `json:"name"`
	MaxError float64 `json:"maxError"`
	MaxAbs   float64 `json:"maxAbs"`
	Bound    float64 `json:"bound"`
}

// Tracer accumulates per-instruction times from an evaluator's trace
// callback (runtime/ckks.Evaluator.SetTrace); Record is safe for
// concurrent use by lanes.
type Tracer struct {
	mu    sync.Mutex
	total []time.Duration
	calls []int
}

// NewTracer returns a tracer for a program of n instructions.
func NewTracer(n int) *Tracer {
	return &Tracer{total: make([]time.Duration, n), calls: make([]int, n)}
}

// Record adds one instruction execution; it is the trace callback.
func (t *Tracer) Record(instr int, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if instr >= 0 && instr < len(t.total) {
		t.total[instr] += d
		t.calls[instr]++
	}
}

// Seconds returns every instruction's mean time per execution.
func (t *Tracer) Seconds() []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]float64, len(t.total))
	for i, d := range t.total {
		if t.calls[i] > 0 {
			out[i] = d.Seconds() / float64(t.calls[i])
		}
	}
	return out
}

// LayerSeconds sums a program's instruction times per layer, in order of
// first appearance, named as Predict names layers.
func LayerSeconds(p *ckksir.Program, instrs []float64) []MeasuredLayer {
	var out []MeasuredLayer
	idx := map[string]int{}
	for i, s := range instrs {
		if i >= len(p.Instrs) {
			break
		}
		name := layerName(i, p.Instrs[i].Op.String(), p.Instrs[i].Layer)
		j, ok := idx[name]
		if !ok {
			j = len(out)
			idx[name] = j
			out = append(out, MeasuredLayer{Name: name})
		}
		out[j].Seconds += s
	}
	return out
}

// SaveMeasurement writes m as indented JSON.
func SaveMeasurement(path string, m *Measurement) error {
	m.Version = MeasurementVersion
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing measurement: %w", err)
	}
	return nil
}

// LoadMeasurement reads a measurement file; errors name the file.
func LoadMeasurement(path string) (*Measurement, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading measurement: %w", err)
	}
	var m Measurement
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("measurement %s: %w", path, err)
	}
	if m.Version != MeasurementVersion {
		return nil, fmt.Errorf("measurement %s: version %d, this ciphercut reads version %d", path, m.Version, MeasurementVersion)
	}
	return &m, nil
}

// Attach puts a measurement beside the prediction: per-layer measured
// seconds (by instruction, so layers match exactly), measured errors and
// bits per output (and on the layer producing it), and the measured
// evaluation time. A measurement of another program (a different
// instruction count) is an error.
func (r *Report) Attach(m *Measurement) error {
	if len(m.Instrs) != len(r.Instrs) {
		return fmt.Errorf("the measurement has %d instructions, the plan %d: it measured another plan", len(m.Instrs), len(r.Instrs))
	}
	for i := range r.Layers {
		l := &r.Layers[i]
		s := 0.0
		for _, k := range l.Instrs {
			s += m.Instrs[k]
		}
		l.MeasuredSeconds = &s
	}
	ev := m.EvalSeconds
	r.Totals.MeasuredEvalSeconds = &ev
	for i := range r.Outputs {
		o := &r.Outputs[i]
		for _, mo := range m.Outputs {
			if mo.Name != o.Name {
				continue
			}
			e := mo.MaxError
			b := bits(o.Magnitude, e)
			o.MeasuredError, o.MeasuredBits = &e, &b
			if len(r.Layers) > 0 && len(r.Outputs) == 1 {
				// The last layer produces the single output.
				l := &r.Layers[len(r.Layers)-1]
				lb := bits(1, e)
				l.MeasuredError, l.MeasuredBits = &e, &lb
			}
		}
	}
	return nil
}

// MeasuredLaneSeconds is the sum of the attached measured layer times (NaN
// when none is attached).
func (r *Report) MeasuredLaneSeconds() float64 {
	s, ok := 0.0, false
	for _, l := range r.Layers {
		if l.MeasuredSeconds != nil {
			s += *l.MeasuredSeconds
			ok = true
		}
	}
	if !ok {
		return math.NaN()
	}
	return s
}
