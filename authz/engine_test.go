package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

const issuer = "https://idp.test/"

var (
	keyOnce sync.Once
	signer  *authntest.Key
)

func key() *authntest.Key {
	keyOnce.Do(func() { signer = authntest.NewRSA("k1", 2048) })
	return signer
}

// petstore is a spec exercising every provider kind and rule kind.
func petstore(jwks string) string {
	return `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: petstore, team: pets}
spec:
  hosts: [petstore.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt:
      - name: corp
        issuer: ` + issuer + `
        audiences: [petstore]
        jwks: '` + jwks + `'
        algorithms: [RS256]
        forwardClaims: {sub: x-user-id, email: x-user-email}
    apiKeys:
      - name: partners
        header: x-api-key
        keys:
          - {id: acme, sha256: "` + authntest.HashKey("acme-key") + `", labels: {plan: gold}}
          - {id: globex, sha256: "` + authntest.HashKey("globex-key") + `", labels: {plan: free}}
      - name: legacy
        query: api_key
        keys: [{id: old, sha256: "` + authntest.HashKey("old-key") + `"}]
    mtls:
      - name: internal
        principals: ["spiffe://corp/ns/*/sa/*"]
  routes:
    - name: read
      match: {pathPrefix: /pets, methods: [GET]}
      upstream: api
      auth:
        anyOf: [corp, partners, internal]
        rules:
          - {allow: false, when: 'request.ip.startsWith("203.0.113.")'}
          - {allow: true, scopes: ["pets:read"]}
          - {allow: true, claims: {groups: admins}}
          - {allow: true, when: 'identity.kind == "apiKey" && identity.labels.plan == "gold"'}
          - {allow: true, when: 'identity.kind == "mtls" && request.headers["x-team"] == "pets"'}
      rateLimits:
        - {name: per-tenant, by: [identity.claim.tenant, identity.subject], limit: 10/second}
    - name: open
      match: {pathPrefix: /any}
      upstream: api
      auth: {anyOf: [corp, legacy]}
    - name: shadow
      match: {pathPrefix: /shadow}
      upstream: api
      auth:
        mode: shadow
        anyOf: [corp]
        rules: [{allow: true, scopes: [admin]}]
    - name: health
      match: {path: /health}
      upstream: api
`
}

func compile(t testing.TB, jwks string) *SpecPolicy {
	t.Helper()
	docs, err := spec.Parse("petstore.yaml", []byte(petstore(jwks)))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := spec.Validate(docs); err != nil {
		t.Fatalf("validate: %v", err)
	}
	p, err := Compile(&docs[0].EdgeRoute)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

type clk struct{ ns atomic.Int64 }

func (c *clk) Now() time.Time { return time.Unix(0, c.ns.Load()) }

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newEngine(t testing.TB, opts Options, policies ...*SpecPolicy) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registry = reg
	if opts.Clock == nil {
		c := &clk{}
		c.ns.Store(t0.UnixNano())
		opts.Clock = c.Now
	}
	e, err := NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if len(policies) > 0 {
		if err := e.Update(policies); err != nil {
			t.Fatalf("update: %v", err)
		}
	}
	return e, reg
}

