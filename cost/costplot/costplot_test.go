package costplot

import (
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciphercut/ciphercut/cost"
)

// report is a small report with a measurement attached to one layer.
func report() *cost.Report {
	meas, bits, eval := 0.2, 12.0, 1.0
	return &cost.Report{
		Layers: []cost.Layer{
			{Name: "/net/fc1/Gemm", Seconds: 0.5, Bits: 20, MeasuredSeconds: &meas},
			{Name: "relu", Seconds: 0.3, Bits: 18},
			{Name: "a-rather-long-layer-name/that/gets/shortened", Seconds: 0.1, Bits: 10, MeasuredBits: &bits},
		},
		Totals: cost.Totals{MeasuredEvalSeconds: &eval},
	}
}

func TestWritePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.png")
	if err := Write(report(), path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("image %v", b)
	}
}

func TestWriteSVG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.svg")
	if err := Write(report(), path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if root := svgRoot(t, data); root != "svg" || !strings.Contains(string(data), "predicted") {
		t.Errorf("root element %q, %d bytes", root, len(data))
	}
}

// svgRoot parses data as XML and returns its root element's name.
func svgRoot(t *testing.T, data []byte) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(data)))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return root
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

func TestWriteRefusesOtherFormats(t *testing.T) {
	err := Write(report(), filepath.Join(t.TempDir(), "r.jpg"))
	if err == nil || !strings.Contains(err.Error(), "r.jpg") {
		t.Errorf("got %v, want an error naming r.jpg", err)
	}
}

func TestWriteTokensSVG(t *testing.T) {
	worst := func(e, b float64) []StageError { return []StageError{{Stage: "encrypted 4", MaxError: e, Bound: b}} }
	steps := []TokenBar{
		{Seconds: 600, SetupSeconds: 60, Stages: append(worst(1.2e-7, 2.8e-6), StageError{Stage: "encrypted 1", MaxError: 6.6e-4, Bound: 9.2e59}), Equal: 4, Prompts: 4},
		{Seconds: 540, Stages: worst(0, 2.8e-6), Equal: 3, Prompts: 4}, // exact, one prompt differs
		{Seconds: 550, Equal: 4, Prompts: 4},                           // not measured
	}
	for _, tc := range []struct {
		steps     []TokenBar
		wantError bool
	}{{steps, true}, {steps[2:], false}} {
		path := filepath.Join(t.TempDir(), "tokens.svg")
		if err := WriteTokens("tiny-gpt, 4 prompts", tc.steps, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		svg := string(data)
		if root := svgRoot(t, data); root != "svg" || !strings.Contains(svg, "minutes") || !strings.Contains(svg, "keys and setup") {
			t.Errorf("root element %q, want an svg drawn in minutes with setup stacked on evaluation", root)
		}
		if got := strings.Contains(svg, "encrypted 4 bound") && strings.Contains(svg, "encrypted 1 bound 9.2e+59 (off the scale)"); got != tc.wantError {
			t.Errorf("%d steps: error panel drawn %v, want %v", len(tc.steps), got, tc.wantError)
		}
		if got := strings.Contains(svg, "2≠"); got != tc.wantError {
			t.Errorf("%d steps: token 2 marked as differing %v, want %v", len(tc.steps), got, tc.wantError)
		}
	}
}

func TestWriteTokensRefusesNoTokens(t *testing.T) {
	err := WriteTokens("none", nil, filepath.Join(t.TempDir(), "t.png"))
	if err == nil || !strings.Contains(err.Error(), "no tokens") {
		t.Errorf("got %v, want an error saying there are no tokens", err)
	}
}

// A stage entry without a bound (not measured) or with a zero error must
// not reach the log axis, which panics on values <= 0.
func TestWriteTokensUnmeasuredStages(t *testing.T) {
	steps := []TokenBar{
		{Seconds: 60, Stages: []StageError{{Stage: "a"}, {Stage: "b", MaxError: 0, Bound: 1e-3}}, Equal: 1, Prompts: 1},
		{Seconds: 60, Stages: []StageError{{Stage: "a", MaxError: 1e-5, Bound: 1e308}}, Equal: 1, Prompts: 1},
	}
	if err := WriteTokens("t", steps, filepath.Join(t.TempDir(), "t.png")); err != nil {
		t.Fatal(err)
	}
}
