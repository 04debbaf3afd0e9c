package ckks

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/ir/ckksir"
)

// TestInterfaceClientInsecureSmallRing builds a client from the main test
// program's interface and key needs alone: its evaluation keys are
// accepted by an evaluator of the whole program, and what it encrypts
// evaluates and decrypts as NewClient's. Its secret key, written and read
// back, gives a client that decrypts the same ciphertexts and whose
// evaluation keys reload. Malformed key needs and keys of other
// parameters are refused.
func TestInterfaceClientInsecureSmallRing(t *testing.T) {
	m := buildMainProgram(rand.New(rand.NewSource(1)))
	needs, err := KeyNeedsOf(m.p)
	if err != nil {
		t.Fatal(err)
	}
	iface := ckksir.Interface(m.p)
	c, err := NewInterfaceClient(iface, needs)
	if err != nil {
		t.Fatal(err)
	}
	evk, err := c.EvaluationKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(m.p, evk)
	if err != nil {
		t.Fatalf("the whole program's evaluator refuses the interface client's keys: %v", err)
	}
	data, err := evk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnmarshalEvaluationKeys(data); err != nil {
		t.Fatal(err)
	}
	var sk bytes.Buffer
	if err := c.WriteSecretKey(&sk); err != nil {
		t.Fatal(err)
	}
	c2, err := NewInterfaceClientWithSecretKey(iface, needs, sk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if leak, err := c2.LeaksSecretKey(sk.Bytes()); err != nil || !leak {
		t.Fatalf("the reloaded client's key is not the written one (%v)", err)
	}
	// Run through the evaluator and decrypt with both clients.
	in := map[string][]*Ciphertext{}
	for _, io := range m.p.Inputs {
		lay := m.p.Values[io.Value].Layout
		xs := randVec(rand.New(rand.NewSource(2)), lay.Size(), 1)
		x := ir.NewFloat(append(ir.Shape{1}, lay.Shape...), xs)
		cts, err := c.Encrypt(io.Name, x)
		if err != nil {
			t.Fatal(err)
		}
		in[io.Name] = cts
	}
	out, err := ev.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, io := range m.p.Outputs {
		a, err := c.Decrypt(io.Name, out[io.Name], 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c2.Decrypt(io.Name, out[io.Name], 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(a.Float, b.Float); d != 0 {
			t.Errorf("output %s: the reloaded secret key decrypts %.3e away", io.Name, d)
		}
	}

	bad := *needs
	bad.Galois = append([]uint64{2}, needs.Galois...)
	bad.GaloisLevels = append([]int{0}, needs.GaloisLevels...)
	if _, err := NewInterfaceClient(iface, &bad); err == nil || !strings.Contains(err.Error(), "not a rotation") {
		t.Errorf("even Galois element: %v", err)
	}
	if _, err := NewInterfaceClient(m.p, needs); err == nil || !strings.Contains(err.Error(), "no instructions") {
		t.Errorf("a whole program as interface: %v", err)
	}
	other := *iface
	other.Params.LogScale++
	if _, err := NewInterfaceClientWithSecretKey(&other, &KeyNeeds{}, sk.Bytes()); err == nil || !strings.Contains(err.Error(), "belongs to the parameters") {
		t.Errorf("secret key of other parameters: %v", err)
	}
	if _, err := NewInterfaceClientWithSecretKey(iface, needs, sk.Bytes()[:sk.Len()/2]); err == nil {
		t.Error("truncated secret key accepted")
	}
}

// FuzzSecretKey: NewInterfaceClientWithSecretKey on arbitrary bytes (seeded
// with a valid key of the main test program's ring) returns an error or a
// client, never panics, and allocates nothing a malformed layout announces.
func FuzzSecretKey(f *testing.F) {
	m := buildMainProgram(rand.New(rand.NewSource(1)))
	iface := ckksir.Interface(m.p)
	c, err := NewInterfaceClient(iface, &KeyNeeds{})
	if err != nil {
		f.Fatal(err)
	}
	var sk bytes.Buffer
	if err := c.WriteSecretKey(&sk); err != nil {
		f.Fatal(err)
	}
	f.Add(sk.Bytes())
	f.Add(sk.Bytes()[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		NewInterfaceClientWithSecretKey(iface, &KeyNeeds{}, data)
	})
}
