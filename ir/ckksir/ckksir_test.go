package ckksir

import (
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
)

// small builds x -> linear -> poly -> y on a 2^12 ring with blocks of 8.
func small() *Program {
	lay := Layout{Shape: ir.Shape{4}}
	diag := make([]float64, 8)
	for i := range diag {
		diag[i] = 0.5
	}
	return &Program{
		Params:    Params{LogN: 12, LogQ: []int{50, 30, 30, 30}, LogP: []int{51}, LogScale: 30, SecurityBits: 128},
		BlockSize: 8, Batch: 256,
		Inputs:  []IO{{Name: "x", Value: 0}},
		Outputs: []IO{{Name: "y", Value: 2}},
		Values:  []Value{{Layout: lay, Level: 3}, {Layout: lay, Level: 2}, {Layout: lay, Level: 0, Bound: 1e-6}},
		Instrs: []Instr{
			{Op: OpLinear, Out: 1, In: []int{0}, Matrices: []*Matrix{NewMatrix(map[int][]float64{0: diag, -1: diag})}, Layer: "fc"},
			{Op: OpPoly, Out: 2, In: []int{1}, Poly: &Poly{Func: "Relu", A: -1, B: 1, Coeffs: []float64{0.1, 0.5, 0.4}}, Layer: "relu"},
		},
	}
}

func TestVerifyAcceptsAndDumps(t *testing.T) {
	p := small()
	if err := Verify(p); err != nil {
		t.Fatal(err)
	}
	if p.Depth() != 3 || p.DiagonalCount() != 2 || p.Instrs[1].Poly.Depth() != 2 {
		t.Errorf("depth %d, diagonals %d, poly depth %d", p.Depth(), p.DiagonalCount(), p.Instrs[1].Poly.Depth())
	}
	var b strings.Builder
	if err := Dump(&b, p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"slots 2048 = 256 blocks x 8, depth 3, 2 diagonals",
		"v1 = linear(v0) diagonals=2 -> [4]@0 level 2  # fc",
		"v2 = poly(v1) Relu deg=2 on [-1, 1] depth=2", `output "y" = decrypt(v2)`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dump lacks %q:\n%s", want, b.String())
		}
	}
}

