package passes

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// MaxLogQP128 is the largest total modulus size log2(QP), in bits, that
// keeps 128-bit security for ring degree 2^LogN with a uniform ternary secret
// and error σ = 3.2: the bounds of the Homomorphic Encryption Standard
// (Albrecht et al., 2018, table for the ternary secret distribution), which
// Lattigo also uses. Rings below 2^13 are too small for useful depths and
// are not offered.
var MaxLogQP128 = map[int]int{
	13: 218,
	14: 438,
	15: 881,
	16: 1761,
}

// Parameter-choice defaults (see ChooseParams).
const (
	// DefaultMaxLogN is the largest ring degree ChooseParams tries.
	DefaultMaxLogN = 16
	// DefaultMinLogScale is the smallest default scale 2^LogScale it accepts.
	DefaultMinLogScale = 30
	// ckksMinLogN is the smallest ring degree offered.
	ckksMinLogN = 13
	// ckksMaxLogScale is the largest scale tried when none is fixed; the
	// search steps down by ckksLogScaleStep.
	ckksMaxLogScale  = 40
	ckksLogScaleStep = 5
	// ckksMaxPrimeBits caps a Q prime (the base prime) and a P prime.
	ckksMaxQ0Bits = 60
	ckksMaxPBits  = 61
	// ckksMaxPPrimes caps the number of key-switching primes.
	ckksMaxPPrimes = 8
	// ckksGoodDigits is the number of key-switching digits (ceil(|Q|/|P|))
	// beyond which a smaller scale is worth its room for more P primes: a
	// deep chain at the largest scale leaves room for few P primes, and keys
	// grow with the digits (digits-cnn at depth 38 and N=2^16: 3 P primes
	// and 13 digits at scale 2^40, 18 GiB of keys; 8 P primes and 5 digits
	// at 2^30). The CKKS noise at 2^30 is still far below any output
	// precision target.
	ckksGoodDigits = 4
	// ckksQ0Margin is how many bits the base prime exceeds the scale: the
	// decrypted message must stay below q0/2, so outputs up to about
	// 2^(ckksQ0Margin-1) in magnitude decrypt correctly.
	ckksQ0Margin = 20
)

// ChooseParams picks CKKS parameters for a circuit of the given depth (the
// number of rescales on its longest path) whose values fit blocks of
// blockSize slots:
//
//   - the ring degree 2^LogN is the smallest with LogN in [13,
//     opts.MaxLogN] (default 16) whose 128-bit bound MaxLogQP128 holds the
//     modulus chain and whose N/2 slots hold blockSize*max(1, opts.Batch)
//     slots; the ring degree dominates the cost of every operation, so a
//     smaller ring at a smaller scale is preferred to a bigger one;
//   - the scale is opts.LogScale when set, else the largest of 40, 35, 30,
//     ... down to opts.MinLogScale (default 30) that fits the ring with
//     at most 4 key-switching digits, else the one with the fewest digits;
//   - the chain is Q = [q0] + depth × [LogScale] with q0 = min(60,
//     LogScale+20) bits, so that results below 2^19 in magnitude decrypt;
//   - P is as many primes of min(61, q0+1) bits as fit, up to 8 and never
//     more than Q has: each P prime cuts the number of key-switching digits
//     (dnum = ceil(|Q|/|P|)), and Galois keys shrink in proportion (measured
//     on cancer-mlp at N=2^15: 4 P primes instead of 2 halve the key bytes,
//     874 MiB against 1564 MiB, key generation from 7.8 s to 4.1 s, and
//     evaluation from 3.6 s to 3.0 s; up to 8 halve digits-mlp's keys
//     again, 585 MiB against 1190 MiB, and digits-cnn's, 6.5 GiB against
//     11.3 GiB, see BENCHMARKS.md).
//
// In feature packing (LowerOptions.Packing = ckksir.PackFeature) blockSize
// is 1 and a batch is N/2 samples, so the same rule applies with opts.Batch
// as the least number of samples per batch. The smallest ring that holds
// the depth is then also the one with the best throughput: every operation
// costs about N·log N·levels and serves N/2 samples, so the cost per sample
// grows with log N and with the level count, and a bigger ring only buys
// samples per batch (latency of a full batch doubles with N). On digits-mlp
// on two cores: N=2^14 at depth 10 ran 8192 samples in 41 s (200
// samples/s), N=2^15 at depth 12 ran 16384 in 113 s (145 samples/s).
//
// A depth too large for every ring is an error that says how much the
// largest ring holds; bootstrapping is not supported yet.
func ChooseParams(depth int, blockSize int, opts LowerOptions) (ckksir.Params, error) {
	opts = opts.withDefaults()
	if depth < 0 {
		return ckksir.Params{}, fmt.Errorf("choosing CKKS parameters: negative depth %d", depth)
	}
	if blockSize <= 0 {
		return ckksir.Params{}, fmt.Errorf("choosing CKKS parameters: block size %d", blockSize)
	}
	if _, ok := MaxLogQP128[opts.MaxLogN]; !ok {
		return ckksir.Params{}, fmt.Errorf("choosing CKKS parameters: MaxLogN %d outside [%d, %d]", opts.MaxLogN, ckksMinLogN, DefaultMaxLogN)
	}
	need := blockSize * opts.Batch
	if top := 1 << (opts.MaxLogN - 1); need > top {
		if opts.Batch == 1 {
			return ckksir.Params{}, beyondCapacity("choosing CKKS parameters: blocks of %d slots need %d slots, but the largest ring (N=2^%d) has %d (splitting large tensors across ciphertexts is not supported yet)",
				blockSize, need, opts.MaxLogN, top)
		}
		return ckksir.Params{}, beyondCapacity("choosing CKKS parameters: %d samples of %d slots need %d slots, but the largest ring (N=2^%d) has %d",
			opts.Batch, blockSize, need, opts.MaxLogN, top)
	}
	scales := ckksScaleCandidates(opts)
	if len(scales) == 0 {
		return ckksir.Params{}, fmt.Errorf("choosing CKKS parameters: no scale between 2^%d and 2^%d", opts.MinLogScale, ckksMaxLogScale)
	}
	for logN := ckksMinLogN; logN <= opts.MaxLogN; logN++ {
		if 1<<(logN-1) < need {
			continue
		}
		// The largest scale whose chain splits into at most ckksGoodDigits
		// key-switching digits, else the one with the fewest digits.
		var best *ckksir.Params
		bestDigits := 0
		for _, s := range scales {
			for nP := min(ckksMaxPPrimes, depth+1); nP >= 1; nP-- {
				if p, ok := ckksChainFitting(logN, depth, s, nP); ok {
					digits := (depth + nP) / nP
					if digits <= ckksGoodDigits {
						return p, nil
					}
					if best == nil || digits < bestDigits {
						best, bestDigits = &p, digits
					}
					break
				}
			}
		}
		if best != nil {
			return *best, nil
		}
	}
	s := scales[len(scales)-1]
	q0 := min(ckksMaxQ0Bits, s+ckksQ0Margin)
	room := MaxLogQP128[opts.MaxLogN] - q0 - min(ckksMaxPBits, q0+1)
	return ckksir.Params{}, beyondCapacity("model needs depth %d (levels) but the largest 128-bit ring (N=2^%d) holds at most %d at scale 2^%d; bootstrapping is not supported yet",
		depth, opts.MaxLogN, max(0, room/s), s)
}

