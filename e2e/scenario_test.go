package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

const petstore = "petstore.example.com"

func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := startSuite(t, ctx)

	s.node = startEnvoyNode(t, ctx, s.ep.XDS, envoyTLS(t, s.ep.PKI), "e2e-envoy", s.ep.NodeGroup)
	cfg := s.node.waitFor(t, 30*time.Second, "listener, routes, clusters and endpoints", func(c nodeConfig) bool {
		rc := c.Routes["gatehouse_routes"]
		return c.Listeners["gatehouse_http"] != nil && rc != nil && selectVirtualHost(rc, petstore) != nil &&
			c.CLA["petstore/api"] != nil && c.Clusters["gatehouse_authz"] != nil
	})
	s.connectSidecars(ctx, cfg)
	s.checkRefusedWithoutClientCert(ctx)

	// The sidecars learn their config over xDS independently of the node;
	// wait until authz knows the routes (a public route never reaches it).
	waitUntil(t, 20*time.Second, "authz policies loaded", func() bool {
		o := s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets", Headers: map[string]string{"authorization": "Bearer " + s.token("probe", []string{"pets:read"}, nil)}})
		return o.Status == 200
	})

	type want struct {
		name     string
		out      outcome
		subject  string
		decision string
	}
	var seen []want
	check := func(name string, o outcome, status int, subject, decision string) outcome {
		t.Helper()
		if o.Status != status {
			t.Fatalf("%s: status %d (reason %q, metadata %v), want %d", name, o.Status, o.Reason, o.Metadata, status)
		}
		seen = append(seen, want{name, o, subject, decision})
		return o
	}

	// Public route: ext_authz is off for it; the upstream answers. A
	// client's own identity headers never reach it.
	o := check("public", s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/healthz", Headers: spoofed(nil)}), 200, "", "")
	if o.Route != "petstore/health" || o.Metadata != nil {
		t.Fatalf("public route: route %q, authz metadata %v", o.Route, o.Metadata)
	}
	noSpoofedHeaders(t, "public route", o)
	// Missing token: 401.
	check("missing token", s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets"}), 401, "", "deny")
	// Wrong scope: authenticated, then denied by the rules.
	check("wrong scope", s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets",
		Headers: map[string]string{"authorization": "Bearer " + s.token("carol", []string{"pets:write"}, nil)}}), 403, "carol", "deny")
	// The right scope: allowed, and the upstream sees the forwarded claim.
	o = check("right scope", s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets",
		Headers: map[string]string{"authorization": "Bearer " + s.token("alice", []string{"pets:read"}, nil), "user-agent": "e2e/1"}}), 200, "alice", "allow")
	if h, _ := o.Upstream["headers"].(map[string]any); h["x-user-id"] != "alice" {
		t.Fatalf("upstream headers %v: want x-user-id alice (forwardClaims)", h)
	}
	// The verified claim wins over one the client sent, and survives the
	// removal of the client's.
	o = s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets",
		Headers: spoofed(map[string]string{"authorization": "Bearer " + s.token("alice", []string{"pets:read"}, nil)})})
	if h, _ := o.Upstream["headers"].(map[string]any); o.Status != 200 || h["x-user-id"] != "alice" || h["x-gatehouse-subject"] != nil {
		t.Fatalf("jwt with a spoofed x-user-id: status %d, upstream headers %v: want x-user-id alice and no x-gatehouse-subject", o.Status, h)
	}

	// An API key from an OSB binding made the way platforms without
	// asynchronous bindings make it (no accepts_incomplete): 201 with the
	// key, allowed once binding last_operation says succeeded.
	bind, err := s.osb.BindSync(ctx, "petstore", "e2e-binding", "partners", map[string]string{"plan": "gold"})
	if err != nil || bind.Code != 201 {
		t.Fatalf("bind without accepts_incomplete: %+v %v, want 201", bind, err)
	}
	final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.BindingLastOperation(ctx, "petstore", "e2e-binding", "")
	})
	if final.State != "succeeded" {
		t.Fatalf("binding ended %s: %s", final.State, final.Description)
	}
	creds := bind.Credentials
	if creds == nil || creds.APIKey == "" {
		t.Fatalf("the 201 binding carries no api_key: %+v", creds)
	}
	if creds.Header != "x-api-key" || len(creds.Hosts) == 0 || creds.Hosts[0] != petstore {
		t.Fatalf("binding credentials %+v: want header x-api-key and host %s", creds, petstore)
	}
	keyReq := httpRequest{Method: "GET", Host: petstore, Path: "/pets", Headers: map[string]string{creds.Header: creds.APIKey}}
	waitUntil(t, 10*time.Second, "the bound API key reaches the authz sidecar", func() bool { return s.do(ctx, keyReq).Status == 200 })
	o = check("bound api key", s.do(ctx, keyReq), 200, creds.APIKeyID, "allow")
	if o.Metadata["apikey_id"] != creds.APIKeyID || o.Metadata["kind"] != "apiKey" {
		t.Fatalf("api key metadata %v, want apikey_id %s", o.Metadata, creds.APIKeyID)
	}
	// An API-key caller cannot pose as a JWT user either.
	o = s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets", Headers: spoofed(map[string]string{creds.Header: creds.APIKey})})
	if o.Status != 200 {
		t.Fatalf("api key with spoofed headers: status %d (%s)", o.Status, o.Reason)
	}
	noSpoofedHeaders(t, "api-key route", o)
	// Revoked: unbind, then the same key is refused.
	unbind, err := s.osb.Unbind(ctx, "petstore", "e2e-binding")
	if err != nil {
		t.Fatalf("unbind: %v", err)
	}
	final = waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.BindingLastOperation(ctx, "petstore", "e2e-binding", unbind.Operation)
	})
	if final.Code != 410 && final.State != "succeeded" {
		t.Fatalf("unbind ended %s: %s", final.State, final.Description)
	}
	waitUntil(t, 10*time.Second, "the revoked key is refused", func() bool { return s.do(ctx, keyReq).Status == 401 })
	check("revoked api key", s.do(ctx, keyReq), 401, "", "deny")

	// adopt-pet: token bucket, 10/minute with a burst of 3. Back to back,
	// three pass and the rest of the eleven are limited.
	adopter := s.token("dave", nil, []string{"adopters"})
	var statuses []int
	for i := 0; i < 11; i++ {
		o := s.do(ctx, httpRequest{Method: "POST", Host: petstore, Path: "/pets/adopt", Headers: map[string]string{"authorization": "Bearer " + adopter}})
		statuses = append(statuses, o.Status)
		if i == 0 {
			check("first adopt", o, 200, "dave", "allow")
		}
		if i == 10 {
			check("11th adopt", o, 429, "dave", "allow")
		}
	}
	for i, st := range statuses {
		if want := map[bool]int{true: 200, false: 429}[i < 3]; st != want {
			t.Fatalf("adopt statuses %v: request %d got %d, want %d (burst 3)", statuses, i+1, st, want)
		}
	}

	// Every one of those requests is findable in the access log with the
	// right subject and decision.
	for _, w := range seen {
		var rec []logRecord
		waitUntil(t, 15*time.Second, "log record of "+w.name, func() bool {
			rec = s.queryLogs(ctx, url.Values{"request_id": {w.out.RequestID}, "since": {"1h"}})
			if len(rec) == 0 {
				// Not every deployment filters by request id: fall back to the route.
				for _, r := range s.queryLogs(ctx, url.Values{"since": {"1h"}, "limit": {"500"}}) {
					if r.RequestID == w.out.RequestID {
						rec = append(rec, r)
					}
				}
			}
			return len(rec) == 1
		})
		r := rec[0]
		if r.Subject != w.subject || r.Decision != w.decision || r.Status != w.out.Status || r.Route != w.out.Route {
			t.Errorf("%s: log record %+v; want subject %q decision %q status %d route %q", w.name, r, w.subject, w.decision, w.out.Status, w.out.Route)
		}
		if w.out.Status == 429 && !strings.Contains(r.Flags, "RL") {
			t.Errorf("%s: response flags %q lack RL", w.name, r.Flags)
		}
	}
	// Denials are findable as such.
	if denied := s.queryLogs(ctx, url.Values{"since": {"1h"}, "decision": {"deny"}, "limit": {"100"}}); len(denied) < 3 {
		t.Errorf("decision=deny found %d records, want at least 3", len(denied))
	}

	// A spec change through the broker reaches the node and every sidecar:
	// all run one revision (each type has its own version; the control
	// plane maps the ACKed versions back to the revision).
	before := s.node.config()
	changed := strings.Replace(mustSpecJSON(t, ctx, s), `"routes":[`, `"routes":[{"name":"list-toys","match":{"pathPrefix":"/toys"},"upstream":"api"},`, 1)
	upd, err := s.osb.Update(ctx, "petstore", json.RawMessage(changed))
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	final = waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.LastOperation(ctx, "petstore", upd.Operation)
	})
	if final.State != "succeeded" {
		t.Fatalf("update ended %s: %s", final.State, final.Description)
	}
	after := s.node.waitFor(t, 10*time.Second, "the new route", func(c nodeConfig) bool {
		_, rt, _ := matchRoute(c.Routes["gatehouse_routes"], httpRequest{Method: "GET", Host: petstore, Path: "/toys"})
		return rt != nil && rt.GetName() == "petstore/list-toys"
	})
	if after.Versions["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] == before.Versions["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] {
		t.Fatalf("route version did not change: %v", after.Versions)
	}
	check("new route", s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/toys"}), 200, "", "")
	waitUntil(t, 10*time.Second, "every node on one revision", func() bool {
		nodes := s.debugNodes(ctx)
		envoy := nodes["e2e-envoy"]
		if envoy.Revision == "" || envoy.Acked["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] != after.Versions["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] {
			return false
		}
		for _, id := range []string{"dev-authz", "dev-ratelimit", "dev-accesslog"} {
			if n := nodes[id]; len(n.Acked) == 0 || n.Revision != envoy.Revision {
				t.Logf("%s runs revision %q (acked %v), the node %q", id, n.Revision, n.Acked, envoy.Revision)
				return false
			}
		}
		return true
	})

	// A bad spec is refused with its error and changes nothing.
	versions := s.node.config().Versions
	bad := strings.Replace(mustSpecJSON(t, ctx, s), `"limit":"10/minute"`, `"limit":"0/minute"`, 1)
	bad = strings.Replace(bad, `"name":"petstore"`, `"name":"petstore-bad"`, 1)
	bad = strings.Replace(bad, `"petstore.example.com"`, `"bad.petstore.example.com"`, 1)
	_, err = s.osb.Provision(ctx, "petstore-bad", json.RawMessage(bad))
	var osbErr *osbclient.Error
	if !errors.As(err, &osbErr) || osbErr.Code != 400 || !strings.Contains(osbErr.Description, "rateLimits[0].limit") || !strings.Contains(osbErr.Description, "greater than 0") {
		t.Fatalf("bad spec: %v; want 400 naming spec.Routes[..].rateLimits[0].limit", err)
	}
	time.Sleep(500 * time.Millisecond)
	if now := s.node.config().Versions; now["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] != versions["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] {
		t.Fatalf("a refused spec changed the served config: %v → %v", versions, now)
	}
	if _, err := s.osb.Instance(ctx, "petstore-bad"); err == nil {
		t.Fatal("a refused spec was stored")
	}
}

