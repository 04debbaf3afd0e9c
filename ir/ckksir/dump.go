package ckksir

import (
	"fmt"
	"io"
	"strings"
)

// Dump writes a readable listing of the program: parameters, then one line
// per instruction with its output value, level, layout and cost drivers.
func Dump(w io.Writer, p *Program) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ckks program v%d: %s\n", Version, p.Params)
	if p.Packing == PackFeature {
		fmt.Fprintf(&b, "  packing feature: %d samples per ciphertext, one ciphertext per tensor element, depth %d, %d scalar products\n",
			p.Batch, p.Depth(), p.ScalarProducts())
	} else {
		fmt.Fprintf(&b, "  slots %d = %d blocks x %d, depth %d, %d diagonals\n",
			p.Params.Slots(), p.Batch, p.BlockSize, p.Depth(), p.DiagonalCount())
	}
	if p.Boot != nil {
		fmt.Fprintf(&b, "  bootstrapping: %s, depth %d, outputs level %d\n", p.Boot, p.Boot.Depth(), p.BootstrapLevel())
	}
	for _, in := range p.Inputs {
		v := p.Values[in.Value]
		fmt.Fprintf(&b, "  input  v%d = encrypt(%q) %s level %d\n", in.Value, in.Name, v.Layout, v.Level)
	}
	for _, ins := range p.Instrs {
		v := p.Values[ins.Out]
		args := make([]string, len(ins.In))
		for i, a := range ins.In {
			args[i] = fmt.Sprintf("v%d", a)
		}
		fmt.Fprintf(&b, "  v%d = %s(%s)", ins.Out, ins.Op, strings.Join(args, ", "))
		switch ins.Op {
		case OpLinear:
			if ins.Dense != nil {
				nz := make([]string, len(ins.Dense))
				for i, m := range ins.Dense {
					nz[i] = fmt.Sprintf("%dx%d:%d", m.Rows, m.Cols, m.NonZeros())
				}
				fmt.Fprintf(&b, " dense=%s", strings.Join(nz, "+"))
			} else {
				diags := make([]string, len(ins.Matrices))
				for i, m := range ins.Matrices {
					diags[i] = fmt.Sprint(len(m.Diagonals))
				}
				fmt.Fprintf(&b, " diagonals=%s", strings.Join(diags, "+"))
			}
			if ins.Bias != nil {
				b.WriteString(" +bias")
			}
		case OpPoly:
			fmt.Fprintf(&b, " %s deg=%d on [%.4g, %.4g] depth=%d maxerr=%.2e", ins.Poly.Func, ins.Poly.Degree(),
				ins.Poly.A, ins.Poly.B, ins.Poly.Depth(), ins.Poly.MaxErr)
		}
		fmt.Fprintf(&b, " -> %s level %d", v.Layout, v.Level)
		if v.Bound > 0 {
			fmt.Fprintf(&b, " err<=%.2e", v.Bound)
		}
		if ins.Layer != "" {
			fmt.Fprintf(&b, "  # %s", ins.Layer)
		}
		b.WriteString("\n")
	}
	for _, out := range p.Outputs {
		fmt.Fprintf(&b, "  output %q = decrypt(v%d)\n", out.Name, out.Value)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
