package frontdoor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// compiledNode is a Node holding what the control plane compiles for the
// spec (group "dev"), without a stream: the door's filters are tested on
// the real compiled config.
func compiledNode(t *testing.T, o compile.Options, specYAML string) *Node {
	t.Helper()
	if o.UpstreamAllow.Empty() {
		// The tests' upstreams listen on loopback, which specs may not
		// name unless an operator allows it.
		o.UpstreamAllow = spec.MustParseUpstreamAllow("127.0.0.1/32")
	}
	c, err := compile.New(o)
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "r1", Specs: []source.Spec{{Name: "s", Origin: "s.yaml", Revision: 1, Data: []byte(specYAML)}}})
	for _, s := range res.Failed() {
		t.Fatalf("spec failed: %v", s.Err)
	}
	rs, _, err := res.Resources("dev")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{id: "test", group: "dev", clusters: map[string]*clusterv3.Cluster{}, cla: map[string]*endpointv3.ClusterLoadAssignment{},
		lis: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{}, versions: map[string]string{}}
	for _, list := range rs {
		for _, r := range list {
			switch x := r.(type) {
			case *clusterv3.Cluster:
				n.clusters[x.GetName()] = x
			case *endpointv3.ClusterLoadAssignment:
				n.cla[x.GetClusterName()] = x
			case *listenerv3.Listener:
				n.lis[x.GetName()] = x
			case *routev3.RouteConfiguration:
				n.routes[x.GetName()] = x
			}
		}
	}
	return n
}

const doorSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: s, team: t}
spec:
  hosts: [s.example.com]
  upstreams: [{name: api, endpoints: ["UPSTREAM"]}]
  identity:
    apiKeys:
      - name: k
        header: x-api-key
        keys: [{id: one, sha256: "66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1"}]
  routes:
    - name: private
      match: {pathPrefix: /private}
      upstream: api
      auth: {anyOf: [k]}
    - name: public
      match: {pathPrefix: /}
      upstream: api
      rateLimits:
        - {name: per-ip, by: [client.ip], limit: 10/second}
`

// TestDoorFailureModes: with the sidecars unreachable, the door does what
// Envoy's filters are configured to do — ext_authz fails closed (403,
// failure_mode_allow false), the ratelimit filter lets requests through
// unless failure_mode_deny (then 500) — and a client's x-gatehouse-*
// headers never reach the upstream.
func TestDoorFailureModes(t *testing.T) {
	var upstreamHits int
	var lastHeaders http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits++
		lastHeaders = r.Header.Clone()
		_ = json.NewEncoder(w).Encode(map[string]string{"ok": "yes"})
	}))
	defer up.Close()
	spec := strings.Replace(doorSpec, "UPSTREAM", strings.TrimPrefix(up.URL, "http://"), 1)
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	ctx := context.Background()

	for _, deny := range []bool{false, true} {
		sidecars := envoy.Sidecars{Authz: testenv.ClosedAddr(t), RateLimit: testenv.ClosedAddr(t), AccessLog: testenv.ClosedAddr(t)}
		node := compiledNode(t, compile.Options{Sidecars: sidecars, HTTPAddress: "127.0.0.1:10080", RateLimitFailureModeDeny: deny}, spec)
		door, err := New(node, Options{Dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		defer door.Close()

		upstreamHits = 0
		o, err := door.Do(ctx, Request{Method: "GET", Host: "s.example.com", Path: "/private", ClientIP: "192.0.2.1",
			Headers: map[string]string{"x-api-key": "gh_demo_acme_0123456789"}})
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != http.StatusForbidden || o.Details != "ext_authz_error" || upstreamHits != 0 {
			t.Fatalf("authz unreachable: status %d (%s), upstream hit %d times; want 403 ext_authz_error, never the upstream", o.Status, o.Details, upstreamHits)
		}

		o, err = door.Do(ctx, Request{Method: "GET", Host: "s.example.com", Path: "/", ClientIP: "192.0.2.1",
			Headers: map[string]string{"x-gatehouse-subject": "admin", "X-Gatehouse-Tenant": "other"}})
		if err != nil {
			t.Fatal(err)
		}
		if deny {
			if o.Status != http.StatusInternalServerError || o.Details != "rate_limiter_error" || upstreamHits != 0 {
				t.Fatalf("ratelimit unreachable, failure_mode_deny: status %d (%s), upstream hits %d; want 500 rate_limiter_error", o.Status, o.Details, upstreamHits)
			}
			continue
		}
		if o.Status != http.StatusOK || o.Details != "via_upstream" || upstreamHits != 1 {
			t.Fatalf("ratelimit unreachable, failure mode allow: status %d (%s), upstream hits %d; want 200 via_upstream", o.Status, o.Details, upstreamHits)
		}
		for k := range lastHeaders {
			if strings.HasPrefix(strings.ToLower(k), "x-gatehouse-") {
				t.Fatalf("upstream got the client's %s header", k)
			}
		}
		if lastHeaders.Get("x-request-id") != o.RequestID {
			t.Fatalf("upstream x-request-id %q, want the door's %q", lastHeaders.Get("x-request-id"), o.RequestID)
		}
	}
}

// TestDoorNoRoute: a host or path no route matches is a 404 from the
// door itself, as Envoy's route_not_found.
func TestDoorNoRoute(t *testing.T) {
	node := compiledNode(t, compile.Options{Sidecars: envoy.Sidecars{Authz: testenv.ClosedAddr(t), RateLimit: testenv.ClosedAddr(t), AccessLog: testenv.ClosedAddr(t)}, HTTPAddress: "127.0.0.1:10080"},
		strings.Replace(doorSpec, "UPSTREAM", testenv.ClosedAddr(t), 1))
	door, err := New(node, Options{Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err != nil {
		t.Fatal(err)
	}
	defer door.Close()
	o, err := door.Do(context.Background(), Request{Method: "GET", Host: "other.example.com", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != http.StatusNotFound || o.Details != "route_not_found" {
		t.Fatalf("unknown host: %d (%s), want 404 route_not_found", o.Status, o.Details)
	}
}
