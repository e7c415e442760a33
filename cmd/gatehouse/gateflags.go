package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// gateFlags are the rollout health gate's thresholds (controlplane.Gate).
func gateFlags(f *pflag.FlagSet, g *controlplane.Gate) {
	f.BoolVar(&g.Disabled, "gate-off", false, "do not gate the soak on traffic outcomes (only a canary NACK rolls back); see docs/RUNBOOK.md")
	f.Uint64Var(&g.MinRequests, "gate-min-requests", controlplane.DefaultGateMinRequests, "canary requests a route needs in the soak to be judged (fewer: reported unverified)")
	f.Float64Var(&g.Max5xxIncrease, "gate-max-5xx-increase", controlplane.DefaultGateMax5xxIncrease, "largest allowed increase of a route's 5xx rate on the canary over its baseline (0.05 = 5 points)")
	f.Float64Var(&g.MaxUpstreamFailureIncrease, "gate-max-upstream-failure-increase", controlplane.DefaultGateMaxUFIncrease, "largest allowed increase of the upstream-failure rate (UF, UH, URX, UT)")
	f.Float64Var(&g.MaxAuthDenyIncrease, "gate-max-auth-deny-increase", controlplane.DefaultGateMaxDenyIncrease, "largest allowed increase of the auth-deny rate (401, 403)")
	f.Float64Var(&g.MaxRateLimitedIncrease, "gate-max-rate-limited-increase", controlplane.DefaultGateMaxRLimitIncrease, "largest allowed increase of the rate-limited rate (429, RL)")
}

// printGate prints the health gate's per-route comparison.
func printGate(w io.Writer, r controlplane.Rollout) {
	if r.Verdict != "" {
		fmt.Fprintf(w, "gate:       %s", r.Verdict)
		if r.Phase == controlplane.PhaseIdle && r.Reason != "" {
			fmt.Fprintf(w, " (%s)", r.Reason)
		}
		fmt.Fprintln(w)
	}
	if len(r.Routes) == 0 {
		return
	}
	fmt.Fprintf(w, "routes:     %-28s %-10s %-34s %s\n", "ROUTE", "VERDICT", "CANARY req/5xx/uf/deny/rl", "BASELINE req/5xx/uf/deny/rl (from)")
	for _, c := range r.Routes {
		fmt.Fprintf(w, "            %-28s %-10s %-34s %s\n", c.Route, c.Verdict,
			fmt.Sprintf("%d/%d/%d/%d/%d", c.Canary.Requests, c.Canary.Status5xx, c.Canary.UpstreamFailures, c.Canary.AuthDenied, c.Canary.RateLimited),
			fmt.Sprintf("%d/%d/%d/%d/%d (%s)", c.Baseline.Requests, c.Baseline.Status5xx, c.Baseline.UpstreamFailures, c.Baseline.AuthDenied, c.Baseline.RateLimited, c.BaselineFrom))
	}
}
