package ratelimit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/spec"
)

const petstore = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: petstore, team: pets}
spec:
  hosts: [petstore.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  routes:
    - name: list-pets
      match: {pathPrefix: /pets}
      upstream: api
      rateLimits:
        - name: per-ip
          by: [client.ip]
          limit: 100/minute
        - name: per-tenant
          by: [header.X-Tenant, request.method]
          limit: 100/30s
          algorithm: sliding-window
          shadow: true
    - name: orders
      match: {pathPrefix: /orders}
      upstream: api
      rateLimits:
        - name: all
          by: []
          limit: 5000/15m
          algorithm: token-bucket
          burst: 20
          scope: local
`

func compilePetstore(t testing.TB) *SpecRules {
	t.Helper()
	docs, err := spec.Parse("petstore.yaml", []byte(petstore))
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(docs); err != nil {
		t.Fatal(err)
	}
	r, err := Compile(&docs[0].EdgeRoute)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCompile(t *testing.T) {
	got := compilePetstore(t)
	want := &SpecRules{Spec: "petstore", Limits: []SpecLimit{
		{Route: "petstore/list-pets", Name: "per-ip", Descriptor: []DescriptorEntry{{"route", "petstore/list-pets"}, {"limit", "per-ip"}, {Key: "remote_address"}},
			Requests: 100, WindowSeconds: 60, Unit: "minute", Algorithm: "fixed-window", Scope: "shared"},
		{Route: "petstore/list-pets", Name: "per-tenant", Descriptor: []DescriptorEntry{{"route", "petstore/list-pets"}, {"limit", "per-tenant"}, {Key: "header.x-tenant"}, {Key: "request.method"}},
			Requests: 100, WindowSeconds: 30, Algorithm: "sliding-window", Scope: "shared", Shadow: true},
		{Route: "petstore/orders", Name: "all", Descriptor: []DescriptorEntry{{"route", "petstore/orders"}, {"limit", "all"}},
			Requests: 5000, WindowSeconds: 900, Algorithm: "token-bucket", Burst: 20, Scope: "local"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	// It survives the wire: Wrap/Unwrap with unknown fields disallowed.
	res, err := contract.Wrap(contract.RateLimitPrefix+"petstore", contract.RateLimitRulesType, got)
	if err != nil {
		t.Fatal(err)
	}
	var back SpecRules
	if err := contract.Unwrap(res, contract.RateLimitRulesType, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, &back); diff != "" {
		t.Fatalf("wire round trip (-want +got)\n%s", diff)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimitConfig(t *testing.T) {
	got, warnings := RateLimitConfig([]*SpecRules{compilePetstore(t)})
	want := &rlsconfv3.RateLimitConfig{Name: "gatehouse", Domain: "gatehouse", Descriptors: []*rlsconfv3.RateLimitDescriptor{{
		Key: "route", Value: "petstore/list-pets",
		Descriptors: []*rlsconfv3.RateLimitDescriptor{{
			Key: "limit", Value: "per-ip",
			Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "remote_address",
				RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_MINUTE, RequestsPerUnit: 100, Name: "petstore/list-pets/per-ip"}}},
		}},
	}}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	wantW := []string{
		"envoyproxy/ratelimit cannot serve petstore/list-pets/per-tenant (window 30s)",
		"envoyproxy/ratelimit cannot serve petstore/orders/all (window 15m0s)",
	}
	if diff := cmp.Diff(wantW, warnings); diff != "" {
		t.Fatalf("warnings (-want +got)\n%s", diff)
	}
	// What envoyproxy would load is what Gatehouse loads from the proto.
	d, err := config.FromProto("xds", got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRules([]*config.Domain{d}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSpecRulesEnforced: the compiled domain matches exactly the
// descriptors Envoy sends for the spec's rate_limits actions.
func TestSpecRulesEnforced(t *testing.T) {
	clk := newFakeClock(t0)
	d, err := Domain([]*SpecRules{compilePetstore(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRules([]*config.Domain{d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Clock: clk, Backend: NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(r)
	perIP := desc("route", "petstore/list-pets", "limit", "per-ip", "remote_address", "203.0.113.7")
	tenant := desc("route", "petstore/list-pets", "limit", "per-tenant", "header.x-tenant", "acme", "request.method", "GET")
	orders := desc("route", "petstore/orders", "limit", "all")
	resp := call(t, s, req("gatehouse", perIP, tenant, orders))
	for i, st := range resp.Statuses {
		if st.CurrentLimit == nil {
			t.Fatalf("descriptor %d matched no rule", i)
		}
	}
	if resp.Statuses[0].LimitRemaining != 99 || resp.Statuses[2].LimitRemaining != 19 {
		t.Fatalf("remaining: %v", resp.Statuses)
	}
	// The token bucket bursts 20, then refills 5000/15m = one per 180ms.
	for i := 0; i < 19; i++ {
		call(t, s, req("gatehouse", orders))
	}
	if c := call(t, s, req("gatehouse", orders)).OverallCode; c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("after burst: %s", c)
	}
	clk.Advance(180 * time.Millisecond)
	if c := call(t, s, req("gatehouse", orders)).OverallCode; c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("after one interval: %s", c)
	}
	// Shadow: the tenant limit never denies.
	for i := 0; i < 150; i++ {
		if c := call(t, s, req("gatehouse", tenant)).OverallCode; c != rlsv3.RateLimitResponse_OK {
			t.Fatalf("shadow limit denied at %d", i)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	r := &spec.EdgeRoute{Metadata: spec.Metadata{Name: "x"}, Spec: spec.Spec{Routes: []spec.Route{{Name: "r", RateLimits: []spec.RateLimit{{Name: "l", Limit: "10/fortnight"}}}}}}
	if _, err := Compile(r); err == nil || !strings.Contains(err.Error(), "spec.routes[0].rateLimits[0].limit") {
		t.Fatalf("bad limit: %v", err)
	}
	r.Spec.Routes[0].RateLimits[0] = spec.RateLimit{Name: "l", Limit: "10/minute", By: []string{"cookie.x"}}
	if _, err := Compile(r); err == nil || !strings.Contains(err.Error(), "rateLimits[0].by[0]") {
		t.Fatalf("bad source: %v", err)
	}
}

// FuzzShouldRateLimit feeds arbitrary descriptors: the service answers or
// rejects them as invalid, never panics, and returns one status each.
func FuzzShouldRateLimit(f *testing.F) {
	f.Add("d", "fixed", "a", "sliding", "b", uint64(1), uint32(0))
	f.Add("d", "bucket", "", "", "", uint64(0), uint32(5))
	f.Add("", "", "", "thirty", "*", uint64(1<<40), uint32(1<<31))
	f.Add("d", "tenant", "acme-*", "x", "y", uint64(3), uint32(2))
	f.Add("d", "file", "f1x2", "y", "z", uint64(1), uint32(0))
	f.Add("d", "quota", "q", "quota", "q", uint64(2), uint32(1))
	f.Add("d", "fixed", strings.Repeat("v", 5000), "x", "#sha256:00", uint64(1), uint32(0))
	s, _ := newTestService(f, algoYAML+`
  - key: tenant
    value: acme-*
    descriptors:
      - key: x
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: file
    value: f*x*
    share_threshold: true
    descriptors:
      - key: y
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: quota
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
`, Options{ResponseHeaders: true})
	f.Fuzz(func(t *testing.T, domain, k1, v1, k2, v2 string, addend uint64, reqAddend uint32) {
		d1 := desc(k1, v1)
		d2 := desc(k1, v1, k2, v2)
		d2.HitsAddend = wrapperspbUInt64(addend)
		r := req(domain, d1, d2)
		r.HitsAddend = reqAddend
		resp, err := s.ShouldRateLimit(context.Background(), r)
		if err != nil {
			var ie *InvalidRequestError
			if !asInvalid(err, &ie) {
				t.Fatalf("non-invalid error: %v", err)
			}
			// Values never make a request invalid: only the domain,
			// keys and addends (what the configuration decides) may.
			if domain != "" && len(domain) <= MaxDomainBytes && k1 != "" && k2 != "" && len(k1)+len(k2) <= MaxEntryBytes && addend < maxHitsAddend {
				t.Fatalf("descriptor values made the request invalid: %v", err)
			}
			return
		}
		if len(resp.Statuses) != 2 {
			t.Fatalf("%d statuses", len(resp.Statuses))
		}
	})
}
