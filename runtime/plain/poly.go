// Kernel of the internal Poly op: the polynomial that replaces an activation
// for encrypted execution, evaluated exactly as CKKS evaluates it (no
// clamping: an input outside [a, b] gives what the polynomial gives).

package plain

import (
	"fmt"

	"github.com/ciphercut/ciphercut/ir"
)

func init() { register("Poly", polyKernel) }

func polyKernel(n *ir.Node, _ int64, in []*ir.Tensor) ([]*ir.Tensor, error) {
	x := in[0]
	if !x.DType.IsFloat() {
		return nil, fmt.Errorf("Poly needs float input, got %s", x.DType)
	}
	a, b := n.Attrs.Float("a", -1), n.Attrs.Float("b", 1)
	coeffs := n.Attrs.Floats("coeffs", nil)
	if len(coeffs) == 0 || !(b > a) {
		return nil, fmt.Errorf("Poly needs coeffs and an interval a < b (got %d coeffs, [%g, %g])", len(coeffs), a, b)
	}
	out := floatLike(x, x.Shape.Clone())
	for i, v := range x.Float {
		out.Float[i] = Chebyshev(coeffs, (2*v-a-b)/(b-a))
	}
	return []*ir.Tensor{out}, nil
}

// Chebyshev evaluates Σ_k c[k]·T_k(t) by Clenshaw's recurrence; the empty
// series is 0.
func Chebyshev(c []float64, t float64) float64 {
	if len(c) == 0 {
		return 0
	}
	var b1, b2 float64
	for k := len(c) - 1; k >= 1; k-- {
		b1, b2 = 2*t*b1-b2+c[k], b1
	}
	return t*b1 - b2 + c[0]
}
