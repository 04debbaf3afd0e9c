package cost

// OpCounts is what one instruction does on one ciphertext lane, as the
// runtime executes it (runtime/ckks.InstrStats derives it from the
// runtime's own plan). In feature packing the counts are per batch of
// samples, summed over the instruction's output ciphertexts.
type OpCounts struct {
	// Op and Layer repeat the instruction's kind and layer.
	Op    string `json:"op"`
	Layer string `json:"layer,omitempty"`
	// LevelIn is the level the instruction reads its inputs at (the lowest
	// input level), LevelOut the level of its output.
	LevelIn  int `json:"levelIn"`
	LevelOut int `json:"levelOut"`
	// Ciphertexts is the number of output ciphertexts per lane (1 in slot
	// packing, the output's size in feature packing).
	Ciphertexts int `json:"ciphertexts"`
	// Matrices is the number of linear transformations applied (slot
	// packing); each hoists one decomposition of its input.
	Matrices int `json:"matrices,omitempty"`
	// Diagonals is the number of full-slot diagonals over all matrices:
	// each costs one plaintext multiply-accumulate in the extended basis.
	Diagonals int `json:"diagonals,omitempty"`
	// Encodes is the number of those diagonals encoded at each use: the
	// diagonals of matrices the run's memory budget does not keep encoded
	// between uses (each costs one encoding at the matrix's level).
	Encodes int `json:"encodes,omitempty"`
	// BabySteps counts the hoisted rotations (non-zero baby steps), summed
	// over matrices; GiantSteps counts the non-zero giant steps, each a full
	// key switch.
	BabySteps  int `json:"babySteps,omitempty"`
	GiantSteps int `json:"giantSteps,omitempty"`
	// ScalarMults counts ciphertext-by-constant multiply-accumulates (dense
	// coefficients in feature packing, polynomial coefficients).
	ScalarMults int `json:"scalarMults,omitempty"`
	// PlainMults counts ciphertext-by-plaintext products outside linear
	// transformations (mul-const in slot packing).
	PlainMults int `json:"plainMults,omitempty"`
	// NonScalarMults counts ciphertext-by-ciphertext products, each
	// relinearized (mul: 1; poly: the Paterson-Stockmeyer products).
	NonScalarMults int `json:"nonScalarMults,omitempty"`
	// Rescales, Adds (ciphertext + ciphertext) and PlainAdds (plus a
	// plaintext or constant).
	Rescales  int `json:"rescales,omitempty"`
	Adds      int `json:"adds,omitempty"`
	PlainAdds int `json:"plainAdds,omitempty"`
	// PolyDegree is the polynomial's degree (poly only).
	PolyDegree int `json:"polyDegree,omitempty"`
	// Bootstraps counts bootstrapping operations.
	Bootstraps int `json:"bootstraps,omitempty"`
	// Rotations lists the slot rotations whose Galois keys the
	// instruction uses (rotations left of Slots/2 negative).
	Rotations []int `json:"rotations,omitempty"`
	// Temporaries is the number of extra ciphertexts the instruction holds
	// while it runs (pre-rotated baby steps, polynomial power basis).
	Temporaries int `json:"temporaries,omitempty"`
}
