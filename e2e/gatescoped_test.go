package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// TestGateScopedCanaryThroughFrontDoor: `gatehouse dev` whose node group
// is both the canary and a scoped route group (one route table per spec;
// requests carry their spec's route version, not the group version),
// soak 5s, bounded load through the front door. A benign change to
// petstore, with traffic, while status-page (unchanged, so on the same
// route version in the candidate; its DNS upstream never answers, on
// both versions alike) has traffic too, is promoted healthy, status-page
// judged against the canary's own traffic before the soak. Then
// petstore's upstream at a closed port makes the canary answer 5xx; the
// gate rolls it back, the operation failing with the route named.
func TestGateScopedCanaryThroughFrontDoor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out, closed := gateDevConfig(t, 5*time.Second)
	cfg.ScopedRouteGroups = []string{cfg.NodeGroup}
	ep, _ := runDevAsync(t, ctx, cfg, out)
	alice := aliceCurl(t, out.String())
	status := func() int {
		req, _ := http.NewRequestWithContext(ctx, "GET", ep.FrontDoor+"/", nil)
		req.Host = "status.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	load := func(n int, req func() int) map[int]int {
		got := map[int]int{}
		for i := 0; i < n; i++ {
			got[req()]++
		}
		return got
	}
	const reports = "gatehouse_controlplane_outcome_reports_total"
	// reported waits until the accesslog sidecar has reported since
	// from and then nothing for 1.5s (it reports every second while it
	// has counts): everything sent before is counted.
	reported := func(from float64) {
		t.Helper()
		last, since := from, time.Now()
		waitUntil(t, 20*time.Second, "the outcome reports of the load", func() bool {
			if n := cpCounter(t, ctx, ep.ControlPlaneAdmin, reports); n != last {
				last, since = n, time.Now()
			}
			return last > from && time.Since(since) > 1500*time.Millisecond
		})
	}
	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	update := func(name, from, to string) *osbclient.Response {
		t.Helper()
		return soakUpdate(t, ctx, osb, ep.ControlPlaneAdmin, name, from, to)
	}
	lastOp := func(upd *osbclient.Response, name string) *osbclient.Response {
		t.Helper()
		return waitLastOp(t, ctx, osb, name, upd)
	}

	// Before: the canary's traffic on the last good version.
	from := cpCounter(t, ctx, ep.ControlPlaneAdmin, reports)
	if s := load(15, func() int { return alice.run(t, ctx) }); s[200] != 15 {
		t.Fatalf("petstore before the change: statuses %v", s)
	}
	before := load(15, status)
	if before[200] == 15 {
		t.Fatalf("status-page answered %v; the test needs its upstream down on both versions", before)
	}
	reported(from)

	// Benign change to petstore; status-page unchanged, same traffic.
	upd := update("petstore", `"headers":["user-agent","x-request-id"]`, `"headers":["user-agent","x-request-id","x-trace"]`)
	if s := load(15, func() int { return alice.run(t, ctx) }); s[200] != 15 {
		t.Fatalf("benign change: petstore statuses %v", s)
	}
	load(15, status)
	if final := lastOp(upd, "petstore"); final.State != "succeeded" {
		t.Fatalf("benign update of petstore ended %s: %s", final.State, final.Description)
	}
	st := cpRollout(t, ctx, ep.ControlPlaneAdmin)
	if st.Rollout.Verdict != controlplane.VerdictHealthy {
		t.Errorf("benign change: gate verdict %q (%+v), want healthy", st.Rollout.Verdict, st.Rollout.Routes)
	}
	var sawStatus bool
	for _, r := range st.Rollout.Routes {
		if strings.HasPrefix(r.Route, "status-page/") {
			sawStatus = true
			if r.Verdict != controlplane.VerdictHealthy || r.BaselineFrom != "canary_previous" {
				t.Errorf("unchanged status-page: %+v, want healthy against the canary's traffic before the soak", r)
			}
		}
	}
	if !sawStatus {
		t.Errorf("status-page's soak traffic was not judged: %+v", st.Rollout.Routes)
	}

	// A closed port: the canary answers 5xx; rolled back within the soak.
	endpoint := firstEndpoint(t, ctx, osb, "petstore")
	upd = update("petstore", `"`+endpoint+`"`, `"`+closed+`"`)
	waitUntil(t, 10*time.Second, "the front door on the closed port", func() bool { return alice.run(t, ctx) >= 500 })
	load(15, func() int { return alice.run(t, ctx) })
	waitUntil(t, 20*time.Second, "the gate's rollback", func() bool {
		return cpCounter(t, ctx, ep.ControlPlaneAdmin, "gatehouse_controlplane_gate_rollbacks_total") > 0
	})
	final := lastOp(upd, "petstore")
	if final.State != "failed" || !strings.Contains(final.Description, "health gate") ||
		!strings.Contains(final.Description, "route petstore/list-pets") || !strings.Contains(final.Description, "5xx rate") {
		t.Errorf("closed-port update ended %s: %q, want failed by the health gate naming the route", final.State, final.Description)
	}
	waitUntil(t, 10*time.Second, "the front door back on the good version", func() bool { return alice.run(t, ctx) == 200 })
}
