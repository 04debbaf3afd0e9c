package ckks

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// KeyNeeds lists the evaluation keys a program needs, without the program:
// what a data owner who holds only the program's interface
// (ckksir.Interface) needs to generate them. It reveals what the keys
// themselves reveal (the rotations and the levels they are used at),
// nothing of the program's weights.
type KeyNeeds struct {
	// Galois lists the Galois elements of the rotation keys, increasing;
	// GaloisLevels gives the level each key is generated at.
	Galois       []uint64
	GaloisLevels []int
	// Relinearization is set when the program needs a relinearization key,
	// generated at RelinLevel.
	Relinearization bool
	RelinLevel      int
	// Bootstrap is set when the program bootstraps: the bootstrapping keys
	// follow from the program's bootstrapping parameters.
	Bootstrap bool
}

// KeyNeedsOf derives the evaluation keys p needs: exactly those
// Client.EvaluationKeys generates for p.
func KeyNeedsOf(p *ckksir.Program) (*KeyNeeds, error) {
	pl, err := newPlan(p)
	if err != nil {
		return nil, err
	}
	k := &KeyNeeds{Relinearization: pl.needRelin, Bootstrap: pl.needBoot}
	if pl.needRelin {
		k.RelinLevel = pl.relinLevel
	}
	for _, g := range pl.galEls {
		k.Galois = append(k.Galois, g)
		k.GaloisLevels = append(k.GaloisLevels, pl.galLevel[g])
	}
	return k, nil
}

// newInterfacePlan derives the plan of a client of a program known by its
// interface and key needs: enough to encrypt its inputs, decrypt its
// outputs and generate its evaluation keys, not to evaluate it. Both are
// validated (they come from a file).
func newInterfacePlan(iface *ckksir.Program, keys *KeyNeeds) (*plan, error) {
	if iface == nil || keys == nil {
		return nil, fmt.Errorf("ckks: missing program interface or key needs")
	}
	if err := ckksir.VerifyInterface(iface); err != nil {
		return nil, fmt.Errorf("ckks: %w", err)
	}
	weight := 0
	if iface.Boot != nil {
		weight = iface.Boot.SecretWeight
	}
	params, err := newParams(iface.Params, weight)
	if err != nil {
		return nil, err
	}
	pl := &plan{prog: iface, params: params, slots: iface.Params.Slots(), galLevel: map[uint64]int{}}
	maxLevel := params.MaxLevel()
	if len(keys.Galois) != len(keys.GaloisLevels) {
		return nil, fmt.Errorf("ckks: key needs list %d Galois elements and %d levels", len(keys.Galois), len(keys.GaloisLevels))
	}
	twoN, identity := uint64(2*params.N()), params.GaloisElement(0)
	for i, g := range keys.Galois {
		switch {
		case g%2 == 0 || g >= twoN || g == identity:
			return nil, fmt.Errorf("ckks: key needs: %d is not a rotation's Galois element of a ring of degree %d", g, params.N())
		case i > 0 && g <= keys.Galois[i-1]:
			return nil, fmt.Errorf("ckks: key needs: Galois elements not strictly increasing")
		case keys.GaloisLevels[i] < 0 || keys.GaloisLevels[i] > maxLevel:
			return nil, fmt.Errorf("ckks: key needs: Galois element %d at level %d, outside [0, %d]", g, keys.GaloisLevels[i], maxLevel)
		}
		pl.galEls = append(pl.galEls, g)
		pl.galLevel[g] = keys.GaloisLevels[i]
	}
	if keys.RelinLevel < 0 || keys.RelinLevel > maxLevel {
		return nil, fmt.Errorf("ckks: key needs: relinearization at level %d, outside [0, %d]", keys.RelinLevel, maxLevel)
	}
	pl.needRelin, pl.relinLevel = keys.Relinearization, keys.RelinLevel
	if keys.Bootstrap && iface.Boot == nil {
		return nil, fmt.Errorf("ckks: key needs: bootstrapping keys for a program without bootstrapping parameters")
	}
	pl.needBoot = keys.Bootstrap
	if err := pl.setupBoot(); err != nil {
		return nil, err
	}
	return pl, nil
}

// NewInterfaceClient draws a fresh secret key for a program known only by
// its interface (ckksir.Interface) and the evaluation keys it needs
// (KeyNeedsOf of the whole program): the data owner's client when the
// model owner keeps the program's weights to itself. It encrypts, decrypts
// and generates evaluation keys exactly as NewClient on the whole program.
func NewInterfaceClient(iface *ckksir.Program, keys *KeyNeeds) (*Client, error) {
	pl, err := newInterfacePlan(iface, keys)
	if err != nil {
		return nil, err
	}
	return newClient(pl, nil)
}

// ForInterface is ForProgram for a program known by its interface and key
// needs (a segment of a data-owner plan).
func (c *Client) ForInterface(iface *ckksir.Program, keys *KeyNeeds) (*Client, error) {
	pl, err := newInterfacePlan(iface, keys)
	if err != nil {
		return nil, err
	}
	return c.derive(pl)
}
