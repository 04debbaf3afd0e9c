// Package zoo opens the bundled model folders of testsuite/models: each holds
// model.onnx, inputs.npy (held-out samples along the leading axis),
// labels.npy and expected.npy (PyTorch's own outputs for those inputs).
package zoo

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/ciphercut/ciphercut/frontends/npy"
	"github.com/ciphercut/ciphercut/frontends/onnx"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/plain"
	"github.com/ciphercut/ciphercut/testsuite/models"
)

// Model is one bundled model with its held-out data.
type Model struct {
	Name     string
	Graph    *ir.Graph
	Inputs   *ir.Tensor // [N, ...]
	Labels   *ir.Tensor // [N] or [N, ...] class indices
	Expected *ir.Tensor // PyTorch outputs, [N, ...]
}

// Embedded is the file system of the models compiled into the binary.
func Embedded() fs.FS { return models.FS }

// Open reads the model folder dir from fsys.
func Open(fsys fs.FS, dir string) (*Model, error) {
	read := func(name string) ([]byte, error) {
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", dir, err)
		}
		return b, nil
	}
	m := &Model{Name: path.Base(dir)}
	b, err := read("model.onnx")
	if err != nil {
		return nil, err
	}
	if m.Graph, err = onnx.Decode(b, path.Join(dir, "model.onnx")); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  **ir.Tensor
	}{{"inputs.npy", &m.Inputs}, {"labels.npy", &m.Labels}, {"expected.npy", &m.Expected}} {
		b, err := read(f.name)
		if err != nil {
			return nil, err
		}
		if *f.dst, err = npy.Decode(b); err != nil {
			return nil, fmt.Errorf("%s: %w", path.Join(dir, f.name), err)
		}
	}
	if m.Inputs.Shape[0] != m.Labels.Shape[0] || m.Inputs.Shape[0] != m.Expected.Shape[0] {
		return nil, fmt.Errorf("model %s: inputs, labels and expected outputs hold different sample counts", dir)
	}
	return m, nil
}

// OpenDir opens a model folder on disk.
func OpenDir(dir string) (*Model, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return Open(os.DirFS(filepath.Dir(abs)), filepath.Base(abs))
}

// Samples is the number of held-out samples.
func (m *Model) Samples() int { return m.Inputs.Shape[0] }

// Rows returns samples [i, j) of a tensor batched along its leading axis.
func Rows(t *ir.Tensor, i, j int) *ir.Tensor {
	per := 1
	for _, d := range t.Shape[1:] {
		per *= d
	}
	shape := append(ir.Shape{j - i}, t.Shape[1:]...)
	out := &ir.Tensor{DType: t.DType, Shape: shape}
	if t.DType.IsFloat() {
		out.Float = append([]float64(nil), t.Float[i*per:j*per]...)
	} else {
		out.Int = append([]int64(nil), t.Int[i*per:j*per]...)
	}
	return out
}

// RunBatched runs the reference interpreter on g over every sample of in (a
// single-input, single-output graph), chunk samples at a time, and stacks the
// outputs along the leading axis. A graph whose input has a static leading
// dimension (canonical graphs are shaped for one sample) runs that many
// samples at a time.
func RunBatched(g *ir.Graph, in *ir.Tensor, chunk int) (*ir.Tensor, error) {
	if len(g.Inputs) != 1 || len(g.Outputs) != 1 {
		return nil, fmt.Errorf("graph %q has %d inputs and %d outputs; want one of each", g.Name, len(g.Inputs), len(g.Outputs))
	}
	if s := g.Inputs[0].Shape; len(s) > 0 && s[0] > 0 {
		chunk = s[0]
	}
	n := in.Shape[0]
	var out *ir.Tensor
	for i := 0; i < n; i += chunk {
		j := min(i+chunk, n)
		res, err := plain.Run(g, map[string]*ir.Tensor{g.Inputs[0].Name: Rows(in, i, j)}, nil)
		if err != nil {
			return nil, fmt.Errorf("samples %d to %d: %w", i, j-1, err)
		}
		o := res[g.Outputs[0].Name]
		if out == nil {
			out = &ir.Tensor{DType: o.DType, Shape: append(ir.Shape{n}, o.Shape[1:]...)}
		}
		out.Float = append(out.Float, o.Float...)
		out.Int = append(out.Int, o.Int...)
	}
	return out, nil
}

// Argmax returns the index of the largest element along the last axis, for
// every position of the other axes.
func Argmax(t *ir.Tensor) []int {
	k := t.Shape[len(t.Shape)-1]
	out := make([]int, len(t.Float)/k)
	for r := range out {
		row := t.Float[r*k : (r+1)*k]
		best := 0
		for c, v := range row {
			if v > row[best] {
				best = c
			}
		}
		out[r] = best
	}
	return out
}

// Accuracy is the fraction of positions whose argmax equals the label.
func Accuracy(logits, labels *ir.Tensor) float64 {
	pred := Argmax(logits)
	hit := 0
	for i, p := range pred {
		if int64(p) == labels.Ints()[i] {
			hit++
		}
	}
	return float64(hit) / float64(len(pred))
}

// Agreement is the fraction of positions where a and b have the same argmax.
func Agreement(a, b *ir.Tensor) float64 {
	pa, pb := Argmax(a), Argmax(b)
	same := 0
	for i := range pa {
		if pa[i] == pb[i] {
			same++
		}
	}
	return float64(same) / float64(len(pa))
}

// MaxAbsDiff is the largest elementwise |a-b|.
func MaxAbsDiff(a, b *ir.Tensor) float64 {
	worst := 0.0
	af, bf := a.Floats(), b.Floats()
	for i := range af {
		if d := af[i] - bf[i]; d > worst {
			worst = d
		} else if -d > worst {
			worst = -d
		}
	}
	return worst
}
