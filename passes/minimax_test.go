package passes

import (
	"math"
	"testing"

	"github.com/ciphercut/ciphercut/runtime/plain"
)

// mmMaxErrOn measures max |p - f| on n evenly spaced points of [a, b].
func mmMaxErrOn(f func(float64) float64, coeffs []float64, a, b float64, n int) float64 {
	worst := 0.0
	for i := 0; i < n; i++ {
		x := a + (b-a)*float64(i)/float64(n-1)
		p := plain.Chebyshev(coeffs, (2*x-a-b)/(b-a))
		worst = max(worst, math.Abs(p-f(x)))
	}
	return worst
}

func TestChebyshevInterpolantAccuracy(t *testing.T) {
	cases := []struct {
		name string
		f    func(float64) float64
		a, b float64
		// err[i] bounds the error at degree 3, 7, 15, 31.
		bound []float64
	}{
		{"exp", math.Exp, -2, 3, []float64{1, 2e-3, 1e-10, 1e-13}},
		{"tanh", math.Tanh, -4, 4, []float64{0.3, 0.1, 1e-2, 1e-4}},
	}
	for _, c := range cases {
		prev := math.Inf(1)
		for i, d := range []int{3, 7, 15, 31} {
			coeffs := ChebyshevInterpolant(c.f, c.a, c.b, d)
			if len(coeffs) != d+1 {
				t.Fatalf("%s: degree %d gave %d coefficients", c.name, d, len(coeffs))
			}
			err := mmMaxErrOn(c.f, coeffs, c.a, c.b, 4096)
			t.Logf("%s on [%g, %g], degree %d: max error %.3g", c.name, c.a, c.b, d, err)
			if err > c.bound[i] {
				t.Errorf("%s degree %d: error %.3g above %.3g", c.name, d, err, c.bound[i])
			}
			if err >= prev && err > 1e-13 {
				t.Errorf("%s degree %d: error %.3g did not decrease (was %.3g)", c.name, d, err, prev)
			}
			prev = err
		}
	}
	// A polynomial of degree <= d is reproduced exactly.
	p := func(x float64) float64 { return 1 - 2*x + 0.5*x*x*x }
	if err := mmMaxErrOn(p, ChebyshevInterpolant(p, -3, 1, 3), -3, 1, 100); err > 1e-12 {
		t.Errorf("cubic not reproduced: error %g", err)
	}
	// Near-best: the interpolant of |x| of degree d is within a small
	// factor of the best approximation error, about 0.28/d.
	for _, d := range []int{15, 63, 255} {
		err := mmMaxErrOn(math.Abs, ChebyshevInterpolant(math.Abs, -1, 1, d), -1, 1, 4096)
		if err > 4*0.2802/float64(d) {
			t.Errorf("|x| degree %d: error %.3g, want about %.3g", d, err, 0.2802/float64(d))
		}
	}
}

