package authn

import (
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

func TestAPIKeys(t *testing.T) {
	p, err := NewAPIKeys(APIKeyConfig{Name: "partners", Header: "x-api-key", Keys: []APIKey{
		{ID: "acme", SHA256: authntest.HashKey("s3cret-acme"), Labels: map[string]string{"plan": "gold"}},
		{ID: "globex", SHA256: authntest.HashKey("s3cret-globex")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Authenticate("s3cret-acme")
	if err != nil || id.APIKeyID != "acme" || id.Subject != "acme" || id.Labels["plan"] != "gold" || id.Kind != KindAPIKey {
		t.Fatalf("acme: %+v, %v", id, err)
	}
	for _, bad := range []string{"s3cret-acm", "", "S3CRET-ACME", authntest.HashKey("s3cret-acme")} {
		if _, err := p.Authenticate(bad); code(err) != CodeUnknownAPIKey {
			t.Errorf("key %q: %v", bad, err)
		}
	}
	// Revocation is removal from the provider: the old key is refused.
	revoked, _ := NewAPIKeys(APIKeyConfig{Name: "partners", Header: "x-api-key", Keys: []APIKey{{ID: "globex", SHA256: authntest.HashKey("s3cret-globex")}}})
	if _, err := revoked.Authenticate("s3cret-acme"); code(err) != CodeUnknownAPIKey {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := NewAPIKeys(APIKeyConfig{Name: "x", Header: "h", Keys: []APIKey{{ID: "a", SHA256: "s3cret"}}}); err == nil {
		t.Fatal("a plaintext key accepted as a hash")
	}
	if _, err := NewAPIKeys(APIKeyConfig{Name: "x", Header: "h", Query: "q"}); err == nil {
		t.Fatal("header and query both accepted")
	}
}

func TestMTLS(t *testing.T) {
	p, err := NewMTLS(MTLSConfig{Name: "internal", Principals: []string{"spiffe://corp/ns/*/sa/*"}})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := p.Authenticate("spiffe://corp/ns/pets/sa/api"); err != nil || id.Subject != "spiffe://corp/ns/pets/sa/api" {
		t.Fatalf("inside: %+v %v", id, err)
	}
	for _, out := range []string{"spiffe://corp/ns/pets/sa/api/extra", "spiffe://evil/ns/pets/sa/api", "spiffe://corp/ns/a/b/sa/api", ""} {
		if _, err := p.Authenticate(out); code(err) != CodePrincipalForbidden {
			t.Errorf("%q: %v", out, err)
		}
	}
	if _, err := NewMTLS(MTLSConfig{Name: "x", Principals: []string{"["}}); err == nil {
		t.Fatal("bad glob accepted")
	}
}