func token(mod func(map[string]any)) string {
	c := map[string]any{"iss": issuer, "aud": "petstore", "sub": "alice", "email": "alice@example.com",
		"exp": t0.Add(time.Hour).Unix(), "scope": "pets:read", "tenant": "t-1"}
	if mod != nil {
		mod(c)
	}
	return key().Sign(c, nil)
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func TestCompileRoundTripsThroughTheWireContract(t *testing.T) {
	p := compile(t, string(authntest.JWKS(key())))
	res, err := contract.Wrap(contract.AuthzPrefix+p.Spec, contract.AuthzPolicyType, p)
	if err != nil {
		t.Fatal(err)
	}
	var back SpecPolicy
	if err := contract.Unwrap(res, contract.AuthzPolicyType, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, &back); d != "" {
		t.Fatalf("policy changed over the wire (-sent +received):\n%s", d)
	}
	if got := p.Routes[0].MetadataClaims; len(got) != 1 || got[0] != "tenant" {
		t.Fatalf("metadata claims = %v", got)
	}
	if p.Routes[3].Mode != spec.ModePublic || p.Routes[2].Mode != spec.ModeShadow {
		t.Fatalf("modes: %+v", p.Routes)
	}
}

func TestDecide(t *testing.T) {
	e, _ := newEngine(t, Options{}, compile(t, string(authntest.JWKS(key()))))
	ctx := context.Background()
	other := authntest.NewRSA("k1", 2048)
	cases := []struct {
		name       string
		req        Request
		status     int
		code       string
		decision   string
		rule       string
		subject    string
		wwwAuthHas string
	}{
		{name: "missing gatehouse.route", req: Request{Headers: bearer(token(nil))}, status: 403, code: ReasonUnknownRoute, decision: "deny"},
		{name: "unknown route", req: Request{RouteID: "petstore/nope", Headers: bearer(token(nil))}, status: 403, code: ReasonUnknownRoute, decision: "deny"},
		{name: "no credentials", req: Request{RouteID: "petstore/read"}, status: 401, code: "no_credentials", decision: "deny", wwwAuthHas: `Bearer realm="petstore/read"`},
		{name: "basic auth is not a bearer token", req: Request{RouteID: "petstore/read", Headers: map[string]string{"authorization": "Basic YTpi"}}, status: 401, code: "no_credentials", decision: "deny", wwwAuthHas: `realm="petstore/read"`},
		{name: "scope rule", req: Request{RouteID: "petstore/read", SourceIP: "10.1.1.1", Headers: bearer(token(nil))}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[1]", subject: "alice"},
		{name: "bearer scheme case-insensitive", req: Request{RouteID: "petstore/read", Headers: map[string]string{"authorization": "bEaReR " + token(nil)}}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[1]", subject: "alice"},
		{name: "CEL deny by ip wins first", req: Request{RouteID: "petstore/read", SourceIP: "203.0.113.9", Headers: bearer(token(nil))}, status: 403, code: ReasonRuleDenied, decision: "deny", rule: "rules[0]", subject: "alice"},
		{name: "claim array contains", req: Request{RouteID: "petstore/read", Headers: bearer(token(func(c map[string]any) { c["scope"] = ""; c["groups"] = []string{"x", "admins"} }))}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[2]", subject: "alice"},
		{name: "no rule matches", req: Request{RouteID: "petstore/read", Headers: bearer(token(func(c map[string]any) { c["scope"] = "other" }))}, status: 403, code: ReasonNoRuleMatched, decision: "deny", rule: "no-match", subject: "alice"},
		{name: "expired token", req: Request{RouteID: "petstore/read", Headers: bearer(token(func(c map[string]any) { c["exp"] = t0.Add(-time.Hour).Unix() }))}, status: 401, code: "token_expired", decision: "deny", wwwAuthHas: `error="invalid_token", error_description="token expired"`},
		{name: "foreign signature", req: Request{RouteID: "petstore/read", Headers: bearer(other.Sign(map[string]any{"iss": issuer, "aud": "petstore", "exp": t0.Add(time.Hour).Unix()}, nil))}, status: 401, code: "bad_signature", decision: "deny", wwwAuthHas: `error="invalid_token"`},
		{name: "api key with gold label (CEL labels)", req: Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "acme-key"}}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[3]", subject: "acme"},
		{name: "api key with free label", req: Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "globex-key"}}, status: 403, code: ReasonNoRuleMatched, decision: "deny", rule: "no-match", subject: "globex"},
		{name: "unknown api key", req: Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "guess"}}, status: 401, code: "unknown_api_key", decision: "deny", wwwAuthHas: `error="invalid_token"`},
		{name: "first present provider decides: bad JWT beats good key", req: Request{RouteID: "petstore/read", Headers: map[string]string{"authorization": "Bearer x.y.z", "x-api-key": "acme-key"}}, status: 401, code: "malformed_token", decision: "deny"},
		{name: "mtls inside globs with header", req: Request{RouteID: "petstore/read", Principal: "spiffe://corp/ns/pets/sa/api", Headers: map[string]string{"x-team": "pets"}}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[4]", subject: "spiffe://corp/ns/pets/sa/api"},
		{name: "mtls principal outside globs", req: Request{RouteID: "petstore/read", Principal: "spiffe://other/ns/pets/sa/api"}, status: 401, code: "principal_not_allowed", decision: "deny"},
		{name: "no rules: any authenticated caller", req: Request{RouteID: "petstore/open", Headers: bearer(token(func(c map[string]any) { c["scope"] = "" }))}, status: 200, code: ReasonAllowed, decision: "allow", rule: "any-authenticated", subject: "alice"},
		{name: "api key in query", req: Request{RouteID: "petstore/open", Query: "a=1&api_key=old-key"}, status: 200, code: ReasonAllowed, decision: "allow", rule: "any-authenticated", subject: "old"},
		{name: "shadow: would deny, allows", req: Request{RouteID: "petstore/shadow", Headers: bearer(token(nil))}, status: 200, code: ReasonNoRuleMatched, decision: "shadow-deny", rule: "no-match", subject: "alice"},
		{name: "shadow: no credentials, allows", req: Request{RouteID: "petstore/shadow"}, status: 200, code: "no_credentials", decision: "shadow-deny"},
		{name: "shadow: allowed", req: Request{RouteID: "petstore/shadow", Headers: bearer(token(func(c map[string]any) { c["scope"] = "admin" }))}, status: 200, code: ReasonAllowed, decision: "allow", rule: "rules[0]", subject: "alice"},
		{name: "public route", req: Request{RouteID: "petstore/health"}, status: 200, code: ReasonPublic, decision: "allow", rule: "public"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.RequestID = "req-1"
			d := e.Decide(ctx, tc.req)
			if d.Status != tc.status || d.ReasonCode != tc.code || d.Metadata.Decision != tc.decision || d.Metadata.Rule != tc.rule || d.Metadata.Subject != tc.subject {
				t.Fatalf("got status %d code %q decision %q rule %q subject %q (reason %q); want %d %q %q %q %q",
					d.Status, d.ReasonCode, d.Metadata.Decision, d.Metadata.Rule, d.Metadata.Subject, d.Reason, tc.status, tc.code, tc.decision, tc.rule, tc.subject)
			}
			if d.Allow != (tc.status == 200) {
				t.Fatalf("allow = %v with status %d", d.Allow, d.Status)
			}
			if !strings.Contains(d.WWWAuthenticate, tc.wwwAuthHas) || (tc.status != 401 && d.WWWAuthenticate != "") {
				t.Fatalf("WWW-Authenticate = %q, want it to contain %q", d.WWWAuthenticate, tc.wwwAuthHas)
			}
			if tc.status == 401 && !strings.HasPrefix(d.WWWAuthenticate, `Bearer realm="`) {
				t.Fatalf("401 without a Bearer challenge: %q", d.WWWAuthenticate)
			}
			if !d.Allow {
				var body map[string]any
				if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body["request_id"] != "req-1" || body["error"] != tc.code {
					t.Fatalf("deny body %q: %v", d.Body, err)
				}
			}
			for _, v := range tc.req.Headers {
				if strings.Contains(d.Reason+d.Body+d.WWWAuthenticate, v) {
					t.Fatalf("decision echoes a credential")
				}
			}
		})
	}
}

