package ckksir

import "fmt"

// Diagonal is one generalized diagonal of a block matrix: Len values, stored
// as runs of consecutive non-zero values. The diagonals of convolutions on
// strided layouts are mostly zero (ResNet-20's hold 17% non-zeros in runs of
// about 8), so a dense slice would take six times the memory.
//
// Run i starts at position Starts[i] and holds Values[Offs[i]:Offs[i+1]];
// Starts increase, runs do not overlap and end by Len. Offs has one more
// entry than Starts (Offs[0] = 0, the last is len(Values)); positions in no
// run are zero.
type Diagonal struct {
	Len    int
	Starts []int32
	Offs   []int32
	Values []float64
}

// NewDiagonal stores dense compactly (its zeros are dropped).
func NewDiagonal(dense []float64) Diagonal {
	d := Diagonal{Len: len(dense), Offs: []int32{0}}
	for j := 0; j < len(dense); {
		if dense[j] == 0 {
			j++
			continue
		}
		d.Starts = append(d.Starts, int32(j))
		for ; j < len(dense) && dense[j] != 0; j++ {
			d.Values = append(d.Values, dense[j])
		}
		d.Offs = append(d.Offs, int32(len(d.Values)))
	}
	return d
}

// NewMatrix returns the matrix with the given dense diagonals (each
// BlockSize values), stored compactly.
func NewMatrix(dense map[int][]float64) *Matrix {
	m := &Matrix{Diagonals: make(map[int]Diagonal, len(dense))}
	for d, v := range dense {
		m.Diagonals[d] = NewDiagonal(v)
	}
	return m
}

// Runs calls f with the start position and the values of each run, in
// increasing order of position. f must not keep or modify vals.
func (d *Diagonal) Runs(f func(start int, vals []float64)) {
	for i, s := range d.Starts {
		f(int(s), d.Values[d.Offs[i]:d.Offs[i+1]])
	}
}

// Each calls f with every stored (position, value) pair in increasing order
// of position.
func (d *Diagonal) Each(f func(j int, v float64)) {
	d.Runs(func(start int, vals []float64) {
		for i, v := range vals {
			f(start+i, v)
		}
	})
}

// Expand writes the dense diagonal into out (at least Len values).
func (d *Diagonal) Expand(out []float64) {
	clear(out[:d.Len])
	d.Runs(func(start int, vals []float64) { copy(out[start:], vals) })
}

// Dense returns the diagonal as Len values.
func (d *Diagonal) Dense() []float64 {
	out := make([]float64, d.Len)
	d.Expand(out)
	return out
}

// NonZeros is the number of stored values.
func (d *Diagonal) NonZeros() int { return len(d.Values) }

// Bytes is the memory the diagonal takes: 8 bytes per value and per run.
func (d *Diagonal) Bytes() int64 {
	return 8*int64(len(d.Values)) + 4*int64(len(d.Starts)+len(d.Offs))
}

// check verifies the run structure against a block of bs slots.
func (d *Diagonal) check(bs int) error {
	if d.Len != bs {
		return fmt.Errorf("%d values for a block of %d", d.Len, bs)
	}
	if len(d.Offs) != len(d.Starts)+1 || d.Offs[0] != 0 || int(d.Offs[len(d.Offs)-1]) != len(d.Values) {
		return fmt.Errorf("run offsets do not match %d runs of %d values", len(d.Starts), len(d.Values))
	}
	end := 0
	for i, s := range d.Starts {
		n := int(d.Offs[i+1]) - int(d.Offs[i])
		if n <= 0 || int(s) < end || int(s)+n > d.Len {
			return fmt.Errorf("run %d (start %d, %d values) overlaps or leaves the block", i, s, n)
		}
		end = int(s) + n
	}
	return nil
}
