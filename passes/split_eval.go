package passes

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ciphercut/ciphercut/ir"
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

// Key identifies an encrypted stage by the values it reads and gives
// (which determine its nodes): the key of stage-cost caches.
func (s StageSpec) Key() string {
	return strings.Join(s.Inputs, "\x00") + "\x01" + strings.Join(s.Outputs, "\x00")
}

// stageCost returns the cost of an encrypted stage, from the cache when
// possible.
func (ev *splitEvaluator) stageCost(s StageSpec) (StageCost, error) {
	key := s.Key()
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
	sg := ev.sg
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
	for _, s := range c.Stages {
		if s.Kind == StageEncrypted {
			c.Cut = s.Inputs
			break
		}
	}
	if len(c.Suffix) > 0 {
		c.SuffixCut = sg.crossing(pr.suffix, false)
	}
	var err error
	c.Cost, err = sg.cost(c.Stages, ev.opts.Link, ev.stageCost)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CostSplit predicts the latency of running the stages of a split of g:
// the data owner's plaintext stages at OwnerMACsPerSecond times
// link.ClientSpeed, each encrypted stage's cost from cost (encryption and
// decryption scaled by the client speed), its ciphertexts over
// link.Bandwidth and one round trip per encrypted stage.
func CostSplit(g *ir.Graph, stages []StageSpec, link Link, cost StageCoster) (SplitCost, error) {
	sg, err := newSplitGraph(g)
	if err != nil {
		return SplitCost{}, err
	}
	return sg.cost(stages, link.WithDefaults(), cost)
}

func (sg *splitGraph) cost(stages []StageSpec, link Link, cost StageCoster) (SplitCost, error) {
	var c SplitCost
	for _, s := range stages {
		if s.Kind != StageEncrypted {
			macs := 0.0
			for _, name := range s.Nodes {
				i, ok := sg.byName(name)
				if !ok {
					return c, fmt.Errorf("split %q: stage %s runs node %q, not in the graph", sg.g.Name, s.Kind, name)
				}
				macs += splitMACs(sg.nodes[i])
			}
			c.Owner += macs / (OwnerMACsPerSecond * link.ClientSpeed)
			continue
		}
		sc, err := cost(s)
		if err != nil {
			return c, err
		}
		c.Worker += sc.WorkerSeconds
		c.Encrypt += sc.EncryptSeconds / link.ClientSpeed
		c.Decrypt += sc.DecryptSeconds / link.ClientSpeed
		c.UploadBytes += sc.UploadBytes
		c.DownloadBytes += sc.DownloadBytes
		c.Bootstraps += sc.Bootstraps
		c.RoundTrips++
	}
	c.Upload = float64(c.UploadBytes) * 8 / link.Bandwidth
	c.Download = float64(c.DownloadBytes) * 8 / link.Bandwidth
	c.RoundTrip = float64(c.RoundTrips) * link.RTT
	c.Total = c.Owner + c.Encrypt + c.Upload + c.Worker + c.Download + c.Decrypt + c.RoundTrip
	return c, nil
}

// byName is the index of the node named name.
func (sg *splitGraph) byName(name string) (int, bool) {
	if sg.names == nil {
		sg.names = make(map[string]int, len(sg.nodes))
		for i, nd := range sg.nodes {
			sg.names[nd.Name] = i
		}
	}
	i, ok := sg.names[name]
	return i, ok
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
