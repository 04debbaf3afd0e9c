package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

func shardCmd() *cobra.Command {
	var out, sign string
	var segments int
	var workers []string
	cmd := &cobra.Command{
		Use:   "shard PLAN --segments N -o DIR",
		Short: "Split a plan's encrypted program into worker shards",
		Long: "shard cuts the plan's CKKS program into N consecutive segments (where every value\n" +
			"crossing a cut is at the default scale) and writes DIR/shard-<k>.bin, one per\n" +
			"segment, for `ciphercut worker --shard`, and DIR/manifest.json (plan id, cuts,\n" +
			"shard hashes), which the data owner passes to `ciphercut run --manifest` beside\n" +
			"the plan itself. --sign KEYFILE signs the manifest with the model owner's key,\n" +
			"vouching for the workers given with --worker K=PEERID (segment K, from 0):\n" +
			"`ciphercut run --trust <model owner's peer id>` then accepts only those.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("missing -o DIR")
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			plan, _, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			segs, err := segment.Split(plan.Program, segments)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			vouched, err := parseWorkers(workers)
			if err != nil {
				return err
			}
			if len(vouched) > 0 && sign == "" {
				return fmt.Errorf("--worker needs --sign KEYFILE (the model owner's key)")
			}
			m, err := segment.WriteShards(out, segment.PlanID(data), plan.ModelName, segs)
			if err != nil {
				return err
			}
			if sign != "" {
				key, err := remote.LoadIdentity(sign)
				if err != nil {
					return err
				}
				if err := remote.SignManifest(m, vouched, key); err != nil {
					return err
				}
				if err := segment.WriteManifest(filepath.Join(out, segment.ManifestFile), m); err != nil {
					return err
				}
				fmt.Printf("manifest signed by model owner %s\n", m.Signer)
			}
			for _, s := range m.Shards {
				fmt.Printf("%s/%s: segment %d, instructions [%d, %d), DHT key %s\n", out, s.File, s.Index, s.Start, s.End, remote.ContentID(m.PlanID, s.Index))
			}
			fmt.Printf("%s/%s: plan %s\n", out, segment.ManifestFile, m.PlanID)
			return nil
		},
	}
	cmd.Flags().IntVar(&segments, "segments", 2, "number of segments")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory")
	cmd.Flags().StringVar(&sign, "sign", "", "model owner's Ed25519 key file: sign the manifest")
	cmd.Flags().StringArrayVar(&workers, "worker", nil, "K=PEERID: a worker the model owner vouches for, for segment K (repeatable; needs --sign)")
	return cmd
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
