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
	// KeyBytes is the size of one switching key (each Galois key and the
	// relinearization key have this size).
	KeyBytes int64
	// TotalBytes is the size of the whole evaluation key set.
	TotalBytes int64
	// EncodedBytes is the memory the evaluator's pre-encoded diagonals take
	// (each a plaintext over the Q primes of its level and the P primes).
	EncodedBytes int64
}

// PlanKeys derives the evaluation keys a program needs: the exact rotation
// set of its linear transformations and the key sizes its parameters imply.
func PlanKeys(p *ckksir.Program) (*KeyPlan, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	kp := &KeyPlan{Relinearization: pl.needRelin}
	for _, g := range pl.galEls {
		r := rotationOf(pl.params, g)
		if r > pl.slots/2 {
			r -= pl.slots // report left rotations as negative
		}
		kp.Rotations = append(kp.Rotations, r)
	}
	sort.Ints(kp.Rotations)
	// A switching key is a gadget ciphertext: for each of the
	// ceil(|Q|/|P|) RNS digits, two polynomials over QP of N coefficients
	// (8 bytes each per prime). Headers are negligible.
	params := pl.params
	levelQ, levelP := params.MaxLevelQ(), params.MaxLevelP()
	digits := int64(params.BaseRNSDecompositionVectorSize(levelQ, levelP))
	kp.KeyBytes = digits * 2 * int64(params.N()) * int64(levelQ+1+levelP+1) * 8
	n := int64(len(kp.Rotations))
	if kp.Relinearization {
		n++
	}
	kp.TotalBytes = n * kp.KeyBytes
	for _, mp := range pl.matrices {
		kp.EncodedBytes += int64(len(mp.diags)) * int64(params.N()) * int64(mp.level+1+levelP+1) * 8
	}
	return kp, nil
}
