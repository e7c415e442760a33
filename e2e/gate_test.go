package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// cpRollout reads the control plane's rollout state and one metric.
func cpRollout(t *testing.T, ctx context.Context, admin string) controlplane.State {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", admin+"/debug/specs", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st controlplane.State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// cpCounter reads one counter of the control plane (0 when absent).
func cpCounter(t *testing.T, ctx context.Context, admin, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return f
		}
	}
	return 0
}

// TestGateWrongIssuerRollsBackThroughFrontDoor: `gatehouse dev` with its
// node group as the canary (soak 3s). Alice's requests through the front
// door succeed on the current version and are reported by the accesslog
// sidecar; a spec update with a wrong JWT issuer reaches the canary, the
// same bounded load now gets 401, the control plane compares with the
// canary's previous traffic and rolls back within the soak: the update's
// operation fails with a description naming the route and the numbers,
// and the front door serves 200 again.
func TestGateWrongIssuerRollsBackThroughFrontDoor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out := devConfig(t)
	cfg.CanaryGroup, cfg.Soak = cfg.NodeGroup, 3*time.Second
	cfg.Gate = controlplane.Gate{MinRequests: 10}
	ep, _ := runDevAsync(t, ctx, cfg, out)
	alice := aliceCurl(t, out.String())
	load := func(n int, want int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if got := alice.run(t, ctx); got != want {
				t.Fatalf("request %d: status %d, want %d", i, got, want)
			}
		}
	}
	load(15, 200)
	waitUntil(t, 20*time.Second, "an outcome report at the control plane", func() bool {
		return cpCounter(t, ctx, ep.ControlPlaneAdmin, "gatehouse_controlplane_outcome_reports_total") > 0
	})

	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	inst, err := osb.Instance(ctx, "petstore")
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(inst.Parameters), "https://idp.example.com/", "https://idp.example.org/", 1)
	if changed == string(inst.Parameters) {
		t.Fatal("the petstore spec has no issuer to change")
	}
	upd, err := osb.Update(ctx, "petstore", json.RawMessage(changed))
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	waitUntil(t, 20*time.Second, "the canary soaking the wrong issuer", func() bool {
		return cpRollout(t, ctx, ep.ControlPlaneAdmin).Rollout.Phase == controlplane.PhaseSoaking
	})
	breach := time.Now()
	// The front door follows the canary's xDS: the wrong issuer answers 401.
	waitUntil(t, 10*time.Second, "the front door on the candidate", func() bool { return alice.run(t, ctx) == 401 })
	load(15, 401)
	// The rollout phase may move on at once (the broker's next revision);
	// the gate's counter and the operation keep the verdict.
	waitUntil(t, 20*time.Second, "the gate's rollback", func() bool {
		return cpCounter(t, ctx, ep.ControlPlaneAdmin, "gatehouse_controlplane_gate_rollbacks_total") > 0
	})
	t.Logf("wrong issuer load to rollback: %s", time.Since(breach).Round(time.Millisecond))
	final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "petstore", upd.Operation)
	})
	if final.State != "failed" {
		t.Errorf("update ended %s: %q, want failed", final.State, final.Description)
	}
	for _, want := range []string{"health gate", "route petstore/list-pets", "auth-deny rate 100.0%", "canary_previous"} {
		if !strings.Contains(final.Description, want) {
			t.Errorf("operation description %q lacks %q", final.Description, want)
		}
	}
	waitUntil(t, 10*time.Second, "the front door back on the good version", func() bool { return alice.run(t, ctx) == 200 })
}

