package main

import (
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/ciphercut/ciphercut/runtime/remote"
)

func tokenCmd() *cobra.Command {
	var identity, peerID, out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --identity MODELOWNERKEY --peer PEERID [--ttl 24h] -o FILE",
		Short: "Issue a data owner a token, signed by the model owner, that workers accept",
		Long: "token signs, with the model owner's key (the one that signs shard manifests),\n" +
			"a permission for the data owner PEERID to use the workers started with\n" +
			"`--token-issuer <model owner's peer id>`, valid for --ttl. The data owner passes\n" +
			"the file to `ciphercut run --token FILE`. Workers refuse expired, forged or\n" +
			"altered tokens and tokens presented by another peer than the one named.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if identity == "" || peerID == "" || out == "" {
				return fmt.Errorf("token needs --identity MODELOWNERKEY, --peer PEERID and -o FILE")
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl %v: want a positive duration", ttl)
			}
			data, err := os.ReadFile(identity)
			if err != nil {
				return fmt.Errorf("model owner's key: %w", err)
			}
			key, err := crypto.UnmarshalPrivateKey(data)
			if err != nil {
				return fmt.Errorf("model owner's key %s: %w", identity, err)
			}
			p, err := peer.Decode(peerID)
			if err != nil {
				return fmt.Errorf("--peer %q: %w", peerID, err)
			}
			t, err := remote.IssueToken(key, p, time.Now().Add(ttl))
			if err != nil {
				return err
			}
			if err := remote.WriteToken(out, t); err != nil {
				return err
			}
			fmt.Printf("%s: token of model owner %s for data owner %s, valid until %s\n", out, t.Issuer, t.Peer, t.ExpiresAt().Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&identity, "identity", "", "the model owner's Ed25519 key file (it must exist)")
	f.StringVar(&peerID, "peer", "", "the data owner's peer id (`ciphercut identity owner.key`)")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "validity from now")
	f.StringVarP(&out, "output", "o", "", "token file to write")
	return cmd
}
