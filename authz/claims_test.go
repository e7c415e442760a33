package authz

import (
	"context"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

// A JWT's claims are decoded when read (authn.Identity.Claim/Claims): a
// CEL rule, a claims rule, a forwarded header and a rate-limit claim each
// see the token's values, for a fresh token and again for the same token
// from the cache.
func TestJWTClaimsReachRulesHeadersAndMetadata(t *testing.T) {
	p := compile(t, string(authntest.JWKS(key())))
	p.Routes[1].Rules = []Rule{
		{Allow: false, When: `identity.claims.tenant == "t-banned"`},
		{Allow: true, When: `identity.claims.org.tier == "gold" && "ops" in identity.claims.teams`},
		{Allow: true, Claims: map[string]string{"groups": "admins"}},
	}
	p.Routes[1].MetadataClaims = []string{"tenant"}
	e, _ := newEngine(t, Options{}, p)
	gold := token(func(c map[string]any) {
		c["org"] = map[string]any{"tier": "gold"}
		c["teams"] = []string{"dev", "ops"}
	})
	admin := token(func(c map[string]any) { c["groups"] = []string{"staff", "admins"}; c["tenant"] = "t-2" })
	banned := token(func(c map[string]any) { c["tenant"] = "t-banned"; c["groups"] = []string{"admins"} })
	plain := token(nil)
	for _, round := range []string{"fresh", "cached"} {
		for _, c := range []struct {
			name, tok, rule string
			allow           bool
			tenant          string
		}{
			{name: "CEL on nested claims", tok: gold, rule: "rules[1]", allow: true, tenant: "t-1"},
			{name: "claims rule on an array", tok: admin, rule: "rules[2]", allow: true, tenant: "t-2"},
			{name: "CEL deny on a claim", tok: banned, rule: "rules[0]", tenant: "t-banned"},
			{name: "no rule matches", tok: plain, rule: "no-match", tenant: "t-1"},
		} {
			d := e.Decide(context.Background(), Request{RouteID: "petstore/open", Headers: bearer(c.tok)})
			if d.Allow != c.allow || d.Metadata.Rule != c.rule {
				t.Errorf("%s, %s: allow %v rule %q (%s); want allow %v rule %q", round, c.name, d.Allow, d.Metadata.Rule, d.Reason, c.allow, c.rule)
			}
			if d.Metadata.Subject != "alice" || d.Metadata.Claims["tenant"] != c.tenant {
				t.Errorf("%s, %s: metadata %+v, want subject alice and tenant %s", round, c.name, d.Metadata, c.tenant)
			}
			if c.allow && !hasHeader(d.HeadersToSet, "x-user-id", "alice") {
				t.Errorf("%s, %s: headers %+v, want x-user-id: alice", round, c.name, d.HeadersToSet)
			}
		}
	}
}

func hasHeader(hs []Header, name, value string) bool {
	for _, h := range hs {
		if h.Name == name && h.Value == value {
			return true
		}
	}
	return false
}
