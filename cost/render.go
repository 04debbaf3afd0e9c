package cost

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON. Bits are infinite for a
// zero bound; JSON has no infinity, so they are written as the largest
// float64.
func WriteJSON(w io.Writer, r *Report) error {
	c := *r
	c.Layers = append([]Layer(nil), r.Layers...)
	c.Outputs = append([]Output(nil), r.Outputs...)
	for i := range c.Layers {
		c.Layers[i].Bits = finite(c.Layers[i].Bits)
	}
	for i := range c.Outputs {
		c.Outputs[i].Bits = finite(c.Outputs[i].Bits)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&c)
}

// finite clamps ±Inf (JSON has no infinity) and maps NaN to 0.
func finite(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	}
	return x
}

// WriteTable writes the report as a per-layer table and totals; measured
// columns appear when a measurement is attached.
func WriteTable(w io.Writer, r *Report) error {
	measured := r.Totals.MeasuredEvalSeconds != nil
	fmt.Fprintf(w, "%s, %s packing, %d ciphertext(s) on %d core(s)\nprofile: %s\n", r.Params, r.Packing, r.Ciphertexts, r.CPUs, r.Profile)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "layer\top\tlevels\tdiags\tscalar\tbaby\tgiant\tkeys\tct×ct\trescale\tpredicted"
	if measured {
		head += "\tmeasured\tratio"
	}
	head += "\tbound\tbits"
	if measured {
		head += "\tmeasured err\tbits"
	}
	fmt.Fprintln(tw, head+"\t")
	for _, l := range r.Layers {
		row := fmt.Sprintf("%s\t%s\t%d→%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s",
			shorten(l.Name, 28), l.Ops, l.LevelIn, l.LevelOut, l.Counts.Diagonals, l.Counts.ScalarMults+l.Counts.PlainMults, l.Counts.BabySteps, l.Counts.GiantSteps,
			l.Rotations, l.Counts.NonScalarMults, l.Counts.Rescales, seconds(l.Seconds))
		if measured {
			if l.MeasuredSeconds != nil {
				row += fmt.Sprintf("\t%s\t%s", seconds(*l.MeasuredSeconds), ratio(l.Seconds, *l.MeasuredSeconds))
			} else {
				row += "\t-\t-"
			}
		}
		row += fmt.Sprintf("\t%.2e\t%.1f", l.Bound, l.Bits)
		if measured {
			if l.MeasuredError != nil {
				row += fmt.Sprintf("\t%.2e\t%.1f", *l.MeasuredError, *l.MeasuredBits)
			} else {
				row += "\t-\t-"
			}
		}
		fmt.Fprintln(tw, row+"\t")
	}
	t := r.Totals
	row := fmt.Sprintf("total (one lane)\t\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s",
		t.Counts.Diagonals, t.Counts.ScalarMults+t.Counts.PlainMults, t.Counts.BabySteps, t.Counts.GiantSteps, t.RotationKeys, t.Counts.NonScalarMults, t.Counts.Rescales, seconds(t.LaneSeconds))
	if measured {
		ml := r.MeasuredLaneSeconds()
		row += fmt.Sprintf("\t%s\t%s", seconds(ml), ratio(t.LaneSeconds, ml))
	}
	fmt.Fprintln(tw, row+"\t\t\t")
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "evaluation  %s predicted", seconds(t.EvalSeconds))
	if measured {
		fmt.Fprintf(w, ", %s measured (predicted/measured %s)", seconds(*t.MeasuredEvalSeconds), ratio(t.EvalSeconds, *t.MeasuredEvalSeconds))
	}
	fmt.Fprintf(w, "\nclient      encrypt %s, decrypt %s\n", seconds(t.EncryptSeconds), seconds(t.DecryptSeconds))
	fmt.Fprintf(w, "operations  %d plaintext products (diagonals), %d constant products, %d hoisted + %d full rotations, %d ciphertext products, %d rescales, %d bootstraps\n",
		t.Counts.Diagonals+t.Counts.PlainMults, t.Counts.ScalarMults, t.Counts.BabySteps, t.Counts.GiantSteps, t.Counts.NonScalarMults, t.Counts.Rescales, t.Bootstraps)
	fmt.Fprintf(w, "keys        %d rotation keys of %s, %s evaluation keys in all; %s encoded diagonals\n",
		t.RotationKeys, mib(t.KeyBytes), mib(t.EvalKeyBytes), mib(t.EncodedBytes))
	fmt.Fprintf(w, "memory      %s peak (worker)\n", mib(t.PeakMemoryBytes))
	fmt.Fprintf(w, "network     %s up, %s down per run, %s of keys once (split plan)\n", mib(t.UploadBytes), mib(t.DownloadBytes), mib(t.EvalKeyBytes))
	for _, o := range r.Outputs {
		fmt.Fprintf(w, "output %-4s error bound %.3e, %.1f bits at magnitude %g", o.Name, o.Bound, o.Bits, o.Magnitude)
		if o.MeasuredError != nil {
			verdict := "holds"
			if *o.MeasuredError > o.Bound {
				verdict = "EXCEEDED"
			}
			fmt.Fprintf(w, "; measured max error %.3e, %.1f bits (bound %s)", *o.MeasuredError, *o.MeasuredBits, verdict)
		}
		fmt.Fprintln(w)
	}
	return nil
}

func seconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case s >= 1:
		return fmt.Sprintf("%.2fs", s)
	default:
		return fmt.Sprintf("%.1fms", 1000*s)
	}
}

func ratio(pred, meas float64) string {
	if meas <= 0 || math.IsNaN(meas) {
		return "-"
	}
	return fmt.Sprintf("%.2f", pred/meas)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}