func TestMinimaxSignEquioscillates(t *testing.T) {
	for _, c := range []struct {
		degree int
		eps    float64
	}{{3, 0.25}, {7, 0.25}, {15, 1.0 / 64}, {31, 1.0 / 16}, {63, 1.0 / 64}} {
		coeffs, maxErr, err := MinimaxSign(c.degree, c.eps)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < len(coeffs); k += 2 {
			if coeffs[k] != 0 {
				t.Fatalf("degree %d: even coefficient %d is %g", c.degree, k, coeffs[k])
			}
		}
		// Count the alternating extrema of p - 1 on [eps, 1]: a minimax
		// odd polynomial with n = (d+1)/2 coefficients has n+1.
		const pts = 200000
		var ext []float64
		prevSign, cur := 0.0, 0.0
		measured := 0.0
		for i := 0; i < pts; i++ {
			x := c.eps + (1-c.eps)*float64(i)/(pts-1)
			e := plain.Chebyshev(coeffs, x) - 1
			measured = max(measured, math.Abs(e))
			if math.Abs(e) < 0.98*maxErr {
				continue
			}
			s := math.Copysign(1, e)
			if s != prevSign {
				if prevSign != 0 {
					ext = append(ext, cur)
				}
				prevSign, cur = s, 0
			}
			cur = max(cur, math.Abs(e))
		}
		ext = append(ext, cur)
		n := (c.degree + 1) / 2
		t.Logf("degree %d on [%g, 1]: error %.4g, %d alternations (want %d)", c.degree, c.eps, maxErr, len(ext), n+1)
		if len(ext) != n+1 {
			t.Errorf("degree %d eps %g: %d alternating extrema within 2%% of the error, want %d", c.degree, c.eps, len(ext), n+1)
		}
		if math.Abs(measured-maxErr) > 1e-3*maxErr+1e-14 {
			t.Errorf("degree %d: reported error %g, measured %g", c.degree, maxErr, measured)
		}
	}
	// The minimax cubic must beat Cheon et al.'s flat cubic (3x - x³)/2.
	_, e3, _ := MinimaxSign(3, 0.25)
	flat := signOddCoeffs(signFlat(2))
	if f := mmMaxErrOn(func(float64) float64 { return 1 }, flat, 0.25, 1, 10000); e3 >= f {
		t.Errorf("minimax cubic error %g not below the flat cubic's %g", e3, f)
	}
	if _, _, err := MinimaxSign(4, 0.1); err == nil {
		t.Error("accepted an even degree")
	}
	if _, _, err := MinimaxSign(7, 0); err == nil {
		t.Error("accepted eps = 0")
	}
}

func TestSignComposite(t *testing.T) {
	for _, k := range []int{6, 10, 12} {
		c, err := SignCompositeFor(k)
		if err != nil {
			t.Fatal(err)
		}
		eps := math.Ldexp(1, -k)
		worst, bound := 0.0, 0.0
		absErr := 0.0
		// Geometric grid near eps plus a uniform one, both signs.
		for i := 0; i <= 20000; i++ {
			for _, x := range []float64{
				eps * math.Pow(1/eps, float64(i)/20000),
				-1 + 2*float64(i)/20000,
			} {
				for _, v := range []float64{x, -x} {
					s := c.Eval(v)
					bound = max(bound, math.Abs(s))
					if math.Abs(v) >= eps {
						worst = max(worst, math.Abs(s-math.Copysign(1, v)))
					}
					absErr = max(absErr, math.Abs(v*s-math.Abs(v)))
				}
			}
		}
		t.Logf("2^-%d: stages %v, depth %d (+1 for x·s(x)), sign error %.3g, |x| error %.3g", k, c.Degrees(), c.Depth(), worst, absErr)
		if worst > eps {
			t.Errorf("2^-%d: sign error %g above %g", k, worst, eps)
		}
		if math.Abs(worst-c.Err) > 0.05*c.Err+1e-12 {
			t.Errorf("2^-%d: reported error %g, measured %g", k, c.Err, worst)
		}
		if absErr > 1.01*eps {
			t.Errorf("2^-%d: x·s(x) is %g from |x|, want <= %g", k, absErr, eps)
		}
		if bound > 1+eps {
			t.Errorf("2^-%d: the composite leaves [-1, 1]: %g", k, bound)
		}
		// Every stage but the last maps [-1, 1] into [-1, 1].
		for i, st := range c.Stages[:len(c.Stages)-1] {
			for j := 0; j <= 4000; j++ {
				x := -1 + 2*float64(j)/4000
				if y := plain.Chebyshev(st.Coeffs, x); math.Abs(y) > 1+1e-12 {
					t.Fatalf("2^-%d: stage %d maps %g to %g", k, i+1, x, y)
				}
			}
		}
	}
	// Much shallower than Lattigo's default sign composite (depth ~40) at
	// 2^-12.
	if c, _ := SignCompositeFor(12); c.Depth()+1 > 20 {
		t.Errorf("2^-12 composite has depth %d", c.Depth()+1)
	}
	if _, err := NewSignComposite(0.01, nil); err == nil {
		t.Error("accepted a composite without stages")
	}
}
