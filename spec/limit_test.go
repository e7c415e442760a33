package spec

import (
	"errors"
	"strings"
	"testing"
)

// limitSpec is a valid spec whose first route's rateLimits entry is
// replaced by entry (YAML flow mapping).
func limitSpec(entry string) string {
	return `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: t}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  identity:
    apiKeys: [{name: partners, header: x-shop-key}]
  routes:
    - name: login
      match: {path: /login}
      upstream: api
      auth: {anyOf: [partners]}
      rateLimits:
        - ` + entry + `
`
}

func validateText(t *testing.T, text string) error {
	t.Helper()
	docs, err := Parse("shop.yaml", []byte(text))
	if err != nil {
		return err
	}
	return Validate(docs)
}

// TestCredentialSourcesRefused: a limit keyed by a header that carries a
// credential (Authorization, Proxy-Authorization, Cookie, or the header an
// apiKeys provider of the spec reads) is refused with the field path and
// a hint, because the counter key would hold the secret in clear.
func TestCredentialSourcesRefused(t *testing.T) {
	for _, by := range []string{"header.authorization", "header.Authorization", "header.proxy-authorization", "header.cookie", "header.x-shop-key"} {
		err := validateText(t, limitSpec(`{name: l, by: [client.ip, `+by+`], limit: 5/minute}`))
		if err == nil {
			t.Errorf("by %s: accepted", by)
			continue
		}
		msg := err.Error()
		for _, want := range []string{"spec.routes[0].rateLimits[0].by[1]", "in clear", "apikey.id or identity.subject"} {
			if !strings.Contains(msg, want) {
				t.Errorf("by %s: error lacks %q:\n%s", by, want, msg)
			}
		}
	}
	// Other headers and the verified caller stay allowed.
	for _, by := range []string{"header.x-tenant", "apikey.id", "identity.subject"} {
		if err := validateText(t, limitSpec(`{name: l, by: [`+by+`], limit: 5/minute}`)); err != nil {
			t.Errorf("by %s refused: %v", by, err)
		}
	}
}

func TestOnFailure(t *testing.T) {
	for _, v := range []string{"allow", "deny"} {
		if err := validateText(t, limitSpec(`{name: l, by: [client.ip], limit: 5/minute, onFailure: `+v+`}`)); err != nil {
			t.Errorf("onFailure %s: %v", v, err)
		}
	}
	err := validateText(t, limitSpec(`{name: l, by: [client.ip], limit: 5/minute, onFailure: closed}`))
	var list ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), "spec.routes[0].rateLimits[0].onFailure") || !strings.Contains(err.Error(), "want allow or deny") {
		t.Fatalf("onFailure closed: %v", err)
	}
}

func TestClientIP64Source(t *testing.T) {
	src, err := ParseSource("client.ip/64")
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != SourceClientIP64 || src.DescriptorKey() != "masked_remote_address" {
		t.Fatalf("client.ip/64 = %+v, key %q", src, src.DescriptorKey())
	}
	if err := validateText(t, limitSpec(`{name: l, by: [client.ip/64], limit: 5/minute}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"client.ip/48", "client.ip/"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
