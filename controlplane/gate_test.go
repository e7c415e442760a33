package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/outcome"
)

// gateStart starts a control plane with a canary group and specs a and
// b, then changes a (a new candidate soaking at the canary). It returns
// the fleet's version and the candidate.
func gateStart(t *testing.T, soak time.Duration) (*harness, *grpc.ClientConn, string, string) {
	t.Helper()
	h := startControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: soak, Gate: controlplane.Gate{MinRequests: 10}},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80"), "b.yaml": specYAML("b", "b.example.com", "10.0.0.2:80")})
	h.waitServed("", func(string) bool { return true })
	v1 := goodVersion(h, "us-east-1")
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	st := h.waitRollout(controlplane.PhaseSoaking)
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return h, conn, v1, st.Rollout.Candidate
}

func goodVersion(h *harness, group string) string {
	if g := h.cp.Publisher().Good(); g != nil {
		return g.GroupVersion(group)
	}
	return ""
}

// waitPromoted waits until the fleet's last good version is the
// candidate and the rollout is idle.
func waitPromoted(t *testing.T, h *harness, candidate string) controlplane.State {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := h.cp.State(); st.Rollout.Phase == controlplane.PhaseIdle && goodVersion(h, "us-east-1") == candidate {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("candidate %s never promoted: %+v", candidate, h.cp.State().Rollout)
	return controlplane.State{}
}

func sendOutcomes(t *testing.T, conn *grpc.ClientConn, counts ...accesslog.Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := outcome.Send(ctx, conn, outcome.Report{NodeID: "al-1", Counts: counts}); err != nil {
		t.Fatal(err)
	}
}

func oc(group, version, route string, req, s5xx, uf, deny, rl uint64) accesslog.Outcome {
	return accesslog.Outcome{
		OutcomeKey:    accesslog.OutcomeKey{NodeGroup: group, Version: version, Route: route},
		OutcomeCounts: accesslog.OutcomeCounts{Requests: req, Status5xx: s5xx, UpstreamFailures: uf, AuthDenied: deny, RateLimited: rl},
	}
}

// TestGateBreachRollsBackCanary: the canary's 5xx rate on the candidate
// is far above the fleet's on the last good version for route a/api: the
// canary is rolled back at once (long before the soak ends), spec a is
// reported failed with the route and the numbers, b is untouched, the
// fleet never gets the candidate, and the breach is counted.
func TestGateBreachRollsBackCanary(t *testing.T) {
	h, conn, v1, v2 := gateStart(t, time.Hour)
	sendOutcomes(t, conn,
		oc("us-east-1", v1, "a/api", 200, 1, 0, 0, 0),
		oc("canary", v2, "a/api", 40, 40, 40, 0, 0),
	)
	st := h.waitRollout(controlplane.PhaseRolledBack)
	for _, want := range []string{"route a/api", "5xx rate 100.0% (40/40)", "0.5% (1/200) baseline (fleet)", "canary group canary", v2} {
		if !strings.Contains(st.Rollout.Reason, want) {
			t.Errorf("rollback reason %q lacks %q", st.Rollout.Reason, want)
		}
	}
	if st.Rollout.Verdict != controlplane.VerdictBreach || len(st.Rollout.Routes) == 0 {
		t.Errorf("rollout = %+v", st.Rollout)
	}
	for _, s := range st.Specs {
		switch s.Name {
		case "a":
			if s.Published || !strings.Contains(s.Error, "route a/api") {
				t.Errorf("spec a = %+v, want failed naming the route", s)
			}
		case "b":
			if !s.Published || s.Error != "" {
				t.Errorf("spec b = %+v, want untouched", s)
			}
		}
	}
	if served := h.cp.Publisher().State().Served; served["canary"] != v1 || goodVersion(h, "us-east-1") != v1 {
		t.Errorf("served after the gate's rollback = %v (good %s), want everyone on %s", served, goodVersion(h, "us-east-1"), v1)
	}
	if v := testutil.ToFloat64(mustCounter(t, h, "gatehouse_controlplane_gate_rollbacks_total")); v != 1 {
		t.Errorf("gate rollbacks = %v, want 1", v)
	}
}

// TestGateAuthDenySpikeRollsBack: a 401 spike on the canary (a wrong
// issuer) against the canary's own previous version (the fleet has no
// traffic on the route) rolls back.
func TestGateAuthDenySpikeRollsBack(t *testing.T) {
	h, conn, v1, v2 := gateStart(t, time.Hour)
	sendOutcomes(t, conn, oc("canary", v1, "a/api", 50, 0, 0, 2, 0))
	sendOutcomes(t, conn, oc("canary", v2, "a/api", 30, 0, 0, 30, 0))
	st := h.waitRollout(controlplane.PhaseRolledBack)
	if !strings.Contains(st.Rollout.Reason, "auth-deny rate 100.0% (30/30)") || !strings.Contains(st.Rollout.Reason, "canary_previous") {
		t.Errorf("rollback reason = %q", st.Rollout.Reason)
	}
}

// TestGateCleanSoakPromotes: a canary that does as well as the fleet is
// promoted after the soak; the verdict is healthy.
func TestGateCleanSoakPromotes(t *testing.T) {
	h, conn, v1, v2 := gateStart(t, 1500*time.Millisecond)
	sendOutcomes(t, conn,
		oc("us-east-1", v1, "a/api", 200, 2, 1, 10, 0),
		oc("canary", v2, "a/api", 50, 1, 0, 3, 0),
		oc("canary", v2, "b/api", 50, 0, 0, 0, 0),
	)
	st := waitPromoted(t, h, v2)
	if st.Rollout.Verdict != controlplane.VerdictHealthy {
		t.Errorf("verdict = %q (%+v), want healthy", st.Rollout.Verdict, st.Rollout.Routes)
	}
}

// TestGateNoTrafficPromotesUnverified: a change to a route without
// traffic is promoted, reported unverified, not healthy.
func TestGateNoTrafficPromotesUnverified(t *testing.T) {
	h, conn, _, v2 := gateStart(t, 1500*time.Millisecond)
	sendOutcomes(t, conn, oc("canary", v2, "b/api", 50, 0, 0, 0, 0)) // traffic elsewhere only
	st := waitPromoted(t, h, v2)
	if st.Rollout.Verdict != controlplane.VerdictUnverified || !strings.Contains(st.Rollout.Reason, "a/*") {
		t.Errorf("rollout = %+v, want unverified naming a/*", st.Rollout)
	}
	for _, r := range st.Rollout.Routes {
		if r.Route == "a/*" && r.Verdict != controlplane.VerdictUnverified {
			t.Errorf("a/* verdict = %s", r.Verdict)
		}
	}
}
