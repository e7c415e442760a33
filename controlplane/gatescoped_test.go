package controlplane_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
)

// scopedGate is a control plane with the canary group "canary", the
// fleet group "us-east-1" (scoped groups as given) and specs a and b,
// with a changed and soaking at the canary. good is the last good
// result, cand the candidate the canary is served.
type scopedGate struct {
	h          *harness
	conn       *grpc.ClientConn
	good, cand *compile.Result
}

// startScopedGate starts it; before, when set, runs on the last good
// version before a changes (its reports are counted before the soak).
func startScopedGate(t *testing.T, soak time.Duration, scoped []string, before func(h *harness, conn *grpc.ClientConn, good *compile.Result)) scopedGate {
	t.Helper()
	h := startControlPlane(t, controlplane.Config{CanaryGroup: "canary", Soak: soak, Gate: controlplane.Gate{MinRequests: 10},
		Compile: compile.Options{ScopedRouteGroups: scoped}},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80"), "b.yaml": specYAML("b", "b.example.com", "10.0.0.2:80")})
	h.waitServed("", func(string) bool { return true })
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	good := h.cp.Publisher().Good()
	if before != nil {
		before(h, conn, good)
	}
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	h.waitRollout(controlplane.PhaseSoaking)
	return scopedGate{h: h, conn: conn, good: good, cand: h.cp.Publisher().Served("canary")}
}

// waitOutcomeReports waits until the control plane's loop has taken n
// outcome reports.
func waitOutcomeReports(t *testing.T, h *harness, n float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if testutil.ToFloat64(mustCounter(t, h, "gatehouse_controlplane_outcome_reports_total")) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the control plane never took %v outcome reports", n)
}

func routeComparison(st controlplane.State, route string) (controlplane.RouteComparison, bool) {
	for _, r := range st.Rollout.Routes {
		if r.Route == route {
			return r, true
		}
	}
	return controlplane.RouteComparison{}, false
}

// TestGateScopedCanaryBreachRollsBack: the canary group is a scoped route
// group (the control plane starts; it used to refuse), so its requests
// carry spec a's route version, not the group version. Its 5xx on a/r
// against the fleet's on the last good version rolls it back at once,
// the reason naming the route; a is reported failed, b untouched, and
// everyone is back on the last good version.
func TestGateScopedCanaryBreachRollsBack(t *testing.T) {
	g := startScopedGate(t, time.Hour, []string{"canary"}, nil)
	canaryV := g.cand.ServedVersion("canary", "a/r")
	if canaryV == "" || canaryV == g.cand.GroupVersion("canary") {
		t.Fatalf("canary serves a/r at %q, group version %q: not the scoped layout", canaryV, g.cand.GroupVersion("canary"))
	}
	sendOutcomes(t, g.conn,
		oc("us-east-1", g.good.ServedVersion("us-east-1", "a/r"), "a/r", 200, 1, 0, 0, 0),
		oc("canary", canaryV, "a/r", 40, 40, 40, 0, 0),
	)
	st := g.h.waitRollout(controlplane.PhaseRolledBack)
	for _, want := range []string{"route a/r", "5xx rate 100.0% (40/40)", "0.5% (1/200) baseline (fleet)", "canary group canary"} {
		if !strings.Contains(st.Rollout.Reason, want) {
			t.Errorf("rollback reason %q lacks %q", st.Rollout.Reason, want)
		}
	}
	for _, s := range st.Specs {
		switch s.Name {
		case "a":
			if s.Published || !strings.Contains(s.Error, "route a/r") {
				t.Errorf("spec a = %+v, want failed naming the route", s)
			}
		case "b":
			if !s.Published || s.Error != "" {
				t.Errorf("spec b = %+v, want untouched", s)
			}
		}
	}
	if served := g.h.cp.Publisher().State().Served; served["canary"] != g.good.GroupVersion("canary") || g.h.cp.Publisher().Good() != g.good {
		t.Errorf("served after the gate's rollback = %v, want everyone on the last good version", served)
	}
}

// TestGateScopedCanaryUnchangedSpecHealthyPromotes: in a scoped canary
// group the unchanged spec b keeps its route version in the candidate.
// A benign change to a, with healthy traffic on a and on b, is promoted
// healthy; b's soak traffic counts as the candidate's, and the canary's
// 5xx on b before the soak (on the same version) neither counts as the
// candidate's nor rolls the change of a back.
func TestGateScopedCanaryUnchangedSpecHealthyPromotes(t *testing.T) {
	g := startScopedGate(t, 1500*time.Millisecond, []string{"canary"}, func(h *harness, conn *grpc.ClientConn, good *compile.Result) {
		sendOutcomes(t, conn, oc("canary", good.ServedVersion("canary", "b/r"), "b/r", 20, 20, 0, 0, 0))
		waitOutcomeReports(t, h, 1)
	})
	bV := g.cand.ServedVersion("canary", "b/r")
	if bV == "" || bV != g.good.ServedVersion("canary", "b/r") {
		t.Fatalf("b/r at %q in the candidate, %q in the last good: want the same spec route version", bV, g.good.ServedVersion("canary", "b/r"))
	}
	fleetV := g.good.ServedVersion("us-east-1", "a/r")
	sendOutcomes(t, g.conn,
		oc("us-east-1", fleetV, "a/r", 200, 2, 1, 10, 0),
		oc("us-east-1", fleetV, "b/r", 200, 0, 0, 0, 0),
		oc("canary", g.cand.ServedVersion("canary", "a/r"), "a/r", 50, 1, 0, 3, 0),
		oc("canary", bV, "b/r", 50, 0, 0, 0, 0),
	)
	st := waitPromoted(t, g.h, g.cand.GroupVersion("us-east-1"))
	if st.Rollout.Verdict != controlplane.VerdictHealthy {
		t.Errorf("verdict = %q (%+v), want healthy", st.Rollout.Verdict, st.Rollout.Routes)
	}
	for _, route := range []string{"a/r", "b/r"} {
		r, ok := routeComparison(st, route)
		if !ok || r.Verdict != controlplane.VerdictHealthy || r.Canary.Requests != 50 || r.BaselineFrom != "fleet" {
			t.Errorf("%s = %+v (found %v), want healthy on the canary's 50 soak requests against the fleet", route, r, ok)
		}
	}
	if v := testutil.ToFloat64(mustCounter(t, g.h, "gatehouse_controlplane_gate_rollbacks_total")); v != 0 {
		t.Errorf("gate rollbacks = %v, want 0", v)
	}
}

// TestGateScopedFleetBaseline: the fleet group is a scoped route group,
// so its requests carry spec a's route version. Its traffic on the last
// good version is the baseline: a canary with the fleet's 50% 5xx on a/r
// is not a breach, and the candidate is promoted healthy against the
// fleet, whether the canary has one route table or is scoped too.
func TestGateScopedFleetBaseline(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scoped []string
	}{
		{"canary one table", []string{"us-east-1"}},
		{"canary scoped", []string{"us-east-1", "canary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startScopedGate(t, 1500*time.Millisecond, tc.scoped, nil)
			fleetV := g.good.ServedVersion("us-east-1", "a/r")
			if fleetV == "" || fleetV == g.good.GroupVersion("us-east-1") {
				t.Fatalf("the fleet serves a/r at %q, group version %q: not the scoped layout", fleetV, g.good.GroupVersion("us-east-1"))
			}
			sendOutcomes(t, g.conn,
				oc("us-east-1", fleetV, "a/r", 200, 100, 0, 0, 0),
				oc("canary", g.cand.ServedVersion("canary", "a/r"), "a/r", 40, 20, 0, 0, 0),
			)
			st := waitPromoted(t, g.h, g.cand.GroupVersion("us-east-1"))
			r, ok := routeComparison(st, "a/r")
			if !ok || r.Verdict != controlplane.VerdictHealthy || r.BaselineFrom != "fleet" || r.Baseline.Requests != 200 {
				t.Errorf("a/r = %+v (found %v), want healthy against the fleet's 200 requests", r, ok)
			}
		})
	}
}
