package authz

import (
	"context"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestSeveralJWTProviders: with several JWT providers in anyOf, a token
// is verified by the provider of its issuer (and, for one issuer with
// several audiences, by whichever accepts it), not always by the first.
func TestSeveralJWTProviders(t *testing.T) {
	ka, kb := authntest.NewEC("a1"), authntest.NewEC("b1")
	doc := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: multi, team: t}
spec:
  hosts: [multi.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt:
      - {name: corp, issuer: "https://corp.test/", audiences: [multi], jwks: '` + string(authntest.JWKS(ka)) + `', forwardClaims: {sub: x-user-id}}
      - {name: partner, issuer: "https://partner.test/", audiences: [multi], jwks: '` + string(authntest.JWKS(kb)) + `'}
      - {name: partner-admin, issuer: "https://partner.test/", audiences: [multi-admin], jwks: '` + string(authntest.JWKS(kb)) + `'}
  routes:
    - {name: r, match: {pathPrefix: /}, upstream: api, auth: {anyOf: [corp, partner, partner-admin]}}
`
	docs, err := spec.Parse("multi.yaml", []byte(doc))
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
	tok := func(k *authntest.Key, iss, aud string) map[string]string {
		return bearer(k.Sign(map[string]any{"iss": iss, "aud": aud, "sub": "u", "exp": t0.Unix() + 3600}, nil))
	}
	for _, tc := range []struct {
		name     string
		headers  map[string]string
		allow    bool
		provider string
		code     string
	}{
		{name: "first provider's token", headers: tok(ka, "https://corp.test/", "multi"), allow: true, provider: "corp"},
		{name: "second provider's token", headers: tok(kb, "https://partner.test/", "multi"), allow: true, provider: "partner"},
		{name: "same issuer, second audience", headers: tok(kb, "https://partner.test/", "multi-admin"), allow: true, provider: "partner-admin"},
		{name: "same issuer, no audience matches", headers: tok(kb, "https://partner.test/", "other"), provider: "partner", code: "audience_not_accepted"},
		{name: "issuer claims corp, signed by partner", headers: tok(kb, "https://corp.test/", "multi"), provider: "corp", code: "unknown_key"},
		{name: "unknown issuer", headers: tok(ka, "https://evil.test/", "multi"), provider: "corp", code: "issuer_not_accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(context.Background(), Request{RouteID: "multi/r", Headers: tc.headers})
			if d.Allow != tc.allow || d.Metadata.Provider != tc.provider || (!tc.allow && d.ReasonCode != tc.code) {
				t.Fatalf("allow %v provider %q reason %s (%s); want allow %v provider %q reason %q", d.Allow, d.Metadata.Provider, d.ReasonCode, d.Reason, tc.allow, tc.provider, tc.code)
			}
		})
	}
}