// TestVerifyRejects checks that each kind of corruption a plan file could
// carry is an error, not a panic in the runtime.
func TestVerifyRejects(t *testing.T) {
	for name, c := range map[string]struct {
		corrupt func(p *Program)
		want    string
	}{
		"blocks":        {func(p *Program) { p.Batch = 3 }, "do not fill"},
		"level":         {func(p *Program) { p.Values[1].Level = 3 }, "outputs level 3, want 2"},
		"too deep":      {func(p *Program) { p.Values[0].Level = 1; p.Values[1].Level = 0; p.Values[2].Level = -2 }, "level -2"},
		"undefined":     {func(p *Program) { p.Instrs[1].In = []int{2} }, "before it is defined"},
		"out of range":  {func(p *Program) { p.Instrs[0].In = []int{7} }, "names value v7"},
		"diagonal size": {func(p *Program) { p.Instrs[0].Matrices[0].Diagonals[0] = NewDiagonal([]float64{1}) }, "malformed diagonal"},
		"diagonal runs": {func(p *Program) {
			p.Instrs[0].Matrices[0].Diagonals[0] = Diagonal{Len: 8, Starts: []int32{6}, Offs: []int32{0, 3}, Values: []float64{1, 2, 3}}
		}, "leaves the block"},
		"diagonal offs": {func(p *Program) {
			p.Instrs[0].Matrices[0].Diagonals[0] = Diagonal{Len: 8, Starts: []int32{0}, Offs: []int32{0, 4}, Values: []float64{1}}
		}, "run offsets"},
		"nil matrix": {func(p *Program) { p.Instrs[0].Matrices[0] = nil }, "nil matrix"},
		"no poly":    {func(p *Program) { p.Instrs[1].Poly = nil }, "lacks its polynomial"},
		"layout":     {func(p *Program) { p.Values[0].Layout.Offset = 6 }, "outside a block"},
		"redefined":  {func(p *Program) { p.Instrs[1].Out = 1 }, "redefines v1"},
		"params":     {func(p *Program) { p.Params.LogN = 40 }, "implausible parameters"},
		"slot count": {func(p *Program) { p.Values[0].Layout.Slots = []int{0, 2} }, "has 2 slots, want 4"},
		"slot range": {func(p *Program) { p.Values[0].Layout.Slots = []int{0, 2, 4, 8} }, "outside a block of 8"},
		"slot twice": {func(p *Program) { p.Values[0].Layout.Slots = []int{0, 2, 2, 6} }, "two elements at slot 2"},
		"slotwise":   {func(p *Program) { p.Values[2].Layout.Slots = []int{1, 3, 5, 7} }, "keeps the layout"},
	} {
		p := small()
		c.corrupt(p)
		err := Verify(p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

func TestScatteredLayout(t *testing.T) {
	l := Layout{Shape: ir.Shape{2, 2}, Slots: []int{0, 2, 8, 10}}
	c := Layout{Shape: ir.Shape{2, 2}, Offset: 3}
	if l.Contiguous() || !c.Contiguous() {
		t.Error("Contiguous")
	}
	if l.Slot(2) != 8 || c.Slot(2) != 5 || l.Span() != 11 || c.Span() != 7 {
		t.Errorf("slot %d %d span %d %d", l.Slot(2), c.Slot(2), l.Span(), c.Span())
	}
	el := l.Elements(12)
	if el[8] != 2 || el[1] != -1 || el[10] != 3 {
		t.Errorf("elements %v", el)
	}
	if !l.Equal(Layout{Shape: ir.Shape{2, 2}, Slots: []int{0, 2, 8, 10}}) || l.Equal(c) ||
		!c.Equal(Layout{Shape: ir.Shape{2, 2}, Slots: []int{3, 4, 5, 6}}) {
		t.Error("Equal")
	}
	if got := l.String(); got != "[2x2]@{0..10 scattered}" {
		t.Errorf("String %q", got)
	}
	p := small()
	p.Values[1].Layout.Slots = []int{1, 3, 5, 7}
	p.Values[2].Layout.Slots = []int{1, 3, 5, 7}
	if err := Verify(p); err != nil {
		t.Errorf("scattered output of a linear map: %v", err)
	}
}

// booted extends small with a bootstrap of the polynomial's output back to
// the top level and a second polynomial.
func booted() *Program {
	p := small()
	p.Params.LogQ = []int{50, 30, 30, 30}
	p.Params.LogScale = 30
	p.Boot = DefaultBootParams()
	lay := p.Values[2].Layout
	p.Values = append(p.Values, Value{Layout: lay, Level: 3}, Value{Layout: lay, Level: 1})
	p.Instrs = append(p.Instrs,
		Instr{Op: OpBootstrap, Out: 3, In: []int{2}, Layer: "refresh"},
		Instr{Op: OpPoly, Out: 4, In: []int{3}, Poly: &Poly{Func: "Relu", A: -1, B: 1, Coeffs: []float64{0.1, 0.5, 0.4}}})
	p.Outputs[0].Value = 4
	return p
}

func TestVerifyBootstrap(t *testing.T) {
	p := booted()
	if err := Verify(p); err != nil {
		t.Fatal(err)
	}
	if p.Boot.EvalModDepth() != 8 || p.Boot.Depth() != 15 || p.BootstrapLevel() != 3 {
		t.Errorf("eval-mod depth %d, depth %d, level %d; want 8, 15, 3", p.Boot.EvalModDepth(), p.Boot.Depth(), p.BootstrapLevel())
	}
	var b strings.Builder
	if err := Dump(&b, p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bootstrapping: secret H=192 ephemeral H=32 CtS=[56 56 56 56] EvalMod=8x60", "depth 15, outputs level 3",
		"v3 = bootstrap(v2) -> [4]@0 level 3  # refresh"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dump lacks %q:\n%s", want, b.String())
		}
	}
	for name, c := range map[string]struct {
		corrupt func(p *Program)
		want    string
	}{
		"no params":      {func(p *Program) { p.Boot = nil }, "no bootstrapping parameters"},
		"output level":   {func(p *Program) { p.Values[3].Level = 2; p.Values[4].Level = 0 }, "a bootstrap outputs level 3"},
		"two inputs":     {func(p *Program) { p.Instrs[2].In = []int{2, 1} }, "has 2 inputs, want 1"},
		"layout":         {func(p *Program) { p.Values[3].Layout.Offset = 1; p.Values[4].Layout.Offset = 1 }, "a bootstrap keeps the layout"},
		"message ratio":  {func(p *Program) { p.Boot.LogMessageRatio = 21 }, "message ratio"},
		"no P":           {func(p *Program) { p.Boot.LogP = nil }, "no key-switching prime"},
		"prime size":     {func(p *Program) { p.Boot.CoeffsToSlotsLogQ[1] = 70 }, "CoeffsToSlots prime of 70 bits"},
		"too many DFT":   {func(p *Program) { p.Boot.SlotsToCoeffsLogQ = make([]int, 12) }, "12 SlotsToCoeffs levels"},
		"degree":         {func(p *Program) { p.Boot.Mod1Degree = 10 }, "modular reduction K=16 degree 10"},
		"secret weight":  {func(p *Program) { p.Boot.SecretWeight = -1 }, "secret Hamming weight"},
		"ephemeral":      {func(p *Program) { p.Boot.EphemeralWeight = 1 << 20 }, "ephemeral Hamming weight"},
		"eval mod prime": {func(p *Program) { p.Boot.EvalModLogScale = 5 }, "modular reduction prime of 5 bits"},
	} {
		p := booted()
		c.corrupt(p)
		err := Verify(p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

// TestDiagonalRoundTrip checks that a compact diagonal expands back to the
// dense values it was made from.
func TestDiagonalRoundTrip(t *testing.T) {
	for _, dense := range [][]float64{{}, {0, 0, 0}, {1, 2, 3}, {0, 1, 0, 0, 2, 3, 0}, {4, 0, 0, 5}} {
		d := NewDiagonal(dense)
		if err := d.check(len(dense)); err != nil {
			t.Fatalf("%v: %v", dense, err)
		}
		got := d.Dense()
		nz := 0
		for j, v := range dense {
			if got[j] != v {
				t.Fatalf("%v expands to %v", dense, got)
			}
			if v != 0 {
				nz++
			}
		}
		if d.NonZeros() != nz {
			t.Errorf("%v: %d non-zeros stored, want %d", dense, d.NonZeros(), nz)
		}
	}
}
