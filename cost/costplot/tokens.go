package costplot

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// TokenBar is one step of a text generation: one new token for every
// prompt.
type TokenBar struct {
	// Seconds is the step's wall time less key generation and setup
	// (SetupSeconds).
	Seconds, SetupSeconds float64
	// Stages holds each measured encrypted stage's largest error and
	// bound (none: not measured).
	Stages []StageError
	// Equal counts the prompts whose encrypted token equals the plaintext
	// model's choice on the same context, of Prompts.
	Equal, Prompts int
}

// StageError is an encrypted stage's largest |encrypted - plaintext
// reference| in one step, and the bound its plan predicts.
type StageError struct {
	Stage           string
	MaxError, Bound float64
}

// offScale is how far above the largest measured error a bound may lie
// and still be drawn: a farther one is named in the legend instead.
const offScale = 1e6

var setupColor = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}

// WriteTokens draws a generation's steps into path, a .svg or .png file:
// wall time per token (evaluation, and keys and setup stacked on it)
// above, and, when any step was measured, its largest error against the
// plan's bound on a log scale below. Tokens whose encrypted choice differs
// from the plaintext one for some prompt are labelled with "≠".
func WriteTokens(title string, steps []TokenBar, path string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if len(steps) == 0 {
		return fmt.Errorf("plot %s: no tokens to draw", path)
	}
	labels := make([]string, len(steps))
	for i, s := range steps {
		labels[i] = strconv.Itoa(i + 1)
		if s.Equal < s.Prompts {
			labels[i] += "≠"
		}
	}
	top, err := tokenTimePlot(title, steps, labels)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	plots := []*plot.Plot{top}
	errs, err := tokenErrorPlot(steps, labels)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if errs != nil {
		plots = append(plots, errs)
	}
	w := vg.Length(max(6, 0.25*float64(len(steps))+2)) * vg.Inch
	return save(path, w, vg.Length(4*len(plots))*vg.Inch, plots...)
}

// tokenTimePlot stacks each step's setup on its evaluation time, in
// minutes when the slowest step takes over two.
func tokenTimePlot(title string, steps []TokenBar, labels []string) (*plot.Plot, error) {
	unit, div := "seconds", 1.0
	top := 0.0
	for _, s := range steps {
		top = math.Max(top, s.Seconds+s.SetupSeconds)
	}
	if top > 120 {
		unit, div, top = "minutes", 60, top/60
	}
	eval, setup := make(plotter.Values, len(steps)), make(plotter.Values, len(steps))
	for i, s := range steps {
		eval[i], setup[i] = s.Seconds/div, s.SetupSeconds/div
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.X.Label.Text = "token"
	width := vg.Points(10)
	e, err := plotter.NewBarChart(eval, width)
	if err != nil {
		return nil, err
	}
	e.Color, e.LineStyle.Width = predictedColor, 0
	s, err := plotter.NewBarChart(setup, width)
	if err != nil {
		return nil, err
	}
	s.Color, s.LineStyle.Width = setupColor, 0
	s.StackOn(e)
	p.Add(e, s)
	p.Legend.Add("evaluation", e)
	p.Legend.Add("keys and setup", s)
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, math.Max(1e-9, 1.3*top)
	p.NominalX(labels...)
	return p, nil
}

// tokenErrorPlot draws each measured stage's largest error per token and,
// as a dashed line of the same colour, its bound, on a log scale; nil when
// no step was measured.
func tokenErrorPlot(steps []TokenBar, labels []string) (*plot.Plot, error) {
	type series struct {
		name         string
		errs, bounds plotter.XYs
	}
	var all []*series
	at := map[string]*series{}
	lo, top := math.Inf(1), 0.0
	for i, st := range steps {
		for _, se := range st.Stages {
			if !(se.Bound > 0 && se.MaxError >= 0) { // not measured (a log axis takes no zero)
				continue
			}
			s := at[se.Stage]
			if s == nil {
				s = &series{name: se.Stage}
				at[se.Stage] = s
				all = append(all, s)
			}
			s.errs = append(s.errs, plotter.XY{X: float64(i), Y: se.MaxError})
			s.bounds = append(s.bounds, plotter.XY{X: float64(i), Y: se.Bound})
			if se.MaxError > 0 {
				lo, top = math.Min(lo, se.MaxError), math.Max(top, se.MaxError)
			}
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	if top == 0 { // every result exact
		lo, top = 1e-12, 1e-12
	}
	lo /= 3
	for _, s := range all {
		for i := range s.errs {
			// A log axis cannot place 0: an exact result sits at the bottom.
			s.errs[i].Y = math.Max(s.errs[i].Y, lo)
		}
	}
	p := plot.New()
	p.Title.Text = "Largest error of each encrypted stage per token (dots) and the plan's bound (dashes)"
	p.Y.Label.Text = "|encrypted - plaintext|"
	p.X.Label.Text = "token"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = powerTicks{}
	hi := top
	for k, s := range all {
		c := plotutil.Color(k)
		m, err := plotter.NewScatter(s.errs)
		if err != nil {
			return nil, err
		}
		m.GlyphStyle.Shape, m.GlyphStyle.Color = draw.CircleGlyph{}, c
		p.Add(m)
		p.Legend.Add(s.name, m)
		bound := 0.0
		for _, b := range s.bounds {
			bound = math.Max(bound, b.Y)
		}
		if bound > top*offScale {
			p.Legend.Add(fmt.Sprintf("%s bound %.1e (off the scale)", s.name, bound))
			continue
		}
		l, err := plotter.NewLine(s.bounds)
		if err != nil {
			return nil, err
		}
		l.Color, l.Dashes = c, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(s.name+" bound", l)
		hi = math.Max(hi, bound)
	}
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = lo, math.Min(hi*math.Pow(30, float64(len(all))), math.MaxFloat64)
	p.X.Min, p.X.Max = -0.5, float64(len(steps))-0.5
	p.NominalX(labels...)
	return p, nil
}

// powerTicks marks a log axis at powers of ten, labelled as 1e-06 (not
// the 9.9999999999999e-06 that float rounding gives plot.LogTicks).
type powerTicks struct{}

// Ticks implements plot.Ticker.
func (powerTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.LogTicks{Prec: -1}.Ticks(min, max)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = fmt.Sprintf("%.0e", t.Value)
		}
	}
	return ticks
}
