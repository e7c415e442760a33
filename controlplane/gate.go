package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/outcome"
)

// Gate are the thresholds of the health gate: during the soak the canary
// group on the candidate version is compared, per route, with the rest
// of the fleet on the last good version (or, where the fleet has too
// little traffic on the route, with the canary's own traffic on the last
// good version; without either, with zero). A rate of the canary that is
// more than the allowed increase above the baseline's rolls the canary
// back. Rates are fractions of requests (0.05 = 5 points).
type Gate struct {
	// Disabled turns the gate off: the soak promotes unless the canary
	// NACKs (the behaviour before the gate).
	Disabled bool
	// MinRequests is the canary traffic a route needs in the soak before
	// it is judged (default 20); a route with less is "unverified".
	MinRequests uint64
	// Max*Increase are the largest allowed increases of each rate
	// (defaults 0.05, 0.05, 0.10, 0.10).
	Max5xxIncrease             float64
	MaxUpstreamFailureIncrease float64
	MaxAuthDenyIncrease        float64
	MaxRateLimitedIncrease     float64
}

// Gate defaults.
const (
	DefaultGateMinRequests       = 20
	DefaultGateMax5xxIncrease    = 0.05
	DefaultGateMaxUFIncrease     = 0.05
	DefaultGateMaxDenyIncrease   = 0.10
	DefaultGateMaxRLimitIncrease = 0.10
)

func (g *Gate) defaults() {
	if g.MinRequests == 0 {
		g.MinRequests = DefaultGateMinRequests
	}
	if g.Max5xxIncrease <= 0 {
		g.Max5xxIncrease = DefaultGateMax5xxIncrease
	}
	if g.MaxUpstreamFailureIncrease <= 0 {
		g.MaxUpstreamFailureIncrease = DefaultGateMaxUFIncrease
	}
	if g.MaxAuthDenyIncrease <= 0 {
		g.MaxAuthDenyIncrease = DefaultGateMaxDenyIncrease
	}
	if g.MaxRateLimitedIncrease <= 0 {
		g.MaxRateLimitedIncrease = DefaultGateMaxRLimitIncrease
	}
}

// Route verdicts of the gate.
const (
	VerdictHealthy    = "healthy"
	VerdictBreach     = "breach"
	VerdictUnverified = "unverified" // too little canary traffic in the soak
)

// RouteComparison is one route's canary against its baseline.
type RouteComparison struct {
	Route    string                  `json:"route"`
	Canary   accesslog.OutcomeCounts `json:"canary"`
	Baseline accesslog.OutcomeCounts `json:"baseline"`
	// BaselineFrom says what the baseline is: "fleet", "canary_previous"
	// or "none".
	BaselineFrom string `json:"baseline_from"`
	Verdict      string `json:"verdict"`
	Reason       string `json:"reason,omitempty"`
}

// gateWindow is the traffic seen while one candidate soaks; owned by the
// loop goroutine.
type gateWindow struct {
	candidate string
	// counts by key since the soak started: the canary's on the
	// candidate or the last good version, the other groups' on the last
	// good version; keys of other versions are not kept.
	counts map[accesslog.OutcomeKey]*accesslog.OutcomeCounts
	// before is the canary's traffic on the last good version gathered
	// before the soak (between soaks, or in a soak a newer candidate
	// replaced): a baseline only, never the candidate's traffic, even
	// where the candidate serves a route at the same version (an
	// unchanged spec of a scoped route group).
	before map[accesslog.OutcomeKey]*accesslog.OutcomeCounts
	// served caches compile.Result.ServedVersion by result, group and
	// spec.
	served map[servedKey]string
}

type servedKey struct {
	res         *compile.Result
	group, spec string
}

// servedVersion is the version a request of group on route carries when
// res serves it (compile.Result.ServedVersion: the group version in the
// one route table, the spec's route version in a scoped route group);
// "" when res is nil or does not serve the route's spec to the group.
func (w *gateWindow) servedVersion(res *compile.Result, group, route string) string {
	if res == nil {
		return ""
	}
	spec, _, _ := strings.Cut(route, "/")
	k := servedKey{res: res, group: group, spec: spec}
	if v, ok := w.served[k]; ok {
		return v
	}
	v := res.ServedVersion(group, route)
	if w.served == nil || len(w.served) >= maxGateKeys {
		w.served = map[servedKey]string{}
	}
	w.served[k] = v
	return v
}

