package passes

import (
	"errors"
	"fmt"
	"strings"
)

// splitEvaluator costs candidates, caching the cost of every encrypted
// stage by its inputs and outputs.
type splitEvaluator struct {
	sg     *splitGraph
	opts   SplitOptions
	cost   StageCoster
	stages map[string]StageCost
	failed map[string]error
	// misses counts the stage costings of the current candidate.
	misses int
}

func stageKey(s StageSpec) string {
	return strings.Join(s.Inputs, "\x00") + "\x01" + strings.Join(s.Outputs, "\x00")
}

// stageCost returns the cost of an encrypted stage, from the cache when
// possible.
func (ev *splitEvaluator) stageCost(s StageSpec) (StageCost, error) {
	key := stageKey(s)
	if c, ok := ev.stages[key]; ok {
		return c, nil
	}
	if ev.failed == nil {
		ev.failed = map[string]error{}
	}
	if err, ok := ev.failed[key]; ok {
		return StageCost{}, err
	}
	ev.misses++
	c, err := ev.cost(s)
	if err != nil {
		err = fmt.Errorf("encrypted stage %v -> %v: %w", s.Inputs, s.Outputs, err)
		ev.failed[key] = err
		return StageCost{}, err
	}
	ev.stages[key] = c
	return c, nil
}

// evaluate costs one split: a pair and its client-aided nodes.
func (ev *splitEvaluator) evaluate(pr splitPair, ca []bool) (*SplitCandidate, error) {
	sg, link := ev.sg, ev.opts.Link
	c := &SplitCandidate{Label: pr.label, Stages: sg.stages(pr.prefix, pr.suffix, ca)}
	for i, nd := range sg.nodes {
		switch {
		case pr.prefix[i]:
			c.Prefix = append(c.Prefix, nd.Name)
		case pr.suffix[i]:
			c.Suffix = append(c.Suffix, nd.Name)
		case ca[i]:
			c.ClientAided = append(c.ClientAided, nd.Name)
		}
	}
	encrypted := 0
	for _, s := range c.Stages {
		if s.Kind != StageEncrypted {
			macs := 0.0
			for _, name := range s.Nodes {
				macs += splitMACs(sg.nodes[sg.byName(name)])
			}
			c.Cost.Owner += macs / (OwnerMACsPerSecond * link.ClientSpeed)
			continue
		}
		if encrypted == 0 {
			c.Cut = s.Inputs
		}
		encrypted++
		sc, err := ev.stageCost(s)
		if err != nil {
			return nil, err
		}
		c.Cost.Worker += sc.WorkerSeconds
		c.Cost.Encrypt += sc.EncryptSeconds / link.ClientSpeed
		c.Cost.Decrypt += sc.DecryptSeconds / link.ClientSpeed
		c.Cost.UploadBytes += sc.UploadBytes
		c.Cost.DownloadBytes += sc.DownloadBytes
		c.Cost.Bootstraps += sc.Bootstraps
		c.Cost.RoundTrips++
	}
	if len(c.Suffix) > 0 {
		set := make([]bool, len(sg.nodes))
		copy(set, pr.suffix)
		c.SuffixCut = sg.crossing(set, false)
	}
	c.Cost.Upload = float64(c.Cost.UploadBytes) * 8 / link.Bandwidth
	c.Cost.Download = float64(c.Cost.DownloadBytes) * 8 / link.Bandwidth
	c.Cost.RoundTrip = float64(c.Cost.RoundTrips) * link.RTT
	c.Cost.Total = c.Cost.Owner + c.Cost.Encrypt + c.Cost.Upload + c.Cost.Worker + c.Cost.Download + c.Cost.Decrypt + c.Cost.RoundTrip
	return c, nil
}

// byName is the index of the node named name.
func (sg *splitGraph) byName(name string) int {
	if sg.names == nil {
		sg.names = make(map[string]int, len(sg.nodes))
		for i, nd := range sg.nodes {
			sg.names[nd.Name] = i
		}
	}
	return sg.names[name]
}

// best costs a pair with its best client-aided nodes: none, or a greedy
// descent from every eligible node client-aided, un-aiding at each step
// the node whose merge of two segments saves most, while that saves and
// opts.MaxEvaluations stage costings last.
func (ev *splitEvaluator) best(pr splitPair) (*SplitCandidate, error) {
	sg := ev.sg
	n := len(sg.nodes)
	ev.misses = 0
	none, errNone := ev.evaluate(pr, make([]bool, n))
	eligible := make([]bool, n)
	count := 0
	for i, nd := range sg.nodes {
		if !pr.prefix[i] && !pr.suffix[i] && splitEligible(nd, ev.opts.Policy.ClientAided) {
			eligible[i] = true
			count++
		}
	}
	if count == 0 {
		return none, errNone
	}
	cur, errAll := ev.evaluate(pr, eligible)
	if errAll != nil {
		if errNone != nil {
			return nil, errors.Join(errNone, errAll)
		}
		return none, nil
	}
	set := append([]bool(nil), eligible...)
	for ev.misses < ev.opts.MaxEvaluations {
		var best *SplitCandidate
		drop := -1
		for i := range n {
			if !set[i] || ev.misses >= ev.opts.MaxEvaluations {
				continue
			}
			set[i] = false
			c, err := ev.evaluate(pr, set)
			set[i] = true
			if err == nil && c.Cost.Total < cur.Cost.Total && (best == nil || c.Cost.Total < best.Cost.Total) {
				best, drop = c, i
			}
		}
		if best == nil {
			break
		}
		cur, set[drop] = best, false
	}
	if errNone == nil && none.Cost.Total <= cur.Cost.Total {
		return none, nil
	}
	return cur, nil
}