// ckksScaleCandidates lists the scales ChooseParams tries, largest first.
func ckksScaleCandidates(opts LowerOptions) []int {
	if opts.LogScale > 0 {
		return []int{opts.LogScale}
	}
	var out []int
	for s := ckksMaxLogScale; s >= opts.MinLogScale; s -= ckksLogScaleStep {
		out = append(out, s)
	}
	if len(out) == 0 || out[len(out)-1] != opts.MinLogScale && opts.MinLogScale < ckksMaxLogScale {
		out = append(out, opts.MinLogScale)
	}
	return out
}

// ckksChainFitting returns the chain with nP key-switching primes that fits
// the ring's 128-bit bound, if any. The P primes are min(61, q0+1) bits when
// the room allows, else as large as the room left by Q allows, but together
// never smaller than the largest key-switching digit (nP consecutive Q
// primes): a smaller P would multiply the key-switching noise by 2^(digit -
// P bits). Measured on digits-mlp at N=2^14, depth 10: P = [51] takes 1.28 s
// and 1155 MiB of keys; [44 44] 0.94 s and 683 MiB with smaller errors;
// [35 35] (below the 80-bit digit) errors 1000x larger.
func ckksChainFitting(logN, depth, logScale, nP int) (ckksir.Params, bool) {
	bound, ok := MaxLogQP128[logN]
	if !ok {
		return ckksir.Params{}, false
	}
	q := ckksChain(logN, depth, logScale, 0)
	room := bound - q.LogQP()
	pBits := min(ckksMaxPBits, q.LogQ[0]+1, room/max(nP, 1))
	digit := 0
	for i := 0; i < len(q.LogQ); i += nP {
		sum := 0
		for _, b := range q.LogQ[i:min(i+nP, len(q.LogQ))] {
			sum += b
		}
		digit = max(digit, sum)
	}
	if pBits < 1 || nP*pBits < digit {
		return ckksir.Params{}, false
	}
	p := ckksChainWithP(logN, depth, logScale, nP, pBits)
	return p, p.SecurityBits == 128
}

// ckksChain builds the parameters for a ring, depth, scale and number of P
// primes of min(61, q0+1) bits; SecurityBits is 128 when the chain fits the
// ring's bound, else 0.
func ckksChain(logN, depth, logScale, nP int) ckksir.Params {
	return ckksChainWithP(logN, depth, logScale, nP, min(ckksMaxPBits, min(ckksMaxQ0Bits, logScale+ckksQ0Margin)+1))
}

// ckksChainWithP builds the parameters with nP primes of pBits bits.
func ckksChainWithP(logN, depth, logScale, nP, pBits int) ckksir.Params {
	q0 := min(ckksMaxQ0Bits, logScale+ckksQ0Margin)
	p := ckksir.Params{LogN: logN, LogScale: logScale, LogQ: []int{q0}}
	for range depth {
		p.LogQ = append(p.LogQ, logScale)
	}
	for range nP {
		p.LogP = append(p.LogP, pBits)
	}
	if bound, ok := MaxLogQP128[logN]; ok && p.LogQP() <= bound {
		p.SecurityBits = 128
	}
	return p
}

// beyondCapacity reports a model that no 128-bit parameter set holds yet (too
// deep without bootstrapping, too wide for one ciphertext): an
// *ir.UnsupportedError, so callers can tell it from a malformed input.
func beyondCapacity(format string, args ...any) error {
	return &ir.UnsupportedError{Reason: fmt.Sprintf(format, args...)}
}