// gateVersions says which keys of the window count and as what: a key
// is the canary's candidate traffic when it carries the version the
// candidate serves the canary on its route, and last good traffic (the
// fleet's, or the canary's previous) when it carries the version the
// last good result serves its group on its route. Both come from
// compile.Result.ServedVersion, so a scoped route group (whose requests
// carry their spec's route version, not the group version) is judged
// and counted like a group with one route table.
type gateVersions struct {
	canary    string
	candidate func(route string) string
	good      func(group, route string) string
}

func (v gateVersions) isCandidate(k accesslog.OutcomeKey) bool {
	if k.NodeGroup != v.canary {
		return false
	}
	c := v.candidate(k.Route)
	return c != "" && k.Version == c
}

func (v gateVersions) isGood(k accesslog.OutcomeKey) bool {
	g := v.good(k.NodeGroup, k.Route)
	return g != "" && k.Version == g
}

// versions are the gate's versions for the canary group: cand is the
// result the canary is served (nil between soaks), good the last good.
func (cp *ControlPlane) versions(canary string, cand, good *compile.Result) gateVersions {
	w := &cp.window
	return gateVersions{
		canary:    canary,
		candidate: func(route string) string { return w.servedVersion(cand, canary, route) },
		good:      func(group, route string) string { return w.servedVersion(good, group, route) },
	}
}

// maxGateKeys bounds the window (reports carry at most
// outcome.MaxCounts keys each; the window keeps the relevant ones).
const maxGateKeys = 1 << 16

// onOutcome hands a report to the loop; never blocks (a full queue drops
// the report and counts it).
func (cp *ControlPlane) onOutcome(r outcome.Report) {
	select {
	case cp.outcomes <- r:
	default:
		cp.metrics.outcomesDropped.Inc()
	}
}

// startWindow begins the gate's window for a new candidate, keeping the
// canary's counts on the last good version gathered before it.
func (cp *ControlPlane) startWindow(candidate string) {
	before := map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}
	if good := cp.pub.Good(); good != nil {
		vs := cp.versions(cp.cfg.CanaryGroup, nil, good)
		for _, m := range []map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{cp.window.before, cp.window.counts} {
			for k, c := range m {
				if k.NodeGroup != cp.cfg.CanaryGroup || !vs.isGood(k) || (before[k] == nil && len(before) >= maxGateKeys) {
					continue
				}
				if before[k] == nil {
					before[k] = &accesslog.OutcomeCounts{}
				}
				before[k].Add(*c)
			}
		}
	}
	cp.window = gateWindow{candidate: candidate, counts: map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}, before: before}
}

// outcomeReported adds a report to the window and rolls the canary back
// on a breach. It reports whether it rolled back.
func (cp *ControlPlane) outcomeReported(ctx context.Context, r outcome.Report) bool {
	cp.metrics.outcomeReports.Inc()
	if !r.Authenticated && cp.cfg.TLS.ClientCAFile != "" {
		cp.metrics.outcomesIgnored.Inc()
		return false
	}
	st := cp.pub.State()
	if cp.cfg.Gate.Disabled || cp.cfg.CanaryGroup == "" {
		return false
	}
	good := cp.pub.Good()
	if st.CandidateVersion == "" || cp.window.candidate != st.CandidateVersion {
		// Between soaks: keep the canary's traffic on the good version,
		// the baseline of the next soak where the fleet has none.
		if good != nil {
			if cp.window.before == nil {
				cp.window.before = map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}
			}
			vs := cp.versions(cp.cfg.CanaryGroup, nil, good)
			addCounts(cp.window.before, r.Counts, func(k accesslog.OutcomeKey) bool {
				return k.NodeGroup == cp.cfg.CanaryGroup && vs.isGood(k)
			})
		}
		return false
	}
	vs := cp.versions(st.CanaryGroup, cp.pub.Served(st.CanaryGroup), good)
	relevant := func(k accesslog.OutcomeKey) bool { return vs.isCandidate(k) || vs.isGood(k) }
	if full := cp.window.add(r.Counts, relevant); full > 0 {
		cp.metrics.outcomesIgnored.Add(float64(full))
	}
	cmp := cp.compare(st.CanaryGroup, good)
	var breach *RouteComparison
	for i := range cmp {
		if cmp[i].Verdict == VerdictBreach {
			breach = &cmp[i]
			break
		}
	}
	cp.stateMu.Lock()
	if cp.state.Rollout.Phase == PhaseSoaking {
		cp.state.Rollout.Routes = cmp
	}
	cp.stateMu.Unlock()
	if breach == nil {
		return false
	}
	return cp.gateRollback(ctx, st.CanaryGroup, st.CandidateVersion, breach, cmp)
}