// spoofed adds the identity headers a client must never get upstream: the
// petstore's forwarded claim header and a reserved x-gatehouse-* one.
func spoofed(h map[string]string) map[string]string {
	if h == nil {
		h = map[string]string{}
	}
	h["x-user-id"] = "mallory"
	h["x-gatehouse-subject"] = "admin"
	return h
}

func noSpoofedHeaders(t *testing.T, what string, o outcome) {
	t.Helper()
	h, ok := o.Upstream["headers"].(map[string]any)
	if !ok {
		t.Fatalf("%s: the echo upstream did not answer: %v", what, o.Upstream)
	}
	for _, name := range []string{"x-user-id", "x-gatehouse-subject"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s: the upstream got the client's %s: %v", what, name, v)
		}
	}
}

func mustSpecJSON(t *testing.T, ctx context.Context, s *suite) string {
	t.Helper()
	inst, err := s.osb.Instance(ctx, "petstore")
	if err != nil {
		t.Fatalf("GET instance: %v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, inst.Parameters); err != nil {
		t.Fatal(err)
	}
	return compact.String()
}

func waitOp(t *testing.T, ctx context.Context, poll func(context.Context) (*osbclient.Response, error)) *osbclient.Response {
	t.Helper()
	r, err := osbclient.Wait(ctx, 30*time.Second, poll, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