func TestAllowedHeadersAndMetadata(t *testing.T) {
	e, _ := newEngine(t, Options{}, compile(t, string(authntest.JWKS(key()))))
	h := bearer(token(func(c map[string]any) { delete(c, "email") }))
	h["x-user-email"] = "spoofed@evil.test"
	d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: h})
	if !d.Allow {
		t.Fatalf("denied: %s", d.Reason)
	}
	if diff := cmp.Diff([]Header{{"x-user-id", "alice"}}, d.HeadersToSet); diff != "" {
		t.Fatalf("headers to set:\n%s", diff)
	}
	if diff := cmp.Diff([]string{"x-user-email", "authorization"}, d.HeadersToRemove); diff != "" {
		t.Fatalf("headers to remove (spoofed claim header and credential):\n%s", diff)
	}
	want := Metadata{Subject: "alice", Provider: "corp", Kind: "jwt", Rule: "rules[1]", Decision: "allow", Claims: map[string]string{"tenant": "t-1"}}
	if diff := cmp.Diff(want, d.Metadata); diff != "" {
		t.Fatalf("metadata:\n%s", diff)
	}
	// An API-key caller loses the key header and any forwarded-claim header
	// it sent itself.
	d = e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "acme-key", "x-user-id": "root"}})
	if diff := cmp.Diff([]string{"x-user-email", "x-user-id", "x-api-key"}, d.HeadersToRemove); diff != "" || len(d.HeadersToSet) != 0 {
		t.Fatalf("api key caller: remove %v set %v:\n%s", d.HeadersToRemove, d.HeadersToSet, diff)
	}
	if d.Metadata.APIKeyID != "acme" {
		t.Fatalf("apikey_id = %q", d.Metadata.APIKeyID)
	}
	d = e.Decide(context.Background(), Request{RouteID: "petstore/open", Query: "api_key=old-key"})
	if diff := cmp.Diff([]string{"api_key"}, d.QueryToRemove); diff != "" {
		t.Fatalf("query to remove:\n%s", diff)
	}
	// Denied requests carry metadata too.
	d = e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(func(c map[string]any) { c["scope"] = "" }))})
	if d.Allow || d.Metadata.Subject != "alice" || d.Metadata.Decision != "deny" || d.Metadata.Claims["tenant"] != "t-1" {
		t.Fatalf("denied metadata: %+v", d.Metadata)
	}

	keep, _ := newEngine(t, Options{KeepCredential: true}, compile(t, string(authntest.JWKS(key()))))
	d = keep.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(nil))})
	for _, h := range d.HeadersToRemove {
		if h == "authorization" {
			t.Fatal("KeepCredential still removes the Authorization header")
		}
	}
}