// add counts the relevant keys of a report; it returns how many were
// left out because the window is full.
func (w *gateWindow) add(counts []accesslog.Outcome, relevant func(accesslog.OutcomeKey) bool) (full int) {
	if w.counts == nil {
		w.counts = map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}
	}
	return addCounts(w.counts, counts, relevant)
}

// addCounts adds the relevant keys of counts to m, which holds at most
// maxGateKeys keys; it returns how many were left out.
func addCounts(m map[accesslog.OutcomeKey]*accesslog.OutcomeCounts, counts []accesslog.Outcome, relevant func(accesslog.OutcomeKey) bool) (full int) {
	for _, c := range counts {
		if !relevant(c.OutcomeKey) {
			continue
		}
		cur := m[c.OutcomeKey]
		if cur == nil {
			if len(m) >= maxGateKeys {
				full++
				continue
			}
			cur = &accesslog.OutcomeCounts{}
			m[c.OutcomeKey] = cur
		}
		cur.Add(c.OutcomeCounts)
	}
	return full
}

// compare judges every route the canary served on the candidate, and
// every route of the candidate's changed specs, against its baseline.
func (cp *ControlPlane) compare(canary string, good *compile.Result) []RouteComparison {
	var changed []string
	for _, s := range cp.changedSpecs() {
		changed = append(changed, s.spec)
	}
	vs := cp.versions(canary, cp.pub.Served(canary), good)
	return compareWindow(cp.window.counts, cp.window.before, cp.cfg.Gate, vs, changed)
}

