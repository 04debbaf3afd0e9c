// Package costplot draws a cost report (package cost) as a two-panel chart:
// predicted (and, when attached, measured) seconds per layer above,
// predicted (and measured) bits of precision per layer below. It lives apart
// from package cost so that the runtime, which imports cost, does not pull
// in the plotting library.
package costplot

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/internal/atomicfile"
)

var (
	predictedColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	measuredColor  = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// Write draws the report into path, a .svg or .png file.
func Write(r *cost.Report, path string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	top, err := timePlot(r)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	bottom, err := bitsPlot(r)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	w := vg.Length(max(6, 1.2*float64(len(r.Layers))+2)) * vg.Inch
	return save(path, w, 8*vg.Inch, top, bottom)
}

// CheckPath accepts the .svg and .png file names, in an existing
// directory, that the writers draw into: a command checks its plot path
// with it before long work.
func CheckPath(path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".svg" && ext != ".png" {
		return fmt.Errorf("plot %s: want a .svg or .png file name", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("plot %s: no directory %s to draw into", path, filepath.Dir(path))
	}
	return nil
}

// save draws the plots stacked vertically on a w x h canvas into path
// (.svg or .png).
func save(path string, w, h vg.Length, plots ...*plot.Plot) error {
	var c vg.CanvasWriterTo
	if strings.ToLower(filepath.Ext(path)) == ".svg" {
		c = vgsvg.New(w, h)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(rows, tiles, draw.New(c))
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	// Through a temporary file: an error leaves no half-drawn plot behind.
	if _, err := atomicfile.WriteStream(path, 0o644, c.WriteTo); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// names returns short layer names for the X axis.
func names(r *cost.Report) []string {
	out := make([]string, len(r.Layers))
	for i, l := range r.Layers {
		n := []rune(l.Name)
		if len(n) > 18 {
			n = append([]rune("…"), n[len(n)-17:]...)
		}
		out[i] = string(n)
	}
	return out
}

// bars adds one or two bar series (predicted, measured) side by side.
func bars(p *plot.Plot, pred, meas plotter.Values, unit string) error {
	width := vg.Points(16)
	b, err := plotter.NewBarChart(pred, width)
	if err != nil {
		return err
	}
	b.Color = predictedColor
	b.LineStyle.Width = 0
	p.Add(b)
	p.Legend.Add("predicted "+unit, b)
	if meas != nil {
		m, err := plotter.NewBarChart(meas, width)
		if err != nil {
			return err
		}
		m.Color = measuredColor
		m.LineStyle.Width = 0
		b.Offset = -width / 2
		m.Offset = width / 2
		p.Add(m)
		p.Legend.Add("measured "+unit, m)
	}
	p.Legend.Top = true
	// Headroom above the tallest bar for the legend.
	top := 0.0
	for _, v := range append(append(plotter.Values(nil), pred...), meas...) {
		top = math.Max(top, v)
	}
	p.Y.Min, p.Y.Max = 0, math.Max(1e-9, 1.3*top)
	return nil
}

func timePlot(r *cost.Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Time per layer (one ciphertext lane)"
	p.Y.Label.Text = "seconds"
	pred := make(plotter.Values, len(r.Layers))
	var meas plotter.Values
	if r.Totals.MeasuredEvalSeconds != nil {
		meas = make(plotter.Values, len(r.Layers))
	}
	for i, l := range r.Layers {
		pred[i] = l.Seconds
		if meas != nil && l.MeasuredSeconds != nil {
			meas[i] = *l.MeasuredSeconds
		}
	}
	if err := bars(p, pred, meas, "s"); err != nil {
		return nil, err
	}
	p.NominalX(names(r)...)
	p.X.Tick.Label.Rotation = math.Pi / 8
	p.X.Tick.Label.XAlign = draw.XRight
	return p, nil
}

func bitsPlot(r *cost.Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Precision per layer: log2(1 / error bound)"
	p.Y.Label.Text = "bits"
	pred := make(plotter.Values, len(r.Layers))
	var meas plotter.Values
	for i, l := range r.Layers {
		pred[i] = clampBits(l.Bits)
		if l.MeasuredBits != nil {
			if meas == nil {
				meas = make(plotter.Values, len(r.Layers))
			}
			meas[i] = clampBits(*l.MeasuredBits)
		}
	}
	if err := bars(p, pred, meas, "bits"); err != nil {
		return nil, err
	}
	p.NominalX(names(r)...)
	p.X.Tick.Label.Rotation = math.Pi / 8
	p.X.Tick.Label.XAlign = draw.XRight
	return p, nil
}

// clampBits keeps infinite bits (an exact layer) drawable.
func clampBits(b float64) float64 {
	if math.IsInf(b, 1) || b > 64 {
		return 64
	}
	if math.IsNaN(b) || b < 0 {
		return 0
	}
	return b
}
