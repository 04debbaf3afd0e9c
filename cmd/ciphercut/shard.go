package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/runtime/remote"
	"github.com/ciphercut/ciphercut/runtime/segment"
)

func shardCmd() *cobra.Command {
	var out string
	var segments int
	cmd := &cobra.Command{
		Use:   "shard PLAN --segments N -o DIR",
		Short: "Split a plan's encrypted program into worker shards",
		Long: "shard cuts the plan's CKKS program into N consecutive segments (where every value\n" +
			"crossing a cut is at the default scale) and writes DIR/shard-<k>.bin, one per\n" +
			"segment, for `ciphercut worker --shard`, and DIR/manifest.json (plan id, cuts,\n" +
			"shard hashes), which the data owner passes to `ciphercut run --manifest` beside\n" +
			"the plan itself.",
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
			m, err := segment.WriteShards(out, segment.PlanID(data), plan.ModelName, segs)
			if err != nil {
				return err
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
	return cmd
}
