package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/cost/costplot"
)

// writeSplitReport prints a split plan's chosen split, its stages, the
// predicted cost of the alternatives and each encrypted stage's per-layer
// prediction; or, with asJSON, the split report as JSON. With plotPath it
// also draws the alternatives.
func writeSplitReport(w io.Writer, path string, plan *compiler.Plan, profile string, asJSON bool, plotPath string) error {
	sp := plan.Split
	if sp == nil || len(sp.Candidates) == 0 {
		return fmt.Errorf("%s: split plan without its split report", path)
	}
	if plotPath != "" {
		bars := make([]costplot.SplitBar, len(sp.Candidates))
		for i, c := range sp.Candidates {
			k := c.Cost
			bars[i] = costplot.SplitBar{Label: c.Label, Owner: k.Owner + k.Encrypt + k.Decrypt,
				Network: k.Upload + k.Download + k.RoundTrip, Worker: k.Worker, Chosen: i == 0}
		}
		if err := costplot.WriteSplit(bars, plotPath); err != nil {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(sp)
	}
	fmt.Fprintf(w, "plan %s: model %s, split by --cut %s, --reveal-prefix %d, --reveal-suffix %d, --client-aided %s; link %.4g Mbit/s, rtt %.4g ms, client speed %g\n",
		path, plan.ModelName, sp.Cut, sp.Policy.RevealPrefix, sp.Policy.RevealSuffix, sp.Policy.ClientAided,
		sp.Link.Bandwidth/1e6, sp.Link.RTT*1e3, sp.Link.ClientSpeed)
	printSplit(w, path, plan)
	which := "the best few cuts of the DAG"
	if sp.Chain {
		which = "every feasible cut point of the chain"
	}
	fmt.Fprintf(w, "\nalternatives (%s), predicted seconds per sample, cheapest first (costed on stages lowered without calibration):\n", which)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tsplit\tclient-aided\tstages\tbootstraps\tround trips\tup MiB\tdown MiB\towner\tencrypt\tupload\tworker\tdownload\tdecrypt\trtt\ttotal\t")
	for i, c := range sp.Candidates {
		k := c.Cost
		mark := ""
		if i == 0 {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t\n", mark, c.Label, len(c.ClientAided), len(c.Stages),
			k.Bootstraps, k.RoundTrips, float64(k.UploadBytes)/(1<<20), float64(k.DownloadBytes)/(1<<20),
			k.Owner, k.Encrypt, k.Upload, k.Worker, k.Download, k.Decrypt, k.RoundTrip, k.Total)
	}
	k := sp.Predicted
	fmt.Fprintf(tw, "\tchosen, final stages\t\t%d\t%d\t%d\t%.2f\t%.2f\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t%.3g\t\n", len(plan.Stages),
		k.Bootstraps, k.RoundTrips, float64(k.UploadBytes)/(1<<20), float64(k.DownloadBytes)/(1<<20),
		k.Owner, k.Encrypt, k.Upload, k.Worker, k.Download, k.Decrypt, k.RoundTrip, k.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, s := range plan.Stages {
		if s.Program == nil {
			continue
		}
		rep, err := buildReport(s.Program, profile, "", 0, 0, nil)
		if err != nil {
			return fmt.Errorf("stage %d: %w", i, err)
		}
		fmt.Fprintf(w, "\nstage %d (%s):\n", i, s.Kind)
		if err := cost.WriteTable(w, rep); err != nil {
			return err
		}
	}
	return nil
}
