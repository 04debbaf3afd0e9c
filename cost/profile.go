// Package cost predicts what running a CKKS program costs before it runs:
// per instruction and per layer operation counts, seconds, levels,
// bootstraps, evaluation keys, peak memory, network bytes and output
// precision, from the program's operation counts (runtime/ckks.InstrStats)
// and a machine profile of per-operation times measured by
// runtime/ckks.Calibrate. It imports no homomorphic-encryption library:
// predictions are counts times per-operation times, the times interpolated
// across levels.
package cost

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// ProfileVersion is the profile format this package reads and writes.
const ProfileVersion = 1

// Profile is a machine's measured CKKS operation costs, as JSON. Fields:
//
//   - version: ProfileVersion.
//   - machine: free text (OS, architecture, CPU model) naming where it was
//     measured; cpus: the cores the evaluator may use (runtime.NumCPU()).
//   - lattigo: the Lattigo version measured; created: RFC 3339 time.
//   - parallelEfficiency: how much each core beyond the first adds when
//     the same key switches are spread over all cpus, from 0 (nothing)
//     to 1 (a perfect speedup; also assumed when the field is absent):
//     cores share memory bandwidth and caches, and virtual cores may be
//     hyperthreads of one physical core.
//   - rings: one entry per ring degree 2^logN measured (see Ring).
//
// Every time is in seconds of wall time on one core (the operations are
// single-threaded), every size in bytes.
type Profile struct {
	Version int       `json:"version"`
	Machine string    `json:"machine"`
	CPUs    int       `json:"cpus"`
	Lattigo string    `json:"lattigo"`
	Created time.Time `json:"created"`
	// ParallelEfficiency is in (0, 1]; 0 (absent) reads as 1.
	ParallelEfficiency float64 `json:"parallelEfficiency,omitempty"`
	Rings              []Ring  `json:"rings"`
}

// Speedup is how many times faster k cores run work split evenly among
// them than one core does: 1 + (k-1)·ParallelEfficiency (a perfect k when
// the efficiency was not measured).
func (p *Profile) Speedup(k int) float64 {
	eff := p.ParallelEfficiency
	if eff <= 0 || eff > 1 {
		eff = 1
	}
	return 1 + float64(max(0, k-1))*eff
}

// Ring is the measurements at one ring degree. Fields: logN; logScale and
// logP (the bit sizes of the scale and of the key-switching primes of the
// chain measured; key switching costs depend on the number of P primes);
// maxLevel, the top level of that chain; levels, the measurements at a few
// levels, sorted by level (predictions interpolate linearly between them
// and extrapolate from the two nearest); linear, whole linear
// transformations on one core, and poly, whole polynomial evaluations, both
// used to correct the per-operation models of these instructions
// (predictions multiply by measured/modelled); bootstrap,
// seconds of one bootstrap on one core, 0 when not measured (`ciphercut
// calibrate --logn 16 --bootstrap` measures it).
type Ring struct {
	LogN      int          `json:"logN"`
	LogScale  int          `json:"logScale"`
	LogP      []int        `json:"logP"`
	MaxLevel  int          `json:"maxLevel"`
	Levels    []Level      `json:"levels"`
	Linear    []LinearTime `json:"linear,omitempty"`
	Poly      []PolyTime   `json:"poly,omitempty"`
	Bootstrap float64      `json:"bootstrap,omitempty"`
}