func TestNoPolicyDeniesAndUpdateKeepsLastGood(t *testing.T) {
	e, reg := newEngine(t, Options{})
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/health"}); d.Allow || d.Status != 403 || d.ReasonCode != ReasonNoPolicy {
		t.Fatalf("before any policy: %+v", d)
	}
	if e.Ready() == nil {
		t.Fatal("ready without policies")
	}
	good := compile(t, string(authntest.JWKS(key())))
	if err := e.Update([]*SpecPolicy{good}); err != nil {
		t.Fatal(err)
	}
	bad := *good
	bad.Routes = append([]RoutePolicy(nil), good.Routes...)
	bad.Routes[0].Rules = []Rule{{Allow: true, When: `request.method`}} // not boolean
	err := e.Update([]*SpecPolicy{&bad})
	if err == nil || !strings.Contains(err.Error(), "petstore/read") || !strings.Contains(err.Error(), "boolean") {
		t.Fatalf("bad policy error = %v", err)
	}
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(nil))}); !d.Allow {
		t.Fatalf("last good policy not kept: %+v", d)
	}
	dup := *good
	if err := e.Update([]*SpecPolicy{good, &dup}); err == nil {
		t.Fatal("the same spec twice accepted")
	}
	if n := testutil.ToFloat64(e.metrics.updates.WithLabelValues("failure")); n != 2 {
		t.Fatalf("failed updates = %v", n)
	}
	// Revoking an API key is an update without it.
	revoked := compile(t, string(authntest.JWKS(key())))
	for i := range revoked.Providers {
		if revoked.Providers[i].Name == "partners" {
			revoked.Providers[i].APIKey.Keys = revoked.Providers[i].APIKey.Keys[1:]
		}
	}
	if err := e.Update([]*SpecPolicy{revoked}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "acme-key"}}); d.Status != 401 || d.ReasonCode != "unknown_api_key" {
		t.Fatalf("revoked key: %+v", d)
	}
	if n, _ := testutil.GatherAndCount(reg, "gatehouse_authz_checks_total"); n == 0 {
		t.Fatal("no check metrics")
	}
}

