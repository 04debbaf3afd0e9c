package ckks

import (
	"sort"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// KeyPlan summarizes the evaluation keys a program needs, without
// generating them.
type KeyPlan struct {
	// Rotations lists the slot rotations the Galois keys serve, sorted;
	// negative values rotate right.
	Rotations []int
	// Relinearization is true when the program needs a relinearization key.
	Relinearization bool
	// RotationLevels gives, for each rotation, the level its key is
	// generated at: the highest level the program rotates by it.
	RotationLevels []int
	// KeyBytes is the size of the largest switching key (keys are
	// generated at the level they are used, so deeper ones are smaller).
	KeyBytes int64
	// TotalBytes is the size of the whole evaluation key set, bootstrapping
	// keys included.
	TotalBytes int64
	// BootstrapKeys is the number of bootstrapping switching keys (Galois
	// keys of the bootstrapping circuit, its relinearization key, and the
	// two encapsulation keys with an ephemeral secret), all over the
	// bootstrapping modulus; 0 when the program does not bootstrap.
	// BootstrapBytes is their size.
	BootstrapKeys  int
	BootstrapBytes int64
	// BootstrapMatrixBytes is the memory the bootstrapping circuit's
	// encoded DFT matrices take (one copy shared by every lane); 0 when the
	// program does not bootstrap. It is not part of TotalBytes: the
	// evaluator encodes them, they never cross the network.
	BootstrapMatrixBytes int64
	// EncodedBytes is the memory the evaluator's pre-encoded diagonals take
	// (each a plaintext over the Q primes of its level and the P primes).
	EncodedBytes int64
	// LaneBytes estimates the working memory of one evaluation lane (one
	// ciphertext in flight): the baby-step rotations of the widest linear
	// transformation over QP, one giant step's diagonals when encoded at
	// use, and the ciphertexts alive at once, all at the top level, plus
	// the buffers of the lane's evaluators (its own and the shared base
	// one) and of its bootstrapping evaluator.
	LaneBytes int64
	// WorkerBytes estimates what each core beyond the first adds to a lane
	// that spreads its linear transformations over several cores.
	WorkerBytes int64
}

// PlanKeys derives the evaluation keys a program needs: the exact rotation
// set of its linear transformations, the bootstrapping keys, and the key
// sizes its parameters imply.
func PlanKeys(p *ckksir.Program) (*KeyPlan, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	kp := &KeyPlan{Relinearization: pl.needRelin}
	type rot struct{ r, level int }
	var rots []rot
	for _, g := range pl.galEls {
		r := rotationOf(pl.params, g)
		if r > pl.slots/2 {
			r -= pl.slots // report left rotations as negative
		}
		rots = append(rots, rot{r, pl.keyLevel(g)})
		b := keyBytes(pl.params, pl.keyLevel(g))
		kp.TotalBytes += b
		kp.KeyBytes = max(kp.KeyBytes, b)
	}
	sort.Slice(rots, func(i, j int) bool { return rots[i].r < rots[j].r })
	for _, x := range rots {
		kp.Rotations = append(kp.Rotations, x.r)
		kp.RotationLevels = append(kp.RotationLevels, x.level)
	}
	if kp.Relinearization {
		b := keyBytes(pl.params, pl.relinLevel)
		kp.TotalBytes += b
		kp.KeyBytes = max(kp.KeyBytes, b)
	}
	if pl.needBoot {
		bp := pl.boot.BootstrappingParameters
		kp.BootstrapKeys = pl.bootKeyCount()
		kp.BootstrapBytes = pl.bootKeyBytes()
		kp.BootstrapMatrixBytes = pl.bootMatrixBytes()
		kp.TotalBytes += kp.BootstrapBytes
		kp.KeyBytes = max(kp.KeyBytes, keyBytes(bp, bp.MaxLevelQ()))
	}
	for _, mp := range pl.matrices {
		kp.EncodedBytes += pl.encodedBytes(mp)
	}
	kp.LaneBytes = pl.laneBytes() + pl.bootLaneBytes()
	kp.WorkerBytes = pl.workerBytes()
	return kp, nil
}
