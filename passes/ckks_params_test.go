package passes

import (
	"strings"
	"testing"
)

// TestChooseParams checks chosen parameters on typical depths.
func TestChooseParams(t *testing.T) {
	for _, c := range []struct {
		depth, block int
		opts         LowerOptions
		want         string
	}{
		{0, 64, LowerOptions{}, "N=2^13 logQ=[60] logP=[61] scale=2^40 logQP=121 (128-bit security)"},
		// The largest scale first, then as many P primes (up to 4, at most |Q|) as still fit.
		{2, 64, LowerOptions{}, "N=2^13 logQ=[60 40 40] logP=[61] scale=2^40 logQP=201 (128-bit security)"},
		{3, 64, LowerOptions{}, "N=2^13 logQ=[55 35 35 35] logP=[56] scale=2^35 logQP=216 (128-bit security)"},
		{5, 4, LowerOptions{}, "N=2^14 logQ=[60 40 40 40 40 40] logP=[59 59 59] scale=2^40 logQP=437 (128-bit security)"},
		{11, 64, LowerOptions{}, "N=2^14 logQ=[50 30 30 30 30 30 30 30 30 30 30 30] logP=[51] scale=2^30 logQP=431 (128-bit security)"},
		{26, 2048, LowerOptions{}, "N=2^15 logQ=[50 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30] logP=[51] scale=2^30 logQP=881 (128-bit security)"},
		// Slots: 8192 samples of 2 slots need N=2^15.
		{0, 2, LowerOptions{Batch: 8192}, "N=2^15 logQ=[60] logP=[61] scale=2^40 logQP=121 (128-bit security)"},
		// A fixed scale.
		{3, 16, LowerOptions{LogScale: 50}, "N=2^14 logQ=[60 50 50 50] logP=[57 57 57 57] scale=2^50 logQP=438 (128-bit security)"},
		// Smaller P primes fill the room, but together never below the largest
		// key-switching digit: [44 44] covers the 80-bit digit [50 30]; 3 or 4
		// primes would be too small for their 110- and 140-bit digits.
		{10, 64, LowerOptions{MaxLogN: 14}, "N=2^14 logQ=[50 30 30 30 30 30 30 30 30 30 30] logP=[44 44] scale=2^30 logQP=438 (128-bit security)"},
		// A higher minimum scale moves to a bigger ring, where 2^40 fits.
		{11, 64, LowerOptions{MinLogScale: 35}, "N=2^15 logQ=[60 40 40 40 40 40 40 40 40 40 40 40] logP=[47 47 47 47 47 47 47 47] scale=2^40 logQP=876 (128-bit security)"},
	} {
		p, err := ChooseParams(c.depth, c.block, c.opts)
		if err != nil {
			t.Errorf("depth %d: %v", c.depth, err)
			continue
		}
		if got := p.String(); got != c.want {
			t.Errorf("depth %d block %d %+v:\n got %s\nwant %s", c.depth, c.block, c.opts, got, c.want)
		}
	}
}

// TestChooseParamsMinimal checks, for every depth, that the parameters fit
// their ring's 128-bit bound and that no smaller ring would hold the depth
// at an allowed scale.
func TestChooseParamsMinimal(t *testing.T) {
	for depth := 0; depth <= 60; depth++ {
		p, err := ChooseParams(depth, 256, LowerOptions{})
		if err != nil {
			if !strings.Contains(err.Error(), "bootstrapping is not supported yet") || depth < 50 {
				t.Errorf("depth %d: %v", depth, err)
			}
			continue
		}
		if p.MaxLevel() != depth || p.SecurityBits != 128 || p.LogQP() > MaxLogQP128[p.LogN] || p.LogScale < DefaultMinLogScale {
			t.Errorf("depth %d: %s", depth, p)
		}
		if p.LogN > ckksMinLogN {
			if q := ckksChain(p.LogN-1, depth, DefaultMinLogScale, 1); q.LogQP() <= MaxLogQP128[p.LogN-1] {
				t.Errorf("depth %d: %s, but %s fits", depth, p, q)
			}
		}
	}
}

// TestChooseParamsErrors checks the refusals.
func TestChooseParamsErrors(t *testing.T) {
	for _, c := range []struct {
		depth, block int
		opts         LowerOptions
		want         string
	}{
		{56, 64, LowerOptions{}, "model needs depth 56 (levels) but the largest 128-bit ring (N=2^16) holds at most 55 at scale 2^30; bootstrapping is not supported yet"},
		{10, 64, LowerOptions{MaxLogN: 13}, "model needs depth 10 (levels) but the largest 128-bit ring (N=2^13) holds at most 3 at scale 2^30"},
		{1, 1 << 16, LowerOptions{}, "blocks of 65536 slots need 65536 slots, but the largest ring (N=2^16) has 32768"},
		{1, 1 << 10, LowerOptions{Batch: 64}, "64 samples of 1024 slots need 65536 slots, but the largest ring (N=2^16) has 32768"},
		{1, 64, LowerOptions{MaxLogN: 17}, "MaxLogN 17 outside [13, 16]"},
		{-1, 64, LowerOptions{}, "negative depth"},
	} {
		_, err := ChooseParams(c.depth, c.block, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("depth %d block %d %+v: %v, want %q", c.depth, c.block, c.opts, err, c.want)
		}
	}
}
