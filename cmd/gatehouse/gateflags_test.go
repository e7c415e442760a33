package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// TestRolloutStatusPrintsGate: `gatehouse rollout status` shows the
// health gate's per-route comparison and verdict.
func TestRolloutStatusPrintsGate(t *testing.T) {
	st := controlplane.State{Rollout: controlplane.Rollout{
		Phase: controlplane.PhaseRolledBack, CanaryGroup: "canary", Candidate: "v2", Verdict: controlplane.VerdictBreach,
		Reason: "health gate: canary group canary on version v2: route shop/pay: 5xx rate 100.0% (40/40)",
		Routes: []controlplane.RouteComparison{
			{Route: "shop/pay", Verdict: controlplane.VerdictBreach, BaselineFrom: "fleet",
				Canary:   accesslog.OutcomeCounts{Requests: 40, Status5xx: 40, UpstreamFailures: 40},
				Baseline: accesslog.OutcomeCounts{Requests: 200, Status5xx: 1}},
			{Route: "shop/*", Verdict: controlplane.VerdictUnverified, BaselineFrom: "none"},
		},
	}}
	var b bytes.Buffer
	printRollout(&b, st, map[string]string{"canary": "v1"}, time.Now())
	out := b.String()
	for _, want := range []string{"gate:       breach", "shop/pay", "40/40/40/0/0", "200/1/0/0/0 (fleet)", "shop/*", "unverified", "route shop/pay: 5xx rate 100.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
}
