package accesslog

import (
	"sort"
	"sync"
)

// OutcomeKey is what outcomes are counted by: the node group and the
// config version that served the request, and its route.
type OutcomeKey struct {
	NodeGroup string `json:"node_group"`
	Version   string `json:"version"`
	Route     string `json:"route"`
}

// OutcomeCounts are the traffic outcomes of one key.
type OutcomeCounts struct {
	Requests         uint64 `json:"requests"`
	Status5xx        uint64 `json:"status_5xx"`
	UpstreamFailures uint64 `json:"upstream_failures"` // UF, UH, URX, UT
	AuthDenied       uint64 `json:"auth_denied"`       // 401, 403
	RateLimited      uint64 `json:"rate_limited"`      // 429, RL
}

// Add adds o to c.
func (c *OutcomeCounts) Add(o OutcomeCounts) {
	c.Requests += o.Requests
	c.Status5xx += o.Status5xx
	c.UpstreamFailures += o.UpstreamFailures
	c.AuthDenied += o.AuthDenied
	c.RateLimited += o.RateLimited
}

// Outcome is one key's counts.
type Outcome struct {
	OutcomeKey
	OutcomeCounts
}

// Outcomes aggregates records per OutcomeKey between two Takes, for the
// rollout gate. It keeps at most the maxKeys keys NewOutcomes was given;
// records of further keys are counted as dropped. Safe for concurrent
// use; Add takes one short lock and never blocks on I/O.
type Outcomes struct {
	mu      sync.Mutex
	max     int
	m       map[OutcomeKey]*OutcomeCounts
	dropped uint64
}

// DefaultOutcomeKeys bounds an Outcomes built with maxKeys <= 0.
const DefaultOutcomeKeys = 4096

// NewOutcomes returns an empty aggregate of at most maxKeys keys.
func NewOutcomes(maxKeys int) *Outcomes {
	if maxKeys <= 0 {
		maxKeys = DefaultOutcomeKeys
	}
	return &Outcomes{max: maxKeys, m: map[OutcomeKey]*OutcomeCounts{}}
}

// MaxOutcomeVersionLen and MaxOutcomeRouteLen bound a key's strings: the
// control plane's versions are 16 hex digits and route ids two names of
// at most 63 bytes, so longer values (an ALS peer's, not ours) cannot
// name a version the gate knows and are not counted; with at most
// DefaultOutcomeKeys keys the aggregate stays a few MB at worst.
const (
	MaxOutcomeVersionLen = 64
	MaxOutcomeRouteLen   = 256
)

// Classify returns the counts of one record. Records without a config
// version or a route (no route matched, or no gatehouse config), or with
// one longer than the bounds above, count nothing: they cannot be
// attributed to a version.
func Classify(r *Record) (OutcomeKey, OutcomeCounts, bool) {
	if r.ConfigVersion == "" || r.Route == "" || r.Kind == "tcp" ||
		len(r.ConfigVersion) > MaxOutcomeVersionLen || len(r.Route) > MaxOutcomeRouteLen {
		return OutcomeKey{}, OutcomeCounts{}, false
	}
	c := OutcomeCounts{Requests: 1}
	if r.Status >= 500 && r.Status < 600 {
		c.Status5xx = 1
	}
	if hasFlag(r.ResponseFlags, "UF") || hasFlag(r.ResponseFlags, "UH") || hasFlag(r.ResponseFlags, "URX") || hasFlag(r.ResponseFlags, "UT") {
		c.UpstreamFailures = 1
	}
	if r.Status == 401 || r.Status == 403 {
		c.AuthDenied = 1
	}
	if r.Status == 429 || hasFlag(r.ResponseFlags, "RL") {
		c.RateLimited = 1
	}
	return OutcomeKey{NodeGroup: r.NodeGroup, Version: r.ConfigVersion, Route: r.Route}, c, true
}

// Add counts one record.
func (o *Outcomes) Add(r *Record) {
	k, c, ok := Classify(r)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.m[k]
	if cur == nil {
		if len(o.m) >= o.max {
			o.dropped++
			return
		}
		cur = &OutcomeCounts{}
		o.m[k] = cur
	}
	cur.Add(c)
}

// Take returns the counts since the last Take, sorted by key, and the
// number of records dropped for want of a key; the aggregate starts over.
func (o *Outcomes) Take() ([]Outcome, uint64) {
	o.mu.Lock()
	m, dropped := o.m, o.dropped
	o.m, o.dropped = make(map[OutcomeKey]*OutcomeCounts, len(m)), 0
	o.mu.Unlock()
	out := make([]Outcome, 0, len(m))
	for k, c := range m {
		out = append(out, Outcome{k, *c})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].OutcomeKey, out[j].OutcomeKey
		if a.NodeGroup != b.NodeGroup {
			return a.NodeGroup < b.NodeGroup
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Route < b.Route
	})
	return out, dropped
}