// TestGateThroughFrontDoor: the other acceptance cases, on one dev suite
// (its node group is the canary, soak 3s) under bounded load through the
// front door: a benign change with traffic is promoted healthy; a change
// to a spec without traffic is promoted unverified; a change pointing the
// route at a closed port makes the canary answer 5xx and is rolled back
// within the soak, the reason naming the route.
func TestGateThroughFrontDoor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out, closed := gateDevConfig(t, 3*time.Second)
	ep, _ := runDevAsync(t, ctx, cfg, out)
	var alice bannerCurl
	for _, c := range bannerCurls(t, out.String()) {
		if c.method == "GET" && strings.Contains(c.line, "$ALICE") {
			alice = c
		}
	}
	osb := &osbclient.Client{BaseURL: ep.Broker, Username: ep.BrokerUser, Password: ep.BrokerPassword}
	update := func(name, from, to string) *osbclient.Response {
		t.Helper()
		return soakUpdate(t, ctx, osb, ep.ControlPlaneAdmin, name, from, to)
	}
	promoted := func(upd *osbclient.Response, name string) controlplane.State {
		t.Helper()
		final := waitLastOp(t, ctx, osb, name, upd)
		if final.State != "succeeded" {
			t.Fatalf("update of %s ended %s: %s", name, final.State, final.Description)
		}
		return cpRollout(t, ctx, ep.ControlPlaneAdmin)
	}
	load := func(n int) (statuses map[int]int) {
		statuses = map[int]int{}
		for i := 0; i < n; i++ {
			statuses[alice.run(t, ctx)]++
		}
		return statuses
	}

	// Benign: one more logged header; traffic keeps its outcomes.
	upd := update("petstore", `"headers":["user-agent","x-request-id"]`, `"headers":["user-agent","x-request-id","x-trace"]`)
	if s := load(15); s[200] != 15 {
		t.Fatalf("benign change: statuses %v", s)
	}
	st := promoted(upd, "petstore")
	if st.Rollout.Verdict != controlplane.VerdictHealthy {
		t.Errorf("benign change: gate verdict %q (%+v), want healthy", st.Rollout.Verdict, st.Rollout.Routes)
	}

	// No traffic: a change to the status page nobody calls.
	upd = update("status-page", `50/second`, `40/second`)
	st = promoted(upd, "status-page")
	if st.Rollout.Verdict != controlplane.VerdictUnverified || !strings.Contains(st.Rollout.Reason, "status-page/") {
		t.Errorf("no-traffic change: rollout %+v, want unverified naming status-page", st.Rollout)
	}

	// A closed port: the canary answers 5xx; rolled back within the soak.
	endpoint := firstEndpoint(t, ctx, osb, "petstore")
	upd = update("petstore", `"`+endpoint+`"`, `"`+closed+`"`)
	breach := time.Now()
	waitUntil(t, 10*time.Second, "the front door on the closed port", func() bool { return alice.run(t, ctx) >= 500 })
	load(15)
	waitUntil(t, 20*time.Second, "the gate's rollback", func() bool {
		return cpCounter(t, ctx, ep.ControlPlaneAdmin, "gatehouse_controlplane_gate_rollbacks_total") > 0
	})
	t.Logf("closed port load to rollback: %s", time.Since(breach).Round(time.Millisecond))
	final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "petstore", upd.Operation)
	})
	if final.State != "failed" || !strings.Contains(final.Description, "health gate") ||
		!strings.Contains(final.Description, "route petstore/list-pets") || !strings.Contains(final.Description, "5xx rate") {
		t.Errorf("closed-port update ended %s: %q, want failed by the health gate naming the route", final.State, final.Description)
	}
	waitUntil(t, 10*time.Second, "the front door back on the good version", func() bool { return alice.run(t, ctx) == 200 })
}

// soakUpdate changes the first from in instance name's parameters to to,
// sends the OSB update and waits until the canary soaks it.
func soakUpdate(t *testing.T, ctx context.Context, osb *osbclient.Client, cpAdmin, name, from, to string) *osbclient.Response {
	t.Helper()
	inst, err := osb.Instance(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(inst.Parameters), from, to, 1)
	if changed == string(inst.Parameters) {
		t.Fatalf("%s: no %q to change", name, from)
	}
	upd, err := osb.Update(ctx, name, json.RawMessage(changed))
	if err != nil {
		t.Fatalf("update %s: %v", name, err)
	}
	waitUntil(t, 20*time.Second, "the canary soaking "+name, func() bool {
		return cpRollout(t, ctx, cpAdmin).Rollout.Phase == controlplane.PhaseSoaking
	})
	return upd
}

// gateDevConfig is a dev suite whose node group is the canary (soak as
// given, at least 10 requests per route) and which may point upstreams at
// closed, a loopback port nothing listens on.
func gateDevConfig(t *testing.T, soak time.Duration) (cfg dev.Config, out *lockedBuffer, closed string) {
	t.Helper()
	closed = testenv.ClosedAddr(t)
	cfg, out = devConfig(t)
	cfg.CanaryGroup, cfg.Soak = cfg.NodeGroup, soak
	cfg.Gate = controlplane.Gate{MinRequests: 10}
	cfg.UpstreamAllow = []string{closed}
	return cfg, out, closed
}

// firstEndpoint is the first endpoint of the first upstream of instance
// name, as the broker holds its parameters.
func firstEndpoint(t *testing.T, ctx context.Context, osb *osbclient.Client, name string) string {
	t.Helper()
	inst, err := osb.Instance(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Spec struct {
			Upstreams []struct {
				Endpoints []string `json:"endpoints"`
			} `json:"upstreams"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(inst.Parameters, &p); err != nil || len(p.Spec.Upstreams) == 0 || len(p.Spec.Upstreams[0].Endpoints) == 0 {
		t.Fatalf("%s parameters: %v %s", name, err, inst.Parameters)
	}
	return p.Spec.Upstreams[0].Endpoints[0]
}

// waitLastOp polls the OSB operation upd of instance name until it ends.
func waitLastOp(t *testing.T, ctx context.Context, osb *osbclient.Client, name string, upd *osbclient.Response) *osbclient.Response {
	t.Helper()
	return waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, name, upd.Operation)
	})
}
