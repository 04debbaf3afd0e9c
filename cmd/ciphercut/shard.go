package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/compiler"
	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

func shardCmd() *cobra.Command {
	var out string
	var sf *splitFlags
	cmd := &cobra.Command{
		Use:   "shard PLAN --segments N -o DIR",
		Short: "Split a plan into a data-owner plan and worker shards",
		Long: "shard cuts the plan's CKKS program into N consecutive segments (where every value\n" +
			"crossing a cut is at the default scale) and writes, as `compile --split-out` does:\n" +
			"DIR/shard-<k>.bin, one per segment, for `ciphercut worker --shard` (that segment's\n" +
			"program and weights only); DIR/owner.plan, the data-owner plan for `ciphercut run`\n" +
			"(CKKS parameters, each segment's interface and key needs, no weights; the\n" +
			"plaintext reference only with --reveal-reference); and DIR/manifest.json (plan id,\n" +
			"cuts, shard hashes). --sign KEYFILE signs the manifest with the model owner's key,\n" +
			"vouching for the workers given with --worker K=PEERID (segment K, from 0):\n" +
			"`ciphercut run --trust <model owner's peer id>` then accepts only those.\n\n" +
			"A split plan (compile --cut, --client-aided) gives one shard per encrypted stage, and\n" +
			"its data-owner plan holds the stages in order: the plaintext ones (prefix,\n" +
			"client-aided activations, suffix) with the weights the policy reveals, the\n" +
			"encrypted ones as interfaces.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("missing -o DIR")
			}
			plan, _, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			return sf.write(args[0], plan, out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory")
	sf = addSplitFlags(cmd)
	return cmd
}

// splitFlags are the options of a split, shared by `shard` and `compile
// --split-out`.
type splitFlags struct {
	segments int
	sign     string
	workers  []string
	reveal   bool
}

func addSplitFlags(cmd *cobra.Command) *splitFlags {
	sf := &splitFlags{}
	f := cmd.Flags()
	f.IntVar(&sf.segments, "segments", 0, "number of encrypted segments (worker shards) of the split (default 2; a split plan (--cut, --client-aided) has one per encrypted stage)")
	f.StringVar(&sf.sign, "sign", "", "model owner's Ed25519 key file: sign the split's manifest")
	f.StringArrayVar(&sf.workers, "worker", nil, "K=PEERID: a worker the model owner vouches for, for segment K (repeatable; needs --sign)")
	f.BoolVar(&sf.reveal, "reveal-reference", false, "put the plaintext reference (the approximated model, weights included) in the data-owner plan, so that `run --verify` can check results")
	return sf
}

// write splits the plan read from planPath into dir: the worker shards, the
// data-owner plan and the manifest (signed with --sign).
func (sf *splitFlags) write(planPath string, plan *compiler.Plan, dir string) error {
	data, err := os.ReadFile(planPath)
	if err != nil {
		return err
	}
	vouched, err := parseWorkers(sf.workers)
	if err != nil {
		return err
	}
	if len(vouched) > 0 && sf.sign == "" {
		return fmt.Errorf("--worker needs --sign KEYFILE (the model owner's key)")
	}
	var op *segment.OwnerPlan
	var segs []*segment.Segment
	if plan.IsSplit() {
		// The data owner gets the plaintext stages (the weights the
		// policy reveals), each encrypted stage is one worker shard.
		if op, segs, err = splitOwnerPlan(segment.PlanID(data), plan, sf.reveal); err != nil {
			return fmt.Errorf("%s: %w", planPath, err)
		}
		if sf.segments != 0 && sf.segments != len(segs) {
			return fmt.Errorf("%s is a split plan with %d encrypted stages, one shard each; --segments %d cannot change that", planPath, len(segs), sf.segments)
		}
	} else {
		n := sf.segments
		if n == 0 {
			n = 2
		}
		if segs, err = segment.Split(plan.Program, n); err != nil {
			return fmt.Errorf("%s: %w", planPath, err)
		}
		if op, err = segment.NewOwnerPlan(segment.PlanID(data), plan.ModelName, plan.Program, segs, plan.Graph, sf.reveal); err != nil {
			return err
		}
	}
	sp, err := segment.WriteOwnerSplit(dir, op, segs)
	if err != nil {
		return err
	}
	m := sp.Manifest
	if sf.sign != "" {
		key, err := remote.LoadIdentity(sf.sign)
		if err != nil {
			return err
		}
		if err := remote.SignManifest(m, vouched, key); err != nil {
			return err
		}
		if err := segment.WriteManifest(filepath.Join(dir, segment.ManifestFile), m); err != nil {
			return err
		}
		fmt.Printf("manifest signed by model owner %s\n", m.Signer)
	}
	stageOf := map[int]string{}
	var plainStages []string
	for _, st := range op.Stages {
		if st.Encrypted == nil {
			plainStages = append(plainStages, st.Name)
			continue
		}
		for _, s := range st.Encrypted.Segments {
			stageOf[s.Index] = ", stage " + st.Name
		}
	}
	for _, s := range m.Shards {
		fmt.Printf("%s: segment %d%s, instructions [%d, %d), DHT key %s\n", filepath.Join(dir, s.File), s.Index, stageOf[s.Index], s.Start, s.End, remote.ContentID(m.PlanID, s.Index))
	}
	reference := "no plaintext reference"
	if sf.reveal {
		reference = "the plaintext reference"
	}
	what := fmt.Sprintf("CKKS parameters, %d segment interfaces", len(segs))
	if op.IsSplit() {
		what = fmt.Sprintf("%d stages: plaintext %s (the weights the policy reveals), %d encrypted (CKKS parameters, interfaces)",
			len(op.Stages), strings.Join(plainStages, ", "), len(segs))
	}
	fmt.Printf("%s: data-owner plan: %s, %s, no worker weights\n", filepath.Join(dir, segment.OwnerPlanFile), what, reference)
	fmt.Printf("%s: plan %s\n", filepath.Join(dir, segment.ManifestFile), m.PlanID)
	return nil
}

// parseWorkers parses --worker K=PEERID flags.
func parseWorkers(flags []string) (map[int][]peer.ID, error) {
	out := map[int][]peer.ID{}
	for _, f := range flags {
		k, id, ok := strings.Cut(f, "=")
		idx, err := strconv.Atoi(k)
		if !ok || err != nil {
			return nil, fmt.Errorf("--worker %q: want K=PEERID", f)
		}
		p, err := peer.Decode(id)
		if err != nil {
			return nil, fmt.Errorf("--worker %q: %w", f, err)
		}
		out[idx] = append(out[idx], p)
	}
	return out, nil
}
