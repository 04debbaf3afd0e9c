// Package ckksir is ciphercut's HE-level IR: a program over CKKS ciphertexts
// whose values are slot vectors with a level and a scale, and whose
// instructions are what CKKS offers (linear transformations in diagonal form,
// plaintext and ciphertext additions and products, polynomial evaluation,
// rotations, bootstrapping). The lowering pass (passes.LowerCKKS) produces it
// from the canonical tensor IR; the runtime executes only this level.
//
// # Slot layout
//
// A ciphertext holds Slots slots, cut into Batch blocks of BlockSize slots;
// block b holds sample b. A tensor value of a program is flattened row-major
// (per sample) into slots [Offset, Offset+Size) of every block. Slots of a
// block outside the tensor hold values the program never reads.
//
// # Feature-major packing
//
// With Packing == PackFeature (SIMD across samples, as in CryptoNets), every
// slot holds a different sample: BlockSize is 1, Batch is Slots, and a value
// whose per-sample tensor has K elements is K ciphertexts, ciphertext k
// holding element k (row-major) of Slots samples. Linear instructions carry
// dense matrices (Instr.Dense) applied by plaintext-scalar
// multiply-accumulates: no rotations, hence no Galois keys. Bias and Vector
// hold one scalar per output ciphertext (the value's Size()).
package ckksir

import (
	"fmt"
	"sort"

	"github.com/ciphercut/ciphercut/ir"
)

// Version is the HE IR version a plan records; plans of another version are
// refused.
const Version = 2

// Params are the CKKS parameters of a program: ring degree 2^LogN, the bit
// sizes of the ciphertext modulus chain Q (LogQ[0] is the base prime, one
// more prime per level) and of the key-switching primes P, and the default
// scale 2^LogScale. SecurityBits is the estimated security of the ring with
// a uniform ternary secret, from the HE standard's bounds on log2(QP).
type Params struct {
	LogN         int
	LogQ         []int
	LogP         []int
	LogScale     int
	SecurityBits int
}

// MaxLevel is the level of a fresh ciphertext (the number of rescales it can
// take).
func (p Params) MaxLevel() int { return len(p.LogQ) - 1 }

// Slots is the number of complex slots, N/2.
func (p Params) Slots() int { return 1 << (p.LogN - 1) }

// LogQP is the total bit size of the modulus the keys live in.
func (p Params) LogQP() int {
	s := 0
	for _, q := range p.LogQ {
		s += q
	}
	for _, q := range p.LogP {
		s += q
	}
	return s
}

func (p Params) String() string {
	return fmt.Sprintf("N=2^%d logQ=%v logP=%v scale=2^%d logQP=%d (%d-bit security)",
		p.LogN, p.LogQ, p.LogP, p.LogScale, p.LogQP(), p.SecurityBits)
}

// Packing is how samples and tensor elements map to ciphertext slots.
type Packing uint8

const (
	// PackSlot (the zero value): each ciphertext holds Batch whole samples,
	// one per block of BlockSize slots.
	PackSlot Packing = iota
	// PackFeature: slot s of ciphertext k holds element k of sample s.
	PackFeature
)

func (k Packing) String() string {
	switch k {
	case PackSlot:
		return "slot"
	case PackFeature:
		return "feature"
	}
	return fmt.Sprintf("packing(%d)", uint8(k))
}

// ParsePacking parses "slot" or "feature" ("" is slot).
func ParsePacking(s string) (Packing, error) {
	switch s {
	case "", "slot":
		return PackSlot, nil
	case "feature":
		return PackFeature, nil
	}
	return 0, fmt.Errorf("unknown packing %q (want slot or feature)", s)
}