func TestCELCostLimit(t *testing.T) {
	const expensive = `[1,2,3,4,5,6,7,8,9,10].all(x, [1,2,3,4,5,6,7,8,9,10].all(y, [1,2,3,4,5,6,7,8,9,10].all(z, x+y+z > 0)))`
	decide := func(limit uint64, rules ...Rule) Decision {
		p := compile(t, string(authntest.JWKS(key())))
		p.Routes[1].Rules = rules
		e, _ := newEngine(t, Options{CELCostLimit: limit}, p)
		return e.Decide(context.Background(), Request{RouteID: "petstore/open", Headers: bearer(token(nil))})
	}
	// A deny rule over the cost limit fails closed.
	if d := decide(100, Rule{Allow: false, When: expensive}, Rule{Allow: true}); d.Allow || d.ReasonCode != ReasonRuleError {
		t.Fatalf("over-cost deny rule: %+v", d)
	}
	// An allow rule over the cost limit does not match.
	if d := decide(100, Rule{Allow: true, When: expensive}); d.Allow || d.ReasonCode != ReasonNoRuleMatched {
		t.Fatalf("over-cost allow rule: %+v", d)
	}
	// Under a high limit the same rule runs.
	if d := decide(1<<20, Rule{Allow: true, When: expensive}); !d.Allow || d.Metadata.Rule != "rules[0]" {
		t.Fatalf("same rule under a high limit: %+v", d)
	}
}

func TestCELMissingClaimFailsClosed(t *testing.T) {
	p := compile(t, string(authntest.JWKS(key())))
	p.Routes[1].Rules = []Rule{{Allow: false, When: `identity.claims.banned == true`}, {Allow: true}}
	e, _ := newEngine(t, Options{}, p)
	d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Headers: bearer(token(nil))})
	if d.Allow || d.ReasonCode != ReasonRuleError {
		t.Fatalf("a deny rule that cannot be evaluated must not fall through to allow: %+v", d)
	}
}

