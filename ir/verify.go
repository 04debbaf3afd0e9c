package ir

import "fmt"

// Verify checks the graph's structural invariants: every node input is a
// graph input, a constant or the output of an earlier node; every value has
// one producer that lists it; names are unique; constants are well formed;
// outputs are computed. Passes are checked with it between steps in tests.
func Verify(g *Graph) error {
	defined := map[*Value]bool{}
	names := map[string]*Value{}
	define := func(v *Value, where string) error {
		if v == nil {
			return fmt.Errorf("%s: nil value", where)
		}
		if other, ok := names[v.Name]; ok && other != v {
			return fmt.Errorf("%s: two values named %q", where, v.Name)
		}
		names[v.Name] = v
		defined[v] = true
		return nil
	}
	for _, in := range g.Inputs {
		if in.Producer != nil || in.Const != nil {
			return fmt.Errorf("graph input %q has a producer or constant data", in.Name)
		}
		if err := define(in, "graph input"); err != nil {
			return err
		}
	}
	for _, n := range g.Nodes {
		if _, ok := Ops[n.Op]; !ok {
			return fmt.Errorf("%v: op not in ir.Ops", n)
		}
		for i, in := range n.Inputs {
			if in == nil {
				continue
			}
			if in.IsConst() {
				if err := in.Const.Validate(); err != nil {
					return fmt.Errorf("%v: constant input %q: %v", n, in.Name, err)
				}
				if err := define(in, n.String()); err != nil {
					return err
				}
				continue
			}
			if !defined[in] {
				return fmt.Errorf("%v: input %d %q is used before it is defined", n, i, in.Name)
			}
		}
		for _, out := range n.Outputs {
			if out == nil {
				continue
			}
			if out.Producer != n {
				return fmt.Errorf("%v: output %q does not name it as producer", n, out.Name)
			}
			if defined[out] {
				return fmt.Errorf("%v: output %q is defined twice", n, out.Name)
			}
			if err := define(out, n.String()); err != nil {
				return err
			}
		}
	}
	for _, o := range g.Outputs {
		if !defined[o] && !o.IsConst() {
			return fmt.Errorf("graph output %q is never computed", o.Name)
		}
	}
	return nil
}