// Set implements flag.Value (and pflag.Value with Type).
func (k *Packing) Set(s string) error {
	v, err := ParsePacking(s)
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Type names the flag's value kind for pflag.
func (k *Packing) Type() string { return "slot|feature" }

// DenseMatrix is a dense Rows x Cols matrix, row-major: Data[r*Cols+c] is
// the coefficient of input element c in output element r. Feature packing
// only.
type DenseMatrix struct {
	Rows, Cols int
	Data       []float64
}

// At returns the coefficient of input c in output r.
func (m *DenseMatrix) At(r, c int) float64 { return m.Data[r*m.Cols+c] }

// NonZeros counts the non-zero coefficients.
func (m *DenseMatrix) NonZeros() int {
	n := 0
	for _, v := range m.Data {
		if v != 0 {
			n++
		}
	}
	return n
}

// Layout places one tensor (per sample) in the slots of a block.
type Layout struct {
	// Shape is the per-sample tensor shape (without the batch axis).
	Shape ir.Shape
	// Offset is the slot index, within each block, of the tensor's first
	// element; element k (row-major) sits at Offset+k. Unused when Slots is
	// set.
	Offset int
	// Slots, when non-nil, places element k (row-major) at slot Slots[k] of
	// the block instead: a scattered layout, such as a strided convolution's
	// output left where its window started, or several channels interleaved
	// in the gaps of a pooled image. The slots are distinct.
	Slots []int
}

// Size is the number of tensor elements (the slots it occupies in a block).
func (l Layout) Size() int { return l.Shape.Size() }

// Slot is the slot of element k (row-major) within a block.
func (l Layout) Slot(k int) int {
	if l.Slots != nil {
		return l.Slots[k]
	}
	return l.Offset + k
}

// Contiguous reports whether the elements sit in consecutive slots.
func (l Layout) Contiguous() bool { return l.Slots == nil }

// Span is one past the largest slot the tensor occupies: the smallest block
// that holds it.
func (l Layout) Span() int {
	if l.Slots == nil {
		return l.Offset + l.Size()
	}
	top := 0
	for _, s := range l.Slots {
		top = max(top, s+1)
	}
	return top
}

// Elements maps each slot of a block of blockSize slots to the element it
// holds, or -1.
func (l Layout) Elements(blockSize int) []int {
	el := make([]int, blockSize)
	for i := range el {
		el[i] = -1
	}
	for k, n := 0, l.Size(); k < n; k++ {
		if s := l.Slot(k); s >= 0 && s < blockSize {
			el[s] = k
		}
	}
	return el
}

// Equal reports whether two layouts place the same shape in the same slots.
func (l Layout) Equal(o Layout) bool {
	return l.Shape.Equal(o.Shape) && l.SameSlots(o)
}

// SameSlots reports whether two layouts of as many elements put element k
// (row-major) in the same slot, for every k: a reshape between them costs
// nothing.
func (l Layout) SameSlots(o Layout) bool {
	if l.Size() != o.Size() {
		return false
	}
	for k, n := 0, l.Size(); k < n; k++ {
		if l.Slot(k) != o.Slot(k) {
			return false
		}
	}
	return true
}

// String describes the layout compactly: shape@offset for a contiguous one,
// shape@{first slot}+span for a scattered one.
func (l Layout) String() string {
	if l.Slots == nil {
		return fmt.Sprintf("%s@%d", l.Shape, l.Offset)
	}
	first := 0
	if len(l.Slots) > 0 {
		first = l.Slots[0]
	}
	return fmt.Sprintf("%s@{%d..%d scattered}", l.Shape, first, l.Span()-1)
}

// Op is an instruction kind.
type Op uint8

// Instruction kinds. Levels: Linear and MulConst consume one level; Poly
// consumes Poly.Depth() levels; the others consume none.
const (
	// OpLinear: Out = Σ_i Matrices[i](In[i]) + Bias. Each matrix is applied
	// blockwise (the same matrix in every batch block) by the baby-step
	// giant-step diagonal method.
	OpLinear Op = iota + 1
	// OpPoly: Out = Poly(In[0]) slotwise.
	OpPoly
	// OpAdd: Out = In[0] + In[1].
	OpAdd
	// OpMul: Out = In[0] * In[1] (relinearized and rescaled).
	OpMul
	// OpAddConst: Out = In[0] + Bias.
	OpAddConst
	// OpMulConst: Out = In[0] * Vector (rescaled).
	OpMulConst
	// OpBootstrap: Out = In[0] refreshed to level Params.MaxLevel() (see
	// BootParams); the program must set Program.Boot. Its input may be at
	// any level, its output has the default scale.
	OpBootstrap
)

var opNames = map[Op]string{OpLinear: "linear", OpPoly: "poly", OpAdd: "add", OpMul: "mul",
	OpAddConst: "add-const", OpMulConst: "mul-const", OpBootstrap: "bootstrap"}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Matrix is a linear map from one block layout to another, stored by its
// non-zero generalized diagonals over a block: position j of Diagonals[d]
// is the coefficient of input slot (j+d) mod BlockSize in output slot j, for
// j in [0, BlockSize). Diagonal indices lie in (-BlockSize, BlockSize) and
// never wrap across blocks (an entry with j+d outside [0, BlockSize) is
// zero). NewMatrix builds one from dense diagonals.
type Matrix struct {
	Diagonals map[int]Diagonal
}

// Indices returns the diagonal indices in increasing order.
func (m *Matrix) Indices() []int {
	idx := make([]int, 0, len(m.Diagonals))
	for d := range m.Diagonals {
		idx = append(idx, d)
	}
	sort.Ints(idx)
	return idx
}

// Poly is a polynomial in the Chebyshev basis on the interval [A, B]:
// p(x) = Σ_k Coeffs[k]·T_k((2x - A - B)/(B - A)). When A = -1 and B = 1 the
// change of variable is free; otherwise it costs one extra level.
type Poly struct {
	// Func names what the polynomial approximates ("Relu", "Sigmoid", ...).
	Func   string
	A, B   float64
	Coeffs []float64
	// MaxErr is the largest |p(x) - f(x)| over [A, B], measured on a fine
	// grid when the approximation was chosen.
	MaxErr float64
}

// Degree is the polynomial's degree.
func (p *Poly) Degree() int { return len(p.Coeffs) - 1 }

// Depth is the number of levels evaluating p consumes, including the change
// of variable when the interval is not [-1, 1].
func (p *Poly) Depth() int {
	d := 0
	for (1 << d) <= p.Degree() {
		d++
	}
	if p.A != -1 || p.B != 1 {
		d++
	}
	return d
}

// Instr is one instruction; values are numbered in SSA form.
type Instr struct {
	Op  Op
	Out int
	In  []int
	// Matrices, one per input, for OpLinear in slot packing.
	Matrices []*Matrix
	// Dense, one per input, for OpLinear in feature packing: Rows is the
	// output's Size(), Cols the input's.
	Dense []*DenseMatrix
	// Bias (OpLinear, OpAddConst) or Vector (OpMulConst): BlockSize values
	// repeated in every block (feature packing: one value per output
	// ciphertext, the output's Size()); nil means zero.
	Bias   []float64
	Vector []float64
	Poly   *Poly
	// Bound (OpBootstrap) is a power of two bounding the input's magnitude:
	// the runtime reads the input as divided by it (multiplying its scale,
	// without computing) so that bootstrapping sees values within [-1, 1],
	// where its modular reduction is accurate; the output holds the input
	// divided by Bound. 0 or 1 means no division.
	Bound float64
	// Layer names the tensor-IR nodes this instruction implements, for
	// reports and errors.
	Layer string
}

// Value describes an SSA value: where its tensor sits and the level it is
// at after its instruction.
type Value struct {
	Layout Layout
	Level  int
	// Bound is the predicted bound on the absolute error of every slot the
	// tensor occupies, relative to the plaintext reference.
	Bound float64
}

// IO binds a tensor input or output of the model to a program value.
type IO struct {
	Name  string
	Value int
}

// Program is a complete CKKS circuit.
type Program struct {
	Params Params
	// Packing is the slot layout (PackSlot unless set).
	Packing   Packing
	BlockSize int
	Batch     int
	Inputs    []IO
	Outputs   []IO
	Values    []Value
	Instrs    []Instr
	// Boot holds the bootstrapping parameters; nil: the program does not
	// bootstrap (OpBootstrap is then refused).
	Boot *BootParams
}

// BootParams are what a compiler chooses for bootstrapping (Lattigo's
// hefloat/bootstrapping, circuit order ModUpThenEncode, modular reduction
// by a discrete cosine approximation).
//
// The program's modulus chain Params.LogQ is the residual chain: the levels
// the program computes on. Bootstrapping appends its own primes above it
// (SlotsToCoeffs, then the modular reduction, then CoeffsToSlots, from the
// bottom up) and uses its own key-switching primes LogP, so its keys live in
// a modulus of log2 sum(Params.LogQ) + the extra bits the runtime reports
// (ckks.BootstrapExtraLogQP): that total, not Params.LogQP(), is what must
// stay within the security bound of the secret key distribution. A
// bootstrap outputs at Params.MaxLevel() (the top of the residual chain)
// with the default scale. Bootstrapping scales its input so that a message
// of magnitude 1 is Q[0]/2^LogMessageRatio; its error is relative to that,
// so the messages it refreshes should stay within about [-1, 1].
//
// Bootstrapping always refreshes all Params.Slots() slots: sparse-slot
// bootstrapping (Lattigo's LogSlots below LogN-1, cheaper encoding and
// decoding) is only correct for ciphertexts whose slot vector repeats with
// the sparse period, which ciphertexts holding Batch independent blocks do
// not; a program that wants cheaper bootstrapping picks a smaller ring
// instead.
//
// Every field is explicit (no zero-value defaults); DefaultBootParams
// returns Lattigo's default bootstrapping circuit.
type BootParams struct {
	// SecretWeight is the Hamming weight of the program's secret key
	// whenever Boot is set (the program's keys and the bootstrapping keys
	// share the secret); 0 keeps the uniform ternary secret. A sparse
	// secret (Lattigo's sets use 192) lowers the modulus that 128-bit
	// security allows.
	SecretWeight int
	// EphemeralWeight is the Hamming weight of the ephemeral secret the
	// bootstrapping switches to before raising the modulus (sparse-secret
	// encapsulation, eprint 2022/024: a small K whatever SecretWeight);
	// 0 disables the encapsulation.
	EphemeralWeight int
	// CoeffsToSlotsLogQ and SlotsToCoeffsLogQ are the bit sizes of the
	// primes of the homomorphic encoding and decoding, one prime (one
	// factor of the DFT) per level, at most LogN-1 each. Lattigo adds
	// LogScale to each SlotsToCoeffs prime whose sum stays below 61 bits.
	CoeffsToSlotsLogQ []int
	SlotsToCoeffsLogQ []int
	// EvalModLogScale is the bit size of each prime of the modular
	// reduction (and its scale).
	EvalModLogScale int
	// LogMessageRatio is log2(Q[0]/|m|) at the start of bootstrapping:
	// Params.LogQ[0] - Params.LogScale must be at least this.
	LogMessageRatio int
	// K: the modular reduction is approximated on [-K+1, K-1]; Mod1Degree
	// is its degree (at least 2K-2), DoubleAngle the number of double-angle
	// steps, Mod1InvDegree the degree of the arcsine correction (0: none).
	K, Mod1Degree, DoubleAngle, Mod1InvDegree int
	// LogP are the bit sizes of the bootstrapping key-switching primes.
	LogP []int
}

// DefaultBootParams returns Lattigo's default bootstrapping circuit (depth
// 4 + 8 + 3 = 15, 821 bits of Q, about 27 bits of precision for H=192)
// with a sparse secret of weight 192, the ephemeral secret of weight 32,
// and five 61-bit key-switching primes.
func DefaultBootParams() *BootParams {
	return &BootParams{
		SecretWeight:      192,
		EphemeralWeight:   32,
		CoeffsToSlotsLogQ: []int{56, 56, 56, 56},
		SlotsToCoeffsLogQ: []int{39, 39, 39},
		EvalModLogScale:   60,
		LogMessageRatio:   8,
		K:                 16,
		Mod1Degree:        30,
		DoubleAngle:       3,
		LogP:              []int{61, 61, 61, 61, 61},
	}
}

// Depth is the number of primes the bootstrapping circuit adds above the
// residual chain: CoeffsToSlots, modular reduction and SlotsToCoeffs.
func (b *BootParams) Depth() int {
	return len(b.CoeffsToSlotsLogQ) + b.EvalModDepth() + len(b.SlotsToCoeffsLogQ)
}

// EvalModDepth is the depth of the modular reduction: the cosine's
// polynomial (degree max(Mod1Degree, 2K-1)), the double-angle steps and the
// arcsine correction.
func (b *BootParams) EvalModDepth() int {
	bitLen := func(x int) int {
		n := 0
		for ; x > 0; x >>= 1 {
			n++
		}
		return n
	}
	return bitLen(max(b.Mod1Degree, 2*b.K-1)) + b.DoubleAngle + bitLen(b.Mod1InvDegree)
}

func (b *BootParams) String() string {
	return fmt.Sprintf("secret H=%d ephemeral H=%d CtS=%v EvalMod=%dx%d SfC=%v ratio=2^%d K=%d deg=%d double=%d inv=%d logP=%v",
		b.SecretWeight, b.EphemeralWeight, b.CoeffsToSlotsLogQ, b.EvalModDepth(), b.EvalModLogScale, b.SlotsToCoeffsLogQ,
		b.LogMessageRatio, b.K, b.Mod1Degree, b.DoubleAngle, b.Mod1InvDegree, b.LogP)
}

// BootstrapLevel is the level a bootstrap outputs: the top of the residual
// chain, Params.MaxLevel().
func (p *Program) BootstrapLevel() int { return p.Params.MaxLevel() }

// DiagonalCount is the total number of non-zero diagonals over all linear
// transformations (each costs one plaintext product).
func (p *Program) DiagonalCount() int {
	n := 0
	for _, in := range p.Instrs {
		for _, m := range in.Matrices {
			n += len(m.Diagonals)
		}
	}
	return n
}

// WeightBytes is the memory the program's plaintext data takes as loaded:
// matrix diagonals (DiagonalBytes), dense matrices, biases, constant vectors
// and polynomial coefficients, 8 bytes per value. An evaluator that encodes
// diagonals at each use keeps all of it.
func (p *Program) WeightBytes() int64 {
	n := 0
	for _, in := range p.Instrs {
		for _, m := range in.Dense {
			n += len(m.Data)
		}
		n += len(in.Bias) + len(in.Vector)
		if in.Poly != nil {
			n += len(in.Poly.Coeffs)
		}
	}
	return 8*int64(n) + p.DiagonalBytes()
}

// DiagonalBytes is the memory the matrices' diagonals take, stored
// compactly (Diagonal.Bytes).
func (p *Program) DiagonalBytes() int64 {
	var n int64
	for _, in := range p.Instrs {
		for _, m := range in.Matrices {
			for _, d := range m.Diagonals {
				n += d.Bytes()
			}
		}
	}
	return n
}

// ScalarProducts is the number of non-zero dense coefficients over all
// linear instructions of a feature-packed program (each costs one
// plaintext-scalar multiply-accumulate per batch).
func (p *Program) ScalarProducts() int {
	n := 0
	for _, in := range p.Instrs {
		for _, m := range in.Dense {
			n += m.NonZeros()
		}
	}
	return n
}

// Depth is the number of levels the program consumes on its longest path.
func (p *Program) Depth() int {
	top := p.Params.MaxLevel()
	d := 0
	for _, v := range p.Values {
		if top-v.Level > d {
			d = top - v.Level
		}
	}
	return d
}

// Bootstraps is the number of bootstrapping instructions.
func (p *Program) Bootstraps() int {
	n := 0
	for _, ins := range p.Instrs {
		if ins.Op == OpBootstrap {
			n++
		}
	}
	return n
}
