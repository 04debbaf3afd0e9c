package passes

// Polynomial approximation tools of ApproximateActivations: Chebyshev
// interpolation of smooth activations, and odd minimax polynomials for the
// sign function, computed by a float64 Remez exchange and chained into
// composite sign approximations (Lee et al., "Minimax approximation of sign
// function by composite polynomial for homomorphic comparison", 2021).
//
// A composite keeps every stage's output inside [-1, 1], so that the next
// stage, defined on [-1, 1], never sees an input outside its interval.

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/ciphercut/ciphercut/runtime/plain"
)

// ChebyshevInterpolant returns the coefficients c[0..degree] of the
// polynomial that interpolates f at the degree+1 Chebyshev nodes of the
// first kind of [a, b], in the Chebyshev basis of [a, b]:
// p(x) = Σ c[k]·T_k((2x-a-b)/(b-a)), as the Poly op and plain.Chebyshev
// evaluate it. It needs a < b and degree >= 0.
func ChebyshevInterpolant(f func(float64) float64, a, b float64, degree int) []float64 {
	return approxChebInterp(func(xs []float64) []float64 {
		ys := make([]float64, len(xs))
		for i, x := range xs {
			ys[i] = f(x)
		}
		return ys
	}, a, b, degree)
}

// approxChebInterp is ChebyshevInterpolant for a function evaluated on a batch of
// points at once. The coefficients come from the discrete cosine transform
// of the samples f(x_j), x_j the node cos(π(j+½)/N), N = degree+1:
// c_k = (2/N) Σ_j f(x_j)·cos(πk(j+½)/N), with c_0 halved.
func approxChebInterp(f func([]float64) []float64, a, b float64, degree int) []float64 {
	n := degree + 1
	xs := make([]float64, n)
	for j := range xs {
		t := math.Cos(math.Pi * (float64(j) + 0.5) / float64(n))
		xs[j] = 0.5*(a+b) + 0.5*(b-a)*t
	}
	ys := f(xs)
	c := make([]float64, n)
	for k := range c {
		s := 0.0
		for j, y := range ys {
			s += y * math.Cos(math.Pi*float64(k)*(float64(j)+0.5)/float64(n))
		}
		c[k] = 2 * s / float64(n)
	}
	c[0] /= 2
	return c
}

// approxDegreeDepth is the multiplicative depth of evaluating a polynomial of the
// given degree on [-1, 1]: ceil(log2(degree+1)).
func approxDegreeDepth(degree int) int {
	d := 0
	for 1<<d <= degree {
		d++
	}
	return d
}

// signOddCoeffs expands the coefficients of T_1, T_3, ..., T_{2n-1} into a full
// Chebyshev coefficient vector of degree 2n-1.
func signOddCoeffs(odd []float64) []float64 {
	c := make([]float64, 2*len(odd))
	for j, v := range odd {
		c[2*j+1] = v
	}
	return c
}

