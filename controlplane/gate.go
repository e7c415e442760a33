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
	// counts by key since the soak started; keys of other versions are
	// not kept.
	counts map[accesslog.OutcomeKey]*accesslog.OutcomeCounts
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
	counts := map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}
	if good := cp.pub.Good(); good != nil {
		for k, c := range cp.window.counts {
			if k.NodeGroup == cp.cfg.CanaryGroup && k.Version == good.GroupVersion(k.NodeGroup) {
				counts[k] = c
			}
		}
	}
	cp.window = gateWindow{candidate: candidate, counts: counts}
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
			if cp.window.counts == nil {
				cp.window.counts = map[accesslog.OutcomeKey]*accesslog.OutcomeCounts{}
			}
			cp.window.add(r.Counts, func(k accesslog.OutcomeKey) bool {
				return k.NodeGroup == cp.cfg.CanaryGroup && k.Version == good.GroupVersion(k.NodeGroup)
			})
		}
		return false
	}
	relevant := func(k accesslog.OutcomeKey) bool {
		if k.NodeGroup == st.CanaryGroup && k.Version == st.CandidateVersion {
			return true
		}
		return good != nil && k.Version == good.GroupVersion(k.NodeGroup)
	}
	if full := cp.window.add(r.Counts, relevant); full > 0 {
		cp.metrics.outcomesIgnored.Add(float64(full))
	}
	cmp := cp.compare(st.CanaryGroup, st.CandidateVersion, good)
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
	for _, c := range counts {
		if !relevant(c.OutcomeKey) {
			continue
		}
		cur := w.counts[c.OutcomeKey]
		if cur == nil {
			if len(w.counts) >= maxGateKeys {
				full++
				continue
			}
			cur = &accesslog.OutcomeCounts{}
			w.counts[c.OutcomeKey] = cur
		}
		cur.Add(c.OutcomeCounts)
	}
	return full
}

// compare judges every route the canary served on the candidate, and
// every route of the candidate's changed specs, against its baseline.
func (cp *ControlPlane) compare(canary, candidate string, good *compile.Result) []RouteComparison {
	canaryPrev := ""
	if good != nil {
		canaryPrev = good.GroupVersion(canary)
	}
	var changed []string
	for _, s := range cp.changedSpecs() {
		changed = append(changed, s.spec)
	}
	return compareWindow(cp.window.counts, cp.cfg.Gate, canary, candidate, canaryPrev, changed)
}

// compareWindow is the gate's judgement, a pure function of the window:
// per route, the canary on the candidate against the fleet (or the canary
// on canaryPrev); changed are the names of the specs the candidate
// changed (a changed spec without traffic is reported as "<spec>/*").
func compareWindow(counts map[accesslog.OutcomeKey]*accesslog.OutcomeCounts, g Gate, canary, candidate, canaryPrev string, changed []string) []RouteComparison {
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
		case k.NodeGroup == canary && k.Version == candidate:
			get(k.Route).canary.Add(*c)
		case k.NodeGroup == canary && k.Version == canaryPrev:
			get(k.Route).prev.Add(*c)
		case k.NodeGroup != canary:
			get(k.Route).fleet.Add(*c)
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
