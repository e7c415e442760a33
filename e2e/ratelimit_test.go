package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

// TestLongQueryKeepsPerIPLimit: a 5 KB query string neither lifts a
// route's per-IP limit (it used to make the RLS call fail, and Envoy lets
// the request through when it does) nor gives a client a fresh per-path
// counter.
func TestLongQueryKeepsPerIPLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSuite(t, ctx)
	s.node = startEnvoyNode(t, ctx, s.ep.XDS, envoyTLS(t, s.ep.PKI), "e2e-envoy", s.ep.NodeGroup)

	// A public spec on the petstore upstream with a per-IP and a per-path
	// limit.
	const host = "limits.example.com"
	var pet struct {
		Metadata map[string]any `json:"metadata"`
		Spec     map[string]any `json:"spec"`
	}
	if err := json.Unmarshal([]byte(mustSpecJSON(t, ctx, s)), &pet); err != nil {
		t.Fatal(err)
	}
	spec := map[string]any{
		"apiVersion": "gatehouse/v1", "kind": "EdgeRoute",
		"metadata": map[string]any{"name": "limits", "team": pet.Metadata["team"]},
		"spec": map[string]any{
			"hosts":     []string{host},
			"upstreams": pet.Spec["upstreams"],
			"routes": []any{
				map[string]any{
					"name": "v6", "match": map[string]any{"pathPrefix": "/v6/"}, "upstream": "api",
					"rateLimits": []any{map[string]any{"name": "per-net", "by": []string{"client.ip/64"}, "limit": "2/minute"}},
				},
				map[string]any{
					"name": "all", "match": map[string]any{"pathPrefix": "/"}, "upstream": "api",
					"rateLimits": []any{
						map[string]any{"name": "per-ip", "by": []string{"client.ip"}, "limit": "3/minute"},
						map[string]any{"name": "per-path", "by": []string{"request.path"}, "limit": "4/minute"},
					},
				},
			},
		},
	}
	body, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	op, err := s.osb.Provision(ctx, "limits", body)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if final := waitOp(t, ctx, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.LastOperation(ctx, "limits", op.Operation)
	}); final.State != "succeeded" {
		t.Fatalf("provision ended %s: %s", final.State, final.Description)
	}
	cfg := s.node.waitFor(t, 30*time.Second, "the limits route", func(c nodeConfig) bool {
		rc := c.Routes["gatehouse_routes"]
		if c.Listeners["gatehouse_http"] == nil || rc == nil || c.Clusters["gatehouse_ratelimit"] == nil || c.CLA["limits/api"] == nil {
			return false
		}
		_, rt, _ := matchRoute(rc, httpRequest{Method: "GET", Host: host, Path: "/"})
		return rt != nil && rt.GetName() == "limits/all"
	})
	s.connectSidecars(ctx, cfg)
	// The ratelimit sidecar learns the limits over its own xDS stream:
	// probe from a client address of its own until it limits.
	waitUntil(t, 20*time.Second, "the ratelimit sidecar limits the new route", func() bool {
		return s.do(ctx, httpRequest{Method: "GET", Host: host, Path: "/probe", ClientIP: "192.0.2.99"}).Status == 429
	})

	pad := "?pad=" + strings.Repeat("A", 5000)
	get := func(ip, path string) int {
		return s.do(ctx, httpRequest{Method: "GET", Host: host, Path: path, ClientIP: ip}).Status
	}
	// Client A spends its 3 requests with long query strings; the 4th,
	// long or short, is limited.
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, get("198.51.100.10", "/a"+strings.Repeat("x", i)+pad))
	}
	got = append(got, get("198.51.100.10", "/b"))
	if want := []int{200, 200, 200, 429, 429}; !slices.Equal(got, want) {
		t.Fatalf("client A with 5 KB query strings: %v, want %v", got, want)
	}
	// Client B spends its 3 requests on short paths; a 5 KB query string
	// does not get it out of its per-IP limit.
	got = got[:0]
	for i := 0; i < 3; i++ {
		got = append(got, get("198.51.100.11", "/c"+strings.Repeat("x", i)))
	}
	got = append(got, get("198.51.100.11", "/c"+pad))
	if want := []int{200, 200, 200, 429}; !slices.Equal(got, want) {
		t.Fatalf("client B, then a 5 KB query string: %v, want %v", got, want)
	}
	// A per-path limit counts the path without its query: four clients,
	// one path, random query strings.
	got = got[:0]
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5"} {
		got = append(got, get(ip, "/same?x="+strings.Repeat("r", i+1)))
	}
	if want := []int{200, 200, 200, 200, 429}; !slices.Equal(got, want) {
		t.Fatalf("one path with random query strings: %v, want %v", got, want)
	}
	// client.ip/64: IPv6 clients of one /64 share a counter, another /64
	// has its own.
	got = got[:0]
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3", "2001:db8:1:3::1"} {
		got = append(got, get(ip, "/v6/x"))
	}
	if want := []int{200, 200, 429, 200}; !slices.Equal(got, want) {
		t.Fatalf("client.ip/64 per-net limit: %v, want %v", got, want)
	}
}
