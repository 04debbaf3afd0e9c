package costplot

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// TokenBar is one step of a text generation: one new token for every
// prompt.
type TokenBar struct {
	// Seconds is the step's wall time less key generation and setup
	// (SetupSeconds).
	Seconds, SetupSeconds float64
	// MaxError is the step's largest encrypted-stage error and Bound the
	// plan's bound for it (0: not measured).
	MaxError, Bound float64
	// Equal counts the prompts whose encrypted token equals the plaintext
	// model's choice on the same context, of Prompts.
	Equal, Prompts int
}

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

// tokenErrorPlot draws the measured steps' largest error and its bound on
// a log scale; nil when no step was measured.
func tokenErrorPlot(steps []TokenBar, labels []string) (*plot.Plot, error) {
	var errs, bounds plotter.XYs
	for i, s := range steps {
		if s.Bound <= 0 {
			continue
		}
		bounds = append(bounds, plotter.XY{X: float64(i), Y: s.Bound})
		// A log axis cannot place 0: an exact result sits at the bottom.
		errs = append(errs, plotter.XY{X: float64(i), Y: math.Max(s.MaxError, s.Bound*1e-12)})
	}
	if len(errs) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Largest error of an encrypted stage per token, against the plan's bound"
	p.Y.Label.Text = "|encrypted - plaintext|"
	p.X.Label.Text = "token"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = powerTicks{}
	b, err := plotter.NewScatter(bounds)
	if err != nil {
		return nil, err
	}
	b.GlyphStyle.Shape, b.GlyphStyle.Color = draw.BoxGlyph{}, predictedColor
	m, err := plotter.NewScatter(errs)
	if err != nil {
		return nil, err
	}
	m.GlyphStyle.Shape, m.GlyphStyle.Color = draw.CircleGlyph{}, measuredColor
	p.Add(b, m)
	p.Legend.Add("bound", b)
	p.Legend.Add("measured", m)
	p.Legend.Top = true
	lo, hi := math.Inf(1), 0.0
	for i := range errs {
		lo, hi = math.Min(lo, errs[i].Y), math.Max(hi, bounds[i].Y)
	}
	p.Y.Min, p.Y.Max = lo/3, hi*30
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
