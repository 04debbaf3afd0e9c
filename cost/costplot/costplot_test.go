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
	d := xml.NewDecoder(strings.NewReader(string(data)))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" || !strings.Contains(string(data), "predicted") {
		t.Errorf("root element %q, %d bytes", root, len(data))
	}
}

func TestWriteRefusesOtherFormats(t *testing.T) {
	err := Write(report(), filepath.Join(t.TempDir(), "r.jpg"))
	if err == nil || !strings.Contains(err.Error(), "r.jpg") {
		t.Errorf("got %v, want an error naming r.jpg", err)
	}
}