// MinimaxSign returns the odd polynomial p of the given odd degree that
// minimizes max |p(x) - 1| over [eps, 1] (so, being odd, max |p - sign| over
// [-1, -eps] ∪ [eps, 1]), found by the Remez exchange in float64. Its
// coefficients are in the Chebyshev basis of [-1, 1] (even ones zero);
// maxErr is the equioscillation error, measured on a dense grid. It needs
// 0 < eps < 1 and an odd degree >= 1.
func MinimaxSign(degree int, eps float64) (coeffs []float64, maxErr float64, err error) {
	if degree < 1 || degree%2 == 0 {
		return nil, 0, fmt.Errorf("minimax sign: degree %d is not odd and positive", degree)
	}
	if !(eps > 0 && eps < 1) {
		return nil, 0, fmt.Errorf("minimax sign: eps %g outside (0, 1)", eps)
	}
	n := (degree + 1) / 2 // unknown coefficients of T_1, T_3, ...
	// Dense grid on [eps, 1], Chebyshev-distributed so that both ends are
	// finely resolved, for locating the error's extrema.
	m := 200*n + 2000
	grid := make([]float64, m)
	for i := range grid {
		t := -math.Cos(math.Pi * float64(i) / float64(m-1))
		grid[i] = 0.5*(1+eps) + 0.5*(1-eps)*t
	}
	grid[0], grid[m-1] = eps, 1
	// Initial reference: the n+1 Chebyshev extrema of [eps, 1].
	ref := make([]float64, n+1)
	for i := range ref {
		t := -math.Cos(math.Pi * float64(i) / float64(n))
		ref[i] = 0.5*(1+eps) + 0.5*(1-eps)*t
	}
	eval := func(odd []float64, x float64) float64 {
		// Σ odd[j]·T_{2j+1}(x) by the recurrence T_{k+1} = 2x T_k - T_{k-1}.
		s, tPrev, tCur := 0.0, 1.0, x // T_0, T_1
		for j, c := range odd {
			s += c * tCur
			if j+1 < len(odd) {
				t2 := 2*x*tCur - tPrev
				t3 := 2*x*t2 - tCur
				tPrev, tCur = t2, t3
			}
		}
		return s
	}
	var best []float64
	bestErr := math.Inf(1)
	for iter := 0; iter < 50; iter++ {
		// Solve Σ_j c_j T_{2j+1}(x_i) + (-1)^i E = 1 for c and E.
		a := make([][]float64, n+1)
		for i, x := range ref {
			row := make([]float64, n+2)
			tPrev, tCur := 1.0, x
			for j := 0; j < n; j++ {
				row[j] = tCur
				t2 := 2*x*tCur - tPrev
				tPrev, tCur = t2, 2*x*t2-tCur
			}
			row[n] = 1
			if i%2 == 1 {
				row[n] = -1
			}
			row[n+1] = 1
			a[i] = row
		}
		sol, ok := remezSolve(a)
		if !ok {
			break
		}
		odd := sol[:n]
		// Error e(x) = p(x) - 1 on the grid; local extrema of |e|.
		e := make([]float64, m)
		maxAbs := 0.0
		for i, x := range grid {
			e[i] = eval(odd, x) - 1
			maxAbs = max(maxAbs, math.Abs(e[i]))
		}
		if maxAbs < bestErr {
			bestErr, best = maxAbs, append([]float64(nil), odd...)
		}
		var ext []int
		for i := range e {
			left := i == 0 || math.Abs(e[i]) >= math.Abs(e[i-1]) || math.Signbit(e[i]) != math.Signbit(e[i-1])
			right := i == m-1 || math.Abs(e[i]) >= math.Abs(e[i+1]) || math.Signbit(e[i]) != math.Signbit(e[i+1])
			if left && right {
				ext = append(ext, i)
			}
		}
		// Merge runs of equal sign, keeping the largest |e|.
		var alt []int
		for _, i := range ext {
			if k := len(alt) - 1; k >= 0 && math.Signbit(e[alt[k]]) == math.Signbit(e[i]) {
				if math.Abs(e[i]) > math.Abs(e[alt[k]]) {
					alt[k] = i
				}
				continue
			}
			alt = append(alt, i)
		}
		// Trim to n+1 points, dropping the smaller end.
		for len(alt) > n+1 {
			if math.Abs(e[alt[0]]) < math.Abs(e[alt[len(alt)-1]]) {
				alt = alt[1:]
			} else {
				alt = alt[:len(alt)-1]
			}
		}
		if len(alt) < n+1 {
			break
		}
		absErr := func(x float64) float64 { return math.Abs(eval(odd, x) - 1) }
		minAbs, refMax := math.Inf(1), 0.0
		for k, i := range alt {
			ref[k] = remezRefine(absErr, grid, i)
			v := absErr(ref[k])
			minAbs, refMax = min(minAbs, v), max(refMax, v)
		}
		// Equioscillation to 1e-4, or rounding noise: done.
		if refMax-minAbs <= 1e-4*refMax+1e-13 {
			break
		}
	}
	if best == nil {
		return nil, 0, errors.New("minimax sign: Remez exchange failed")
	}
	// Measure on a grid four times finer than the search grid. The flat
	// polynomial of the same degree is better when the interval is so close
	// to 1 that the exchange is ill-conditioned.
	fine := 4 * m
	measure := func(odd []float64) float64 {
		worst := 0.0
		for i := 0; i < fine; i++ {
			t := -math.Cos(math.Pi * float64(i) / float64(fine-1))
			x := min(max(0.5*(1+eps)+0.5*(1-eps)*t, eps), 1)
			worst = max(worst, math.Abs(eval(odd, x)-1))
		}
		return worst
	}
	bestErr = measure(best)
	flat := signFlat(n)
	if flatErr := measure(flat); flatErr < bestErr {
		best, bestErr = flat, flatErr
	}
	return signOddCoeffs(best), bestErr, nil
}