// compareWindow is the gate's judgement, a pure function of the window:
// per route, the canary on the candidate against the fleet on the last
// good version (or the canary on the last good version: in the soak, or
// before it, from before), as vs tells the versions apart; changed are
// the names of the specs the candidate changed (a changed spec without
// traffic is reported as "<spec>/*").
func compareWindow(counts, before map[accesslog.OutcomeKey]*accesslog.OutcomeCounts, g Gate, vs gateVersions, changed []string) []RouteComparison {
	type acc struct {
		canary, fleet, prev accesslog.OutcomeCounts
	}
	routes := map[string]*acc{}
	get := func(r string) *acc {
		a := routes[r]
		if a == nil {
			a = &acc{}
			routes[r] = a
		}
		return a
	}
	for k, c := range counts {
		switch {
		case vs.isCandidate(k):
			get(k.Route).canary.Add(*c)
		case !vs.isGood(k):
		case k.NodeGroup == vs.canary:
			get(k.Route).prev.Add(*c)
		default:
			get(k.Route).fleet.Add(*c)
		}
	}
	for k, c := range before {
		if k.NodeGroup == vs.canary && vs.isGood(k) {
			get(k.Route).prev.Add(*c)
		}
	}
	inChanged := func(route string) bool {
		return slices.ContainsFunc(changed, func(spec string) bool { return strings.HasPrefix(route, spec+"/") })
	}
	for _, spec := range changed {
		seen := false
		for r := range routes {
			seen = seen || strings.HasPrefix(r, spec+"/")
		}
		if !seen {
			get(spec + "/*") // a changed spec without any traffic
		}
	}
	out := make([]RouteComparison, 0, len(routes))
	for name, a := range routes {
		if a.canary.Requests == 0 && !inChanged(name) {
			continue // only the fleet's traffic: not the candidate's concern
		}
		rc := RouteComparison{Route: name, Canary: a.canary, BaselineFrom: "none"}
		switch {
		case a.fleet.Requests >= g.MinRequests:
			rc.Baseline, rc.BaselineFrom = a.fleet, "fleet"
		case a.prev.Requests >= g.MinRequests:
			rc.Baseline, rc.BaselineFrom = a.prev, "canary_previous"
		}
		if a.canary.Requests < g.MinRequests {
			rc.Verdict = VerdictUnverified
			rc.Reason = fmt.Sprintf("%d canary requests in the soak, fewer than %d", a.canary.Requests, g.MinRequests)
		} else {
			rc.Verdict = VerdictHealthy
			for _, s := range []struct {
				name     string
				c, b     uint64
				maxDelta float64
			}{
				{"5xx", a.canary.Status5xx, rc.Baseline.Status5xx, g.Max5xxIncrease},
				{"upstream-failure", a.canary.UpstreamFailures, rc.Baseline.UpstreamFailures, g.MaxUpstreamFailureIncrease},
				{"auth-deny", a.canary.AuthDenied, rc.Baseline.AuthDenied, g.MaxAuthDenyIncrease},
				{"rate-limited", a.canary.RateLimited, rc.Baseline.RateLimited, g.MaxRateLimitedIncrease},
			} {
				cr := rate(s.c, a.canary.Requests)
				br := rate(s.b, rc.Baseline.Requests)
				if cr-br > s.maxDelta {
					rc.Verdict = VerdictBreach
					rc.Reason = fmt.Sprintf("route %s: %s rate %.1f%% (%d/%d) on the canary vs %.1f%% (%d/%d) baseline (%s); allowed increase %.1f points",
						name, s.name, 100*cr, s.c, a.canary.Requests, 100*br, s.b, rc.Baseline.Requests, rc.BaselineFrom, 100*s.maxDelta)
					break
				}
			}
		}
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}

func rate(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// changedSpecs are the candidate's specs the last good version does not
// have.
func (cp *ControlPlane) changedSpecs() []report {
	st := cp.pub.State()
	if st.CandidateVersion == "" {
		return nil
	}
	cand := cp.pub.Served(st.CanaryGroup)
	if cand == nil {
		return nil
	}
	good := cp.pub.Good()
	var out []report
	for _, s := range cand.Published() {
		if good == nil || !good.Has(s) {
			out = append(out, report{spec: s.Name, revision: s.Revision})
		}
	}
	return out
}

// gateRollback rolls the canary back after a breach and reports the
// changed specs failed with the breach.
func (cp *ControlPlane) gateRollback(ctx context.Context, canary, candidate string, b *RouteComparison, cmp []RouteComparison) bool {
	suspects := cp.changedSpecs()
	if err := cp.pub.Rollback(ctx); err != nil {
		cp.log.Error("health gate: rollback failed", "error", err)
		return false
	}
	cp.metrics.gateRollbacks.Inc()
	reason := fmt.Sprintf("health gate: canary group %s on version %s: %s", canary, candidate, b.Reason)
	cp.log.Warn("health gate breached; canary rolled back, the fleet keeps the last good version", "canary_group", canary, "version", candidate, "route", b.Route, "reason", reason)
	cp.stateMu.Lock()
	cp.state.Rollout = Rollout{Phase: PhaseRolledBack, CanaryGroup: canary, Candidate: candidate, Since: cp.cfg.Now(), Reason: reason, Routes: cmp, Verdict: VerdictBreach}
	for i, s := range cp.state.Specs {
		if slices.ContainsFunc(suspects, func(r report) bool { return r.spec == s.Name }) {
			cp.state.Specs[i].Published = false
			cp.state.Specs[i].Error = "rolled back: " + reason
		}
	}
	cp.stateMu.Unlock()
	reps := make([]report, 0, len(suspects))
	for _, s := range suspects {
		reps = append(reps, report{spec: s.spec, revision: s.revision, err: fmt.Errorf("rolled back: %s", reason)})
	}
	cp.report(reps)
	cp.window = gateWindow{}
	return true
}

// gateSummary is the verdict of a clean soak: "healthy" when every judged
// route is, with the unverified ones named.
func gateSummary(cmp []RouteComparison) (verdict, note string) {
	var unverified []string
	for _, c := range cmp {
		if c.Verdict == VerdictUnverified {
			unverified = append(unverified, c.Route)
		}
	}
	if len(unverified) > 0 {
		return VerdictUnverified, "promoted unverified (no or too little canary traffic in the soak): " + strings.Join(unverified, ", ")
	}
	return VerdictHealthy, ""
}