// Level is the cost of each primitive on ciphertexts at one level (level+1
// Q primes). Seconds: encode (one plaintext of N/2 slots), encrypt (secret
// key), decrypt (with decode), add (ciphertext + ciphertext), addPlain
// (ciphertext + plaintext), mulPlain (ciphertext × plaintext, no rescale),
// mulScalar (ciphertext × constant added into an accumulator), mulRelin
// (ciphertext × ciphertext and relinearization), rescale, rotate (a full
// rotation: decomposition, key switch, automorphism), decompose (the
// decomposition a hoisted rotation shares), hoistedRotate (one rotation of
// an already decomposed ciphertext, left in the extended basis), diagonal
// (one diagonal of a baby-step giant-step linear transformation: two
// multiply-accumulates over Q and P), modDown (one polynomial from QP back
// to Q). Bytes: ciphertextBytes (a degree-1 ciphertext at this level),
// keyBytes (one switching key, Galois or relinearization, of a chain whose
// top level is this one).
type Level struct {
	Level           int     `json:"level"`
	Encode          float64 `json:"encode"`
	Encrypt         float64 `json:"encrypt"`
	Decrypt         float64 `json:"decrypt"`
	Add             float64 `json:"add"`
	AddPlain        float64 `json:"addPlain"`
	MulPlain        float64 `json:"mulPlain"`
	MulScalar       float64 `json:"mulScalar"`
	MulRelin        float64 `json:"mulRelin"`
	Rescale         float64 `json:"rescale"`
	Rotate          float64 `json:"rotate"`
	Decompose       float64 `json:"decompose"`
	HoistedRotate   float64 `json:"hoistedRotate"`
	Diagonal        float64 `json:"diagonal"`
	ModDown         float64 `json:"modDown"`
	CiphertextBytes int64   `json:"ciphertextBytes"`
	KeyBytes        int64   `json:"keyBytes"`
}

// PolyTime is one measured polynomial evaluation: a Chebyshev polynomial of
// the given degree evaluated from the given level, in seconds, and the
// non-scalar multiplications the evaluation performs.
type PolyTime struct {
	Degree    int     `json:"degree"`
	Level     int     `json:"level"`
	NonScalar int     `json:"nonScalar"`
	Seconds   float64 `json:"seconds"`
}

// LinearTime is one measured linear transformation on one core: its
// diagonals, non-zero baby and giant steps, the level it runs at and its
// seconds.
type LinearTime struct {
	Level      int     `json:"level"`
	Diagonals  int     `json:"diagonals"`
	BabySteps  int     `json:"babySteps"`
	GiantSteps int     `json:"giantSteps"`
	Seconds    float64 `json:"seconds"`
}

//go:embed default_profile.json
var defaultProfile []byte

// DefaultProfile returns the bundled profile, measured with `ciphercut
// calibrate` on the machine named in its Machine field.
func DefaultProfile() *Profile {
	p, err := ParseProfile(defaultProfile)
	if err != nil {
		panic("cost: bundled profile: " + err.Error()) // a build defect, caught by the tests
	}
	return p
}

// DefaultProfilePath is where `ciphercut calibrate` writes the profile:
// os.UserCacheDir()/ciphercut/profile.json.
func DefaultProfilePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the profile: %w", err)
	}
	return filepath.Join(dir, "ciphercut", "profile.json"), nil
}

// ParseProfile decodes and validates a profile.
func ParseProfile(data []byte) (*Profile, error) {
	var p Profile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the version and that every ring has levels with finite,
// non-negative times, sorted by level.
func (p *Profile) Validate() error {
	if p.Version != ProfileVersion {
		return fmt.Errorf("profile version %d, this ciphercut reads version %d", p.Version, ProfileVersion)
	}
	if len(p.Rings) == 0 {
		return errors.New("profile has no ring")
	}
	for _, r := range p.Rings {
		if len(r.Levels) == 0 {
			return fmt.Errorf("profile ring 2^%d has no level", r.LogN)
		}
		for i, l := range r.Levels {
			if i > 0 && l.Level <= r.Levels[i-1].Level {
				return fmt.Errorf("profile ring 2^%d: levels not increasing", r.LogN)
			}
			for _, v := range l.times() {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					return fmt.Errorf("profile ring 2^%d level %d: invalid time %g", r.LogN, l.Level, v)
				}
			}
		}
	}
	return nil
}

// LoadProfile reads a profile file; errors name the file.
func LoadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading profile: %w", err)
	}
	p, err := ParseProfile(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// LoadProfileOrDefault reads path when it is not empty, else the profile at
// DefaultProfilePath when one exists, else the bundled default. It returns
// where the profile came from.
func LoadProfileOrDefault(path string) (*Profile, string, error) {
	if path != "" {
		p, err := LoadProfile(path)
		return p, path, err
	}
	if def, err := DefaultProfilePath(); err == nil {
		if _, err := os.Stat(def); err == nil {
			p, err := LoadProfile(def)
			return p, def, err
		}
	}
	return DefaultProfile(), "bundled default profile", nil
}

// Save writes the profile as indented JSON, creating the directory.
func (p *Profile) Save(path string) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing profile: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing profile: %w", err)
	}
	return nil
}

