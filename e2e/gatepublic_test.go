package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// TestGatePublicRouteThroughFrontDoor: a public route (ext_authz
// disabled, so no ext_authz metadata) names its version through the
// route's gatehouse.revision metadata and the ALS custom tag
// config_version, so the gate judges it. On one dev suite (its node group
// is the canary, soak 3s), under bounded load on petstore's public
// /healthz only: a benign change is promoted with petstore/health judged
// healthy (not unverified); a change pointing petstore's upstream at a
// closed port makes the canary answer 5xx on /healthz and is rolled back
// within the soak, the reason naming petstore/health.
func TestGatePublicRouteThroughFrontDoor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out, closed := gateDevConfig(t, 3*time.Second)
	ep, _ := runDevAsync(t, ctx, cfg, out)
	var health bannerCurl
	for _, c := range bannerCurls(t, out.String()) {
		if c.method == "GET" && strings.HasSuffix(c.url, "/healthz") {
			health = c
		}
	}
	if health.line == "" {
		t.Fatalf("no GET /healthz curl line in the banner:\n%s", out.String())
	}
	load := func(n int) map[int]int {
		statuses := map[int]int{}
		for i := 0; i < n; i++ {
			statuses[health.run(t, ctx)]++
		}
		return statuses
	}
	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	update := func(from, to string) *osbclient.Response {
		t.Helper()
		return soakUpdate(t, ctx, osb, ep.ControlPlaneAdmin, "petstore", from, to)
	}

	if s := load(15); s[200] != 15 {
		t.Fatalf("public route before any change: statuses %v", s)
	}
	// Benign: one more logged header on list-pets; /healthz keeps its 200s.
	upd := update(`"headers":["user-agent","x-request-id"]`, `"headers":["user-agent","x-request-id","x-trace"]`)
	if s := load(15); s[200] != 15 {
		t.Fatalf("benign change: statuses %v", s)
	}
	final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "petstore", upd.Operation)
	})
	if final.State != "succeeded" {
		t.Fatalf("benign update ended %s: %s", final.State, final.Description)
	}
	st := cpRollout(t, ctx, ep.ControlPlaneAdmin)
	var judged *controlplane.RouteComparison
	for i, r := range st.Rollout.Routes {
		if r.Route == "petstore/health" {
			judged = &st.Rollout.Routes[i]
		}
	}
	if judged == nil || judged.Verdict != controlplane.VerdictHealthy || judged.Canary.Requests < 10 {
		t.Fatalf("benign change: petstore/health judged %+v, want healthy with the canary's traffic (routes %+v)", judged, st.Rollout.Routes)
	}

	// A closed port: the public route answers 5xx on the canary.
	endpoint := firstEndpoint(t, ctx, osb, "petstore")
	upd = update(`"`+endpoint+`"`, `"`+closed+`"`)
	breach := time.Now()
	waitUntil(t, 10*time.Second, "the front door on the closed port", func() bool { return health.run(t, ctx) >= 500 })
	load(15)
	waitUntil(t, 20*time.Second, "the gate's rollback", func() bool {
		return cpCounter(t, ctx, ep.ControlPlaneAdmin, "gatehouse_controlplane_gate_rollbacks_total") > 0
	})
	t.Logf("closed port on a public route, load to rollback: %s", time.Since(breach).Round(time.Millisecond))
	final = waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "petstore", upd.Operation)
	})
	if final.State != "failed" || !strings.Contains(final.Description, "health gate") ||
		!strings.Contains(final.Description, "route petstore/health") || !strings.Contains(final.Description, "5xx rate") {
		t.Errorf("closed-port update ended %s: %q, want failed by the health gate naming petstore/health", final.State, final.Description)
	}
	waitUntil(t, 10*time.Second, "the front door back on the good version", func() bool { return health.run(t, ctx) == 200 })
}