// Swapping policies never blocks or breaks concurrent decisions.
func TestUpdateWhileDeciding(t *testing.T) {
	p := compile(t, string(authntest.JWKS(key())))
	e, _ := newEngine(t, Options{}, p)
	tok := token(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && ctx.Err() == nil; i++ {
				if d := e.Decide(ctx, Request{RouteID: "petstore/read", Headers: bearer(tok)}); !d.Allow {
					bad.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 50 && ctx.Err() == nil; i++ {
		if err := e.Update([]*SpecPolicy{compile(t, string(authntest.JWKS(key())))}); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d decisions denied during updates", bad.Load())
	}
}

func TestRemoteJWKSSharedAndStoppedOnUpdate(t *testing.T) {
	srv := authntest.NewJWKSServer(authntest.JWKS(key()))
	defer srv.Close()
	mk := func(uri string) *SpecPolicy {
		p := compile(t, string(authntest.JWKS(key())))
		p.Providers[0].JWT.JWKS, p.Providers[0].JWT.JWKSURI = "", uri
		return p
	}
	e, _ := newEngine(t, Options{JWKSRefreshInterval: time.Hour, JWKSAllow: allowLoopback(t)})
	if err := e.Update([]*SpecPolicy{mk(srv.URI())}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(nil))}); !d.Allow {
		t.Fatalf("remote JWKS: %+v", d)
	}
	// Same URI in a new update: the running source is reused, no refetch.
	for i := 0; i < 3; i++ {
		if err := e.Update([]*SpecPolicy{mk(srv.URI())}); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Fetches(); got != 1 {
		t.Fatalf("updates with the same jwksUri fetched %d times, want 1", got)
	}
	if err := e.Update([]*SpecPolicy{compile(t, string(authntest.JWKS(key())))}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	n := len(e.jwks)
	e.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d JWKS sources still running after their provider went away", n)
	}
}

func TestQueryValue(t *testing.T) {
	for _, tc := range []struct{ raw, name, want string }{
		{raw: "api_key=abc", name: "api_key", want: "abc"},
		{raw: "x=1&api_key=a%2Bb", name: "api_key", want: "a+b"},
		{raw: "api%5Fkey=z", name: "api_key", want: "z"},
		{raw: "api_keyx=1", name: "api_key"},
		{raw: "", name: "api_key"},
	} {
		if got := queryValue(tc.raw, tc.name); got != tc.want {
			t.Errorf("queryValue(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func ExampleEngine_Decide() {
	e, _ := NewEngine(Options{})
	defer e.Close()
	_ = e.Update([]*SpecPolicy{{Spec: "shop", Routes: []RoutePolicy{{ID: "shop/health", Mode: "public"}}}})
	d := e.Decide(context.Background(), Request{RouteID: "shop/health"})
	fmt.Println(d.Status, d.Metadata.Decision)
	d = e.Decide(context.Background(), Request{RouteID: "shop/admin"})
	fmt.Println(d.Status, d.ReasonCode)
	// Output:
	// 200 allow
	// 403 unknown_route
}

// Neither an update in progress nor a JWKS server that hangs blocks a
// decision: Decide takes no update lock, Update does not fetch keys, and a
// Check that must wait for keys gives up with its context (fail closed).
func TestDecideNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write(authntest.JWKS(key()))
	}))
	defer hang.Close()
	defer unblock() // runs before hang.Close: let the handler return

	good := compile(t, string(authntest.JWKS(key())))
	e, _ := newEngine(t, Options{JWKSAllow: allowLoopback(t)}, good)

	// An update holding the lock does not stop decisions.
	e.mu.Lock()
	done := make(chan Decision, 1)
	go func() {
		done <- e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: bearer(token(nil))})
	}()
	select {
	case d := <-done:
		if !d.Allow {
			t.Errorf("decision during an update: %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Error("Decide blocked on an update in progress")
	}
	e.mu.Unlock()

	// Update with a jwksUri whose server hangs returns without the keys.
	remote := compile(t, string(authntest.JWKS(key())))
	remote.Providers[0].JWT.JWKS, remote.Providers[0].JWT.JWKSURI = "", hang.URL+"/jwks.json"
	upd := make(chan error, 1)
	go func() { upd <- e.Update([]*SpecPolicy{remote}) }()
	select {
	case err := <-upd:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update waited for a JWKS fetch")
	}
	// A token needing those keys waits at most for its own context.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d := e.Decide(ctx, Request{RouteID: "petstore/read", Headers: bearer(token(nil))})
	if d.Allow || d.Status != 401 || d.ReasonCode != "keys_unavailable" {
		t.Fatalf("decision without keys: %+v", d)
	}
	// API keys on the same route do not need the JWKS at all.
	if d := e.Decide(context.Background(), Request{RouteID: "petstore/read", Headers: map[string]string{"x-api-key": "acme-key"}}); !d.Allow {
		t.Fatalf("api key while JWKS hangs: %+v", d)
	}
	unblock()
}

func TestCompileRefusesUnusableInlineKeys(t *testing.T) {
	docs, err := spec.Parse("weak.yaml", []byte(petstore(string(authntest.JWKS(authntest.NewRSA("weak", 1024))))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(&docs[0].EdgeRoute)
	if err == nil || !strings.Contains(err.Error(), "spec.identity.jwt[0].jwks") || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("compile of a JWKS holding only an RSA-1024 key: %v", err)
	}
}

// Two specs whose JWT providers differ only in their keys never share a
// cached verdict.
func TestTokenCacheIsPerProviderKeys(t *testing.T) {
	a := compile(t, string(authntest.JWKS(key())))
	b := compile(t, string(authntest.JWKS(authntest.NewRSA("k1", 2048))))
	b.Spec = "other"
	for i := range b.Routes {
		b.Routes[i].ID = strings.Replace(b.Routes[i].ID, "petstore/", "other/", 1)
	}
	e, _ := newEngine(t, Options{}, a, b)
	h := bearer(token(nil))
	for i := 0; i < 3; i++ {
		if d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Headers: h}); !d.Allow {
			t.Fatalf("round %d: own keys: %+v", i, d)
		}
		if d := e.Decide(context.Background(), Request{RouteID: "other/open", Headers: h}); d.Allow || d.ReasonCode != "bad_signature" {
			t.Fatalf("round %d: other keys: %+v", i, d)
		}
	}
}
