package spec

import (
	"strings"
	"testing"
)

// TestJWKSURIRules: what a jwksUri may be, and that an error never echoes
// the query string (it may carry a token).
func TestJWKSURIRules(t *testing.T) {
	for uri, want := range map[string]string{
		"https://idp.example.com/.well-known/jwks.json":                          "",
		"https://10.0.0.7/jwks":                                                  "", // internal: the authz sidecar's --jwks-allow decides
		"http://127.0.0.1:9081/.well-known/jwks.json":                            "", // gatehouse dev
		"http://localhost:9081/jwks":                                             "",
		"http://[::1]:9081/jwks":                                                 "",
		"http://idp.example.com/jwks?token=s3cr3t":                               "must use https",
		"http://10.0.0.7/jwks?token=s3cr3t":                                      "must use https",
		"https://user:s3cr3t@idp.example.com/jwks":                               "credentials in the URL",
		"https://169.254.169.254/jwks?token=s3cr3t":                              "link-local",
		"https://[fe80::1]/jwks":                                                 "link-local",
		"https://0.0.0.0/jwks":                                                   "unspecified",
		"https://224.0.0.1/jwks":                                                 "multicast",
		"https://idp.example.com/jwks#s3cr3t":                                    "fragment",
		"ftp://idp.example.com/jwks":                                             "scheme must be https",
		"/relative/jwks?token=s3cr3t":                                            "not an absolute",
		"https://idp.example.com/" + strings.Repeat("a", 2100) + "?token=s3cr3t": "longer than 2048",
	} {
		err := checkJWKSURI(uri)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", uri[:min(len(uri), 60)], err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want an error containing %q", uri[:min(len(uri), 60)], err, want)
		case err != nil && strings.Contains(err.Error(), "s3cr3t"):
			t.Errorf("%s: the error echoes the secret: %v", uri[:min(len(uri), 60)], err)
		}
	}
}

// TestProvidersCapAndForwardedHeaders: 8 providers are fine, a 9th is
// refused with its field path; a forwarded header may not be a credential
// or Envoy-owned header.
func TestProvidersCapAndForwardedHeaders(t *testing.T) {
	base := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: t}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    apiKeys:
`
	specWith := func(n int, extra string) error {
		s := base
		for i := 0; i < n; i++ {
			s += "      - {name: k" + string(rune('a'+i)) + ", header: x-key-" + string(rune('a'+i)) + "}\n"
		}
		s += extra + "  routes: [{name: r, match: {pathPrefix: /}, upstream: api, auth: {anyOf: [ka]}}]\n"
		docs, err := Parse("shop.yaml", []byte(s))
		if err != nil {
			return err
		}
		return Validate(docs)
	}
	if err := specWith(8, ""); err != nil {
		t.Fatalf("8 providers: %v", err)
	}
	err := specWith(9, "")
	if err == nil || !strings.Contains(err.Error(), "spec.identity.apiKeys[8]: identity provider 9 of 9: at most 8 per spec") {
		t.Fatalf("9 providers: %v", err)
	}
	for header, want := range map[string]string{
		"x-user-id": "", "x-gatehouse-user": "", "authorization": "cannot carry a claim", "host": "cannot carry a claim",
		"x-envoy-original-path": "cannot carry a claim", "x-forwarded-for": "cannot carry a claim", "x-key-a": "API-key header",
	} {
		jwt := "    jwt: [{name: corp, issuer: \"https://idp.test/\", audiences: [shop], jwksUri: \"https://idp.test/jwks\", forwardClaims: {sub: " + header + "}}]\n"
		err := specWith(1, jwt)
		switch {
		case want == "" && err != nil:
			t.Errorf("forwardClaims to %s: %v", header, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), "spec.identity.jwt[0].forwardClaims.sub") || !strings.Contains(err.Error(), want)):
			t.Errorf("forwardClaims to %s: %v, want %q at spec.identity.jwt[0].forwardClaims.sub", header, err, want)
		}
	}
}
