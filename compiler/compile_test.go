package compiler

import "testing"

// TestProductSlots checks the product size that leaves room for a batch.
func TestProductSlots(t *testing.T) {
	for _, c := range []struct{ logN, batch, want int }{
		{0, 1, 1 << 15}, {16, 2, 1 << 14}, {16, 5, 1 << 12}, {16, 8, 1 << 12}, {16, 9, 1 << 11}, {14, 3, 1 << 11}, {12, 1 << 20, 1},
	} {
		if got := productSlots(c.logN, c.batch); got != c.want {
			t.Errorf("productSlots(%d, %d) = %d, want %d", c.logN, c.batch, got, c.want)
		}
	}
}