// remezRefine maximizes f near grid[i] by golden-section search between
// the neighboring grid points.
func remezRefine(f func(float64) float64, grid []float64, i int) float64 {
	lo, hi := grid[max(i-1, 0)], grid[min(i+1, len(grid)-1)]
	if i == 0 || i == len(grid)-1 {
		return grid[i]
	}
	const r = 0.6180339887498949
	x1, x2 := hi-r*(hi-lo), lo+r*(hi-lo)
	f1, f2 := f(x1), f(x2)
	for k := 0; k < 40; k++ {
		if f1 > f2 {
			hi, x2, f2 = x2, x1, f1
			x1 = hi - r*(hi-lo)
			f1 = f(x1)
		} else {
			lo, x1, f1 = x1, x2, f2
			x2 = lo + r*(hi-lo)
			f2 = f(x2)
		}
	}
	x := 0.5 * (lo + hi)
	if f(grid[i]) > f(x) {
		return grid[i]
	}
	return x
}

// signFlat returns the odd coefficients (of T_1, T_3, ...) of Cheon et al.'s
// polynomial f_{n-1}(x) = Σ_{i<n} binom(2i, i)/4^i · x(1-x²)^i, of degree
// 2n-1, which is flat to order n at ±1: it maps [1-δ, 1] to [1-O(δ^n), 1].
func signFlat(n int) []float64 {
	f := func(x float64) float64 {
		s, term, w := 0.0, x, 1.0
		for i := 0; i < n; i++ {
			s += w * term
			term *= 1 - x*x
			w *= float64(2*i+1) / float64(2*i+2)
		}
		return s
	}
	c := ChebyshevInterpolant(f, -1, 1, 2*n-1)
	odd := make([]float64, n)
	for j := range odd {
		odd[j] = c[2*j+1]
	}
	return odd
}

