package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/cost"
	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/passes"
)

// cutFlags are compile's split-cut options (--cut and its policy and link).
type cutFlags struct {
	cut                        string
	revealPrefix, revealSuffix int
	clientAided                passes.ClientAided
	bandwidth                  string
	rtt                        time.Duration
	clientSpeed                float64
	profile                    string
}

func (f *cutFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.cut, "cut", "none", "split between data owner and worker: auto (least predicted latency; the default for models with integer inputs), none (all encrypted but an integer input's embedding), after=NODE (the data owner runs NODE and what it depends on)")
	fl.IntVar(&f.revealPrefix, "reveal-prefix", 0, "leading weighted layers whose weights the data owner may hold (default 0; for a model with integer inputs, its token and positional embedding)")
	fl.IntVar(&f.revealSuffix, "reveal-suffix", passes.DefaultRevealSuffix, "trailing weighted layers whose weights the data owner may hold (default: the last layer)")
	fl.Var(&f.clientAided, "client-aided", "nodes the data owner may compute between encrypted segments, seeing their inputs: none, activations, layernorm (layer normalizations, computed exactly; softmax stays encrypted) or all")
	fl.StringVar(&f.bandwidth, "bandwidth", "100Mbit/s", "data owner to worker bandwidth for split costs (bit/s with k, M, G prefixes)")
	fl.DurationVar(&f.rtt, "rtt", 20*time.Millisecond, "round-trip time for split costs")
	fl.Float64Var(&f.clientSpeed, "client-speed", passes.DefaultClientSpeed, "data owner's speed relative to the cost profile's machine")
	fl.StringVar(&f.profile, "cost-profile", "", "machine profile for split costs (default: calibrated profile, else the bundled one)")
}

// options returns the split options for compiling g (nil without a split:
// --cut none and no client-aided nodes) and the profile to cost with. A
// model with integer inputs (token ids) is always split: its embedding runs
// on the data owner; without --cut the cut is then auto, and without
// --reveal-prefix the policy reveals the embedding (passes.Embedding).
func (f *cutFlags) options(cmd *cobra.Command, g *ir.Graph) (*passes.SplitOptions, *cost.Profile, error) {
	integer := false
	for _, in := range g.Inputs {
		integer = integer || !in.DType.IsFloat()
	}
	if integer && !cmd.Flags().Changed("cut") {
		f.cut = "auto"
	}
	if f.cut == "none" && f.clientAided == passes.ClientAidedNone && !integer {
		return nil, nil, nil
	}
	revealPrefix := f.revealPrefix
	if !cmd.Flags().Changed("reveal-prefix") {
		revealPrefix = -1 // passes.SplitPolicy's default
	} else if revealPrefix < 0 {
		return nil, nil, fmt.Errorf("--reveal-prefix %d is negative", revealPrefix)
	}
	bw, err := parseBandwidth(f.bandwidth)
	if err != nil {
		return nil, nil, err
	}
	if f.rtt < 0 {
		return nil, nil, fmt.Errorf("--rtt %v is negative", f.rtt)
	}
	if f.clientSpeed <= 0 {
		return nil, nil, fmt.Errorf("--client-speed %g: want a positive factor", f.clientSpeed)
	}
	if f.revealSuffix < 0 {
		return nil, nil, fmt.Errorf("--reveal-suffix %d is negative", f.revealSuffix)
	}
	prof, _, err := cost.LoadProfileOrDefault(f.profile)
	if err != nil {
		return nil, nil, err
	}
	return &passes.SplitOptions{
		Cut:    f.cut,
		Policy: passes.SplitPolicy{RevealPrefix: revealPrefix, RevealSuffix: f.revealSuffix, ClientAided: f.clientAided},
		Link:   passes.Link{Bandwidth: bw, RTT: f.rtt.Seconds(), ClientSpeed: f.clientSpeed},
	}, prof, nil
}

// parseBandwidth reads bits per second: a number with an optional k, M or
// G prefix and an optional "bit/s", "bps" or "b/s" unit ("100Mbit/s").
func parseBandwidth(s string) (float64, error) {
	t := strings.TrimSpace(s)
	for _, unit := range []string{"bit/s", "bps", "b/s"} {
		t = strings.TrimSuffix(t, unit)
	}
	mult := 1.0
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:len(t)-1]
		case 'M':
			mult, t = 1e6, t[:len(t)-1]
		case 'G':
			mult, t = 1e9, t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--bandwidth %q: want a positive rate such as 100Mbit/s", s)
	}
	return v * mult, nil
}

// printSplit summarizes a split plan's stages.
func printSplit(w io.Writer, path string, plan *compiler.Plan) {
	sp := plan.Split
	fmt.Fprintf(w, "plan %s: split %q, %d stages, predicted %.3g s per sample (%d round trips, %d bootstraps, %.1f MiB up, %.1f MiB down)\n",
		path, sp.Candidates[0].Label, len(plan.Stages), sp.Predicted.Total, sp.Predicted.RoundTrips, sp.Predicted.Bootstraps,
		float64(sp.Predicted.UploadBytes)/(1<<20), float64(sp.Predicted.DownloadBytes)/(1<<20))
	if note := sp.Embedding.String(); note != "" {
		fmt.Fprintf(w, "  %s\n", note)
	}
	for i, s := range plan.Stages {
		desc := fmt.Sprintf("%d nodes", len(s.Nodes))
		if p := s.Program; p != nil {
			desc += fmt.Sprintf(", N=2^%d, %d levels, depth %d, %d bootstraps", p.Params.LogN, p.Params.MaxLevel(), p.Depth(), p.Bootstraps())
		}
		fmt.Fprintf(w, "  %d %-13s %s; in %s; out %s\n", i, s.Kind, desc, strings.Join(s.Inputs, ", "), strings.Join(s.Outputs, ", "))
	}
}
