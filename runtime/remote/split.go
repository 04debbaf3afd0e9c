package remote

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/ciphercut/ciphercut/ir"
	"github.com/ciphercut/ciphercut/runtime/local"
	"github.com/ciphercut/ciphercut/runtime/segment"
	"github.com/ciphercut/ciphercut/runtime/split"
)

// SplitOwner is the data owner of a split plan (a data-owner plan with
// stages, segment.OwnerPlan.Stages) on remote workers. runtime/split runs
// the stages in order, as in process: the plaintext stages (prefix,
// client-aided activations, suffix) on the data owner, and each encrypted
// stage through an Owner of its own, which encrypts the stage's inputs,
// runs its segments on workers (failover, redundancy and key caching as
// for a whole plan) and decrypts its outputs. Each encrypted stage has its
// own secret key, since stages may be on different rings; every secret key
// stays in this process.
type SplitOwner struct {
	plan   *segment.OwnerPlan
	owners map[int]*Owner // by stage position
	setups map[int]*Setup
}

// NewSplitOwner prepares the encrypted stages of the split data-owner plan
// op: one Owner per encrypted stage (see NewOwner), sharing the host, the
// finder and the options; with opts.KeyDir, stage k's keys are kept in
// KeyDir/stage-<index of its first segment>. It returns the setup of each
// encrypted stage, by stage position.
func NewSplitOwner(h host.Host, find Finder, op *segment.OwnerPlan, opts OwnerOptions) (*SplitOwner, map[int]*Setup, error) {
	if !op.IsSplit() {
		return nil, nil, fmt.Errorf("the data-owner plan of %s has no stages (not a split plan)", op.ModelName)
	}
	so := &SplitOwner{plan: op, owners: map[int]*Owner{}, setups: map[int]*Setup{}}
	for i, st := range op.Stages {
		if st.Encrypted == nil {
			continue
		}
		o := opts
		if opts.KeyDir != "" {
			o.KeyDir = filepath.Join(opts.KeyDir, fmt.Sprintf("stage-%d", st.Encrypted.Segments[0].Index))
		}
		owner, setup, err := NewOwner(h, find, st.Encrypted, o)
		if err != nil {
			return nil, nil, fmt.Errorf("stage %s: %w", st.Name, err)
		}
		so.owners[i], so.setups[i] = owner, setup
	}
	return so, so.setups, nil
}

// Run runs the plan's stages on the named model inputs (samples stacked
// along the leading axis) with runtime/split, the encrypted stages on
// workers, and returns every value the stages produced and the report
// (each encrypted stage's Where names its workers). With verify, every
// encrypted stage is checked against its plaintext reference, which the
// plan holds only when the model owner revealed it.
func (so *SplitOwner) Run(ctx context.Context, inputs map[string]*ir.Tensor, verify bool) (map[string]*ir.Tensor, *split.Report, error) {
	stages, err := so.plan.RunStages()
	if err != nil {
		return nil, nil, err
	}
	return split.Run(stages, inputs, split.Options{Verify: verify, Runner: so.Runner(ctx)})
}

// Runner is the split.Runner of the encrypted stages on workers.
func (so *SplitOwner) Runner(ctx context.Context) split.Runner {
	return func(index int, st split.Stage, feeds map[string]*ir.Tensor, tm *split.StageTiming) (map[string]*ir.Tensor, error) {
		o := so.owners[index]
		if o == nil {
			return nil, fmt.Errorf("stage %d is not an encrypted stage of the data-owner plan", index)
		}
		setup := so.setups[index]
		tm.Setup = local.Setup{KeyGen: setup.KeyGen}
		for _, b := range setup.KeyBytes {
			tm.Setup.EvalKeyBytes += b
		}
		outs, rep, err := o.Run(ctx, feeds)
		tm.Timing.Encrypt, tm.Timing.Decrypt, tm.Timing.Ciphertexts = rep.Encrypt, rep.Decrypt, rep.Ciphertexts
		var where []string
		for _, r := range rep.Segments {
			tm.Timing.Eval += r.Eval
			tm.Network += r.Wall - r.Eval
			tm.Timing.UploadBytes += r.Sent
			tm.Timing.DownloadBytes += r.Received
			tm.KeyUpload += r.KeyBytes
			where = append(where, r.where())
		}
		tm.Where = strings.Join(where, "; ")
		return outs, err
	}
}

// where describes where a segment ran: its worker, the round trip, and the
// failed attempts, checks and liar under redundancy.
func (r SegmentRun) where() string {
	if r.Worker == "" {
		return fmt.Sprintf("segment %d: no worker answered", r.Index)
	}
	s := fmt.Sprintf("segment %d on worker %s, round trip %v", r.Index, r.Worker, r.Wall.Round(time.Millisecond))
	if len(r.Failures) > 0 {
		// One line: libp2p's dial errors span several.
		s += fmt.Sprintf(" after %d failed attempts (%s)", len(r.Failures), strings.Join(strings.Fields(strings.Join(r.Failures, "; ")), " "))
	}
	if len(r.Checked) > 0 {
		s += fmt.Sprintf(", checked by %v", r.Checked)
	}
	if r.Liar != "" {
		s += fmt.Sprintf(", LYING WORKER %s", r.Liar)
	}
	return s
}