// remezSolve solves the square system given as rows [A | b] by Gaussian
// elimination with partial pivoting.
func remezSolve(a [][]float64) ([]float64, bool) {
	n := len(a)
	for col := 0; col < n; col++ {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[p][col]) {
				p = r
			}
		}
		if a[p][col] == 0 || math.IsNaN(a[p][col]) {
			return nil, false
		}
		a[col], a[p] = a[p], a[col]
		for r := col + 1; r < n; r++ {
			f := a[r][col] / a[col][col]
			for k := col; k <= n; k++ {
				a[r][k] -= f * a[col][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := a[r][n]
		for k := r + 1; k < n; k++ {
			s -= a[r][k] * x[k]
		}
		x[r] = s / a[r][r]
	}
	return x, true
}

// SignStage is one stage of a composite sign approximation: an odd
// polynomial on [-1, 1].
type SignStage struct {
	Degree int
	// Eps: the stage approximates sign on [-1, -Eps] ∪ [Eps, 1].
	Eps float64
	// Coeffs in the Chebyshev basis of [-1, 1] (even entries zero), already
	// scaled by 1/(1+Err) on every stage but the last, so that each stage
	// maps [-1, 1] into [-1, 1].
	Coeffs []float64
	// Err is the minimax error max |p - sign| on the stage's domain, before
	// scaling.
	Err float64
}

// SignComposite approximates sign(x) on [-1, -Eps] ∪ [Eps, 1] by the
// composition of its stages, first to last.
type SignComposite struct {
	Stages []SignStage
	// Eps is the first stage's dead zone: inside (-Eps, Eps) the composite is
	// only known to lie in [-1-Err, 1+Err].
	Eps float64
	// Err is max |s(x) - sign(x)| over [-1, -Eps] ∪ [Eps, 1].
	Err float64
}

// Degrees lists the stages' degrees.
func (c *SignComposite) Degrees() []int {
	d := make([]int, len(c.Stages))
	for i, s := range c.Stages {
		d[i] = s.Degree
	}
	return d
}

// Depth is the sum of the stages' depths (ceil(log2(degree+1)) each).
func (c *SignComposite) Depth() int {
	d := 0
	for _, s := range c.Stages {
		d += approxDegreeDepth(s.Degree)
	}
	return d
}

// Eval computes the composite at x in [-1, 1].
func (c *SignComposite) Eval(x float64) float64 {
	for _, s := range c.Stages {
		x = plain.Chebyshev(s.Coeffs, x)
	}
	return x
}

// NewSignComposite chains minimax sign stages of the given odd degrees,
// starting on [-1, -eps] ∪ [eps, 1]: stage i+1 is the minimax polynomial on
// the image of stage i's domain, [(1-δ)/(1+δ), 1] after scaling by 1/(1+δ).
func NewSignComposite(eps float64, degrees []int) (*SignComposite, error) {
	if len(degrees) == 0 {
		return nil, errors.New("sign composite: no stages")
	}
	c := &SignComposite{Eps: eps}
	e := eps
	for i, d := range degrees {
		coeffs, err, ferr := MinimaxSign(d, e)
		if ferr != nil {
			return nil, ferr
		}
		st := SignStage{Degree: d, Eps: e, Coeffs: coeffs, Err: err}
		if i < len(degrees)-1 {
			for k := range st.Coeffs {
				st.Coeffs[k] /= 1 + err
			}
			e = (1 - err) / (1 + err)
			if !(e > 0) {
				return nil, fmt.Errorf("sign composite: stage %d (degree %d on eps %g) does not separate the signs", i+1, d, st.Eps)
			}
		}
		c.Stages = append(c.Stages, st)
	}
	// Measure the composite on [eps, 1] (it is odd): a Chebyshev-distributed
	// grid plus a geometric one near eps, where the first stage is steep.
	const pts = 16384
	worst := 0.0
	for i := 0; i < pts; i++ {
		t := -math.Cos(math.Pi * float64(i) / float64(pts-1))
		x1 := min(max(0.5*(1+eps)+0.5*(1-eps)*t, eps), 1)
		x2 := min(eps*math.Pow(1/eps, float64(i)/float64(pts-1)), 1)
		worst = max(worst, math.Abs(c.Eval(x1)-1), math.Abs(c.Eval(x2)-1))
	}
	c.Err = worst
	return c, nil
}

// signFamily caches the composites SignComposites returns, by dead-zone
// exponent.
var signFamily struct {
	sync.Mutex
	byExp map[int]*SignComposite
}

// SignCompositeFor returns a least-depth composite that approximates sign
// on [-1, -2^-k] ∪ [2^-k, 1] within 2^-k, so that x·s(x) is within
// 2^-k·max|x| of |x| everywhere. The search: for each stage degree d of 7,
// 15 and 31, chain stages of degree d until one more would reach the
// target, then end with the cheapest stage (degree 3, 7, 15, 31 or 63) that
// does; the least total depth wins, ties going to lower degrees. Results
// are cached.
func SignCompositeFor(k int) (*SignComposite, error) {
	signFamily.Lock()
	defer signFamily.Unlock()
	if c, ok := signFamily.byExp[k]; ok {
		return c, nil
	}
	if k < 1 || k > 40 {
		return nil, fmt.Errorf("sign composite: exponent %d outside [1, 40]", k)
	}
	target := math.Ldexp(1, -k)
	var best []int
	bestDepth := math.MaxInt
	for _, d := range []int{7, 15, 31} {
		var chain []int
		depth := 0
		e := target
		for len(chain) < 16 && depth < bestDepth {
			// Try to finish here with the cheapest sufficient stage.
			done := false
			for _, last := range []int{3, 7, 15, 31, 63} {
				if depth+approxDegreeDepth(last) >= bestDepth {
					break
				}
				_, err, ferr := MinimaxSign(last, e)
				if ferr != nil {
					return nil, ferr
				}
				if err <= target {
					best = append(append([]int(nil), chain...), last)
					bestDepth = depth + approxDegreeDepth(last)
					done = true
					break
				}
			}
			if done {
				break
			}
			_, err, ferr := MinimaxSign(d, e)
			if ferr != nil {
				return nil, ferr
			}
			chain = append(chain, d)
			depth += approxDegreeDepth(d)
			e = (1 - err) / (1 + err)
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no sign composite reaches 2^-%d", k)
	}
	c, err := NewSignComposite(target, best)
	if err != nil {
		return nil, err
	}
	if signFamily.byExp == nil {
		signFamily.byExp = map[int]*SignComposite{}
	}
	signFamily.byExp[k] = c
	return c, nil
}