// times lists the level's time fields (for validation and interpolation).
func (l *Level) times() []float64 {
	return []float64{l.Encode, l.Encrypt, l.Decrypt, l.Add, l.AddPlain, l.MulPlain, l.MulScalar, l.MulRelin,
		l.Rescale, l.Rotate, l.Decompose, l.HoistedRotate, l.Diagonal, l.ModDown}
}

// ring returns the measured ring for logN, or the nearest one and the
// factor its times are scaled by: operations cost about N·log N, so a ring
// twice as large costs 2·(logN+1)/logN times more.
func (p *Profile) ring(logN int) (*Ring, float64) {
	best := -1
	for i, r := range p.Rings {
		if best < 0 || abs(r.LogN-logN) < abs(p.Rings[best].LogN-logN) {
			best = i
		}
	}
	r := &p.Rings[best]
	f := math.Pow(2, float64(logN-r.LogN)) * float64(logN) / float64(r.LogN)
	return r, f
}

// at returns the ring's costs at a level, interpolated linearly between the
// two measured levels around it (extrapolated from the two nearest outside
// them), times f; sizes are interpolated the same way.
func (r *Ring) at(level int, f float64) Level {
	ls := r.Levels
	i := sort.Search(len(ls), func(i int) bool { return ls[i].Level >= level })
	if i < len(ls) && ls[i].Level == level || len(ls) == 1 {
		return scaleLevel(ls[min(i, len(ls)-1)], level, f, 1, ls[min(i, len(ls)-1)], 0)
	}
	lo, hi := i-1, i
	if lo < 0 {
		lo, hi = 0, 1
	}
	if hi >= len(ls) {
		lo, hi = len(ls)-2, len(ls)-1
	}
	a, b := ls[lo], ls[hi]
	t := float64(level-a.Level) / float64(b.Level-a.Level)
	return scaleLevel(a, level, f, 1-t, b, t)
}

// scaleLevel returns f·(wa·a + wb·b) field by field, clamped at zero.
func scaleLevel(a Level, level int, f, wa float64, b Level, wb float64) Level {
	mix := func(x, y float64) float64 { return math.Max(0, f*(wa*x+wb*y)) }
	mixB := func(x, y int64) int64 { return int64(math.Max(0, math.Round(wa*float64(x)+wb*float64(y)))) }
	return Level{
		Level:           level,
		Encode:          mix(a.Encode, b.Encode),
		Encrypt:         mix(a.Encrypt, b.Encrypt),
		Decrypt:         mix(a.Decrypt, b.Decrypt),
		Add:             mix(a.Add, b.Add),
		AddPlain:        mix(a.AddPlain, b.AddPlain),
		MulPlain:        mix(a.MulPlain, b.MulPlain),
		MulScalar:       mix(a.MulScalar, b.MulScalar),
		MulRelin:        mix(a.MulRelin, b.MulRelin),
		Rescale:         mix(a.Rescale, b.Rescale),
		Rotate:          mix(a.Rotate, b.Rotate),
		Decompose:       mix(a.Decompose, b.Decompose),
		HoistedRotate:   mix(a.HoistedRotate, b.HoistedRotate),
		Diagonal:        mix(a.Diagonal, b.Diagonal),
		ModDown:         mix(a.ModDown, b.ModDown),
		CiphertextBytes: mixB(a.CiphertextBytes, b.CiphertextBytes),
		KeyBytes:        mixB(a.KeyBytes, b.KeyBytes),
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// ThisMachine describes the running machine: OS, architecture, CPU model
// (from /proc/cpuinfo when readable) and cores.
func ThisMachine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %s, %d cores", runtime.GOOS, runtime.GOARCH, model, runtime.NumCPU())
}
