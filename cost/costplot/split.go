package costplot

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// SplitBar is one split's predicted latency by part, in seconds.
type SplitBar struct {
	Label string
	// Owner: the data owner's plaintext compute, encryption and
	// decryption; Network: uploads, downloads and round trips; Worker:
	// homomorphic evaluation.
	Owner, Network, Worker float64
	Chosen                 bool
}

var splitColors = []color.Color{
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // owner
	measuredColor,  // network
	predictedColor, // worker
}

// WriteSplit draws the predicted latency of split alternatives as stacked
// bars (worker, network, data owner) into path, a .svg or .png file; the
// chosen split's label is starred.
func WriteSplit(bars []SplitBar, path string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if len(bars) == 0 {
		return fmt.Errorf("plot %s: no splits to draw", path)
	}
	p := plot.New()
	p.Title.Text = "Predicted latency per sample of the split alternatives"
	p.Y.Label.Text = "seconds"
	parts := []struct {
		name string
		get  func(SplitBar) float64
	}{
		{"data owner", func(b SplitBar) float64 { return b.Owner }},
		{"network", func(b SplitBar) float64 { return b.Network }},
		{"worker", func(b SplitBar) float64 { return b.Worker }},
	}
	var below *plotter.BarChart
	top := 0.0
	for k, part := range parts {
		vals := make(plotter.Values, len(bars))
		for i, b := range bars {
			vals[i] = part.get(b)
		}
		c, err := plotter.NewBarChart(vals, vg.Points(16))
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		c.Color = splitColors[k]
		c.LineStyle.Width = 0
		if below != nil {
			c.StackOn(below)
		}
		below = c
		p.Add(c)
		p.Legend.Add(part.name, c)
	}
	labels := make([]string, len(bars))
	for i, b := range bars {
		top = math.Max(top, b.Owner+b.Network+b.Worker)
		n := []rune(b.Label)
		if len(n) > 28 {
			n = append([]rune("…"), n[len(n)-27:]...)
		}
		labels[i] = string(n)
		if b.Chosen {
			labels[i] = "* " + labels[i]
		}
	}
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, math.Max(1e-9, 1.3*top)
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 8
	p.X.Tick.Label.XAlign = draw.XRight
	w := vg.Length(max(6, 1.2*float64(len(bars))+2)) * vg.Inch
	return save(path, w, 5*vg.Inch, p)
}
