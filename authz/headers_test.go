package authz

import (
	"context"
	"slices"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// twoProviders has a JWT provider that forwards claims and an API-key
// provider that forwards none, each on its own route to one upstream, and
// a public route to it too.
func twoProviders(jwks string) string {
	return `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: shop}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt:
      - name: corp
        issuer: ` + issuer + `
        audiences: [petstore]
        jwks: '` + jwks + `'
        forwardClaims: {sub: x-user-id, email: x-user-email}
    apiKeys:
      - name: partners
        header: x-api-key
        keys: [{id: acme, sha256: "` + authntest.HashKey("acme-key") + `"}]
  routes:
    - name: admin
      match: {pathPrefix: /admin}
      upstream: api
      auth: {anyOf: [corp]}
    - name: partner
      match: {pathPrefix: /partner}
      upstream: api
      auth: {anyOf: [partners]}
    - name: shadow
      match: {pathPrefix: /shadow}
      upstream: api
      auth: {mode: shadow, anyOf: [partners]}
    - name: health
      match: {path: /healthz}
      upstream: api
`
}

// TestForwardHeadersStrippedOnEveryRoute: a header any provider of the
// spec forwards is removed from the client's request on every route of
// the spec, whichever provider (or none) let the request in; so is every
// x-gatehouse-* header. A verified claim still goes upstream.
func TestForwardHeadersStrippedOnEveryRoute(t *testing.T) {
	docs, err := spec.Parse("shop.yaml", []byte(twoProviders(string(authntest.JWKS(key())))))
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(docs); err != nil {
		t.Fatal(err)
	}
	p, err := Compile(&docs[0].EdgeRoute)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newEngine(t, Options{}, p)
	spoof := func(h map[string]string) map[string]string {
		h["x-user-id"] = "mallory"
		h["x-user-email"] = "mallory@evil.test"
		h["x-gatehouse-subject"] = "admin"
		return h
	}
	for _, tc := range []struct {
		name, route string
		headers     map[string]string
	}{
		{name: "api key on a route whose providers forward nothing", route: "shop/partner", headers: spoof(map[string]string{"x-api-key": "acme-key"})},
		{name: "public route", route: "shop/health", headers: spoof(map[string]string{})},
		{name: "shadow route with a wrong key", route: "shop/shadow", headers: spoof(map[string]string{"x-api-key": "wrong"})},
		{name: "shadow route without credentials", route: "shop/shadow", headers: spoof(map[string]string{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(context.Background(), Request{RouteID: tc.route, Headers: tc.headers})
			if !d.Allow {
				t.Fatalf("denied: %s", d.Reason)
			}
			for _, h := range []string{"x-user-id", "x-user-email", "x-gatehouse-subject"} {
				if !slices.Contains(d.HeadersToRemove, h) {
					t.Errorf("HeadersToRemove %v lacks %s: the client's value reaches the upstream", d.HeadersToRemove, h)
				}
			}
			if len(d.HeadersToSet) != 0 {
				t.Errorf("HeadersToSet %v, want none", d.HeadersToSet)
			}
		})
	}

	// The JWT route: the verified claims are set (not removed), the
	// client's x-gatehouse-* header is removed.
	h := spoof(bearer(token(nil)))
	d := e.Decide(context.Background(), Request{RouteID: "shop/admin", Headers: h})
	if !d.Allow {
		t.Fatalf("jwt route denied: %s", d.Reason)
	}
	set := map[string]string{}
	for _, s := range d.HeadersToSet {
		set[s.Name] = s.Value
	}
	if set["x-user-id"] != "alice" || set["x-user-email"] != "alice@example.com" {
		t.Fatalf("HeadersToSet %v, want the verified claims", d.HeadersToSet)
	}
	if slices.Contains(d.HeadersToRemove, "x-user-id") || !slices.Contains(d.HeadersToRemove, "x-gatehouse-subject") {
		t.Fatalf("HeadersToRemove %v: want x-gatehouse-subject and not the verified x-user-id", d.HeadersToRemove)
	}

	// The shared per-provider slices are not grown in place by one
	// request's reserved headers.
	d1 := e.Decide(context.Background(), Request{RouteID: "shop/partner", Headers: map[string]string{"x-api-key": "acme-key", "x-gatehouse-a": "1"}})
	d2 := e.Decide(context.Background(), Request{RouteID: "shop/partner", Headers: map[string]string{"x-api-key": "acme-key", "x-gatehouse-b": "1"}})
	if slices.Contains(d1.HeadersToRemove, "x-gatehouse-b") || slices.Contains(d2.HeadersToRemove, "x-gatehouse-a") || !slices.Contains(d1.HeadersToRemove, "x-gatehouse-a") {
		t.Fatalf("reserved headers leak between decisions: %v / %v", d1.HeadersToRemove, d2.HeadersToRemove)
	}
}

// allowLoopback lets JWKS fetches reach this test's httptest servers.
func allowLoopback(t testing.TB) *authn.AllowList {
	t.Helper()
	a, err := authn.ParseAllowList([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
