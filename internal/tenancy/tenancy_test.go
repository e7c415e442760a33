package tenancy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

func TestCheckHost(t *testing.T) {
	for host, ok := range map[string]bool{
		"api.example.com":        true,
		"*.pets.example.com":     true,
		"*.example.com":          true,
		"example.co.uk":          true,
		"*.example.co.uk":        true,
		"com":                    false,
		"*.com":                  false,
		"co.uk":                  false,
		"*.co.uk":                false,
		"localhost":              false,
		"*.localhost":            false,
		"admin.localhost":        false,
		"intranet":               false,
		"*.intranet":             false,
		"10.0.0.1":               false,
		"github.io":              false,
		"*.github.io":            false,
		"team.github.io":         true,
		"a*.example.com":         false,
		"":                       false,
		"*.s3.amazonaws.com":     false,
		"LOCALHOST":              false,
		"Api.Example.Com":        true,
		"*.apps.example.corp":    true,
		"printer.local":          false,
		"1.0.0.127.in-addr.arpa": false,
		"x.invalid":              false,
	} {
		err := tenancy.CheckHost(host)
		if (err == nil) != ok {
			t.Errorf("CheckHost(%q) = %v, want ok=%v", host, err, ok)
		}
	}
}

func TestOverlapAndClash(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{a: "a.example.com", b: "a.example.com", want: true},
		{a: "*.example.com", b: "a.example.com", want: true},
		{a: "*.example.com", b: "a.b.example.com", want: true},
		{a: "*.example.com", b: "example.com"},
		{a: "*.example.com", b: "*.b.example.com", want: true},
		{a: "*.a.example.com", b: "*.b.example.com"},
		{a: "a.example.com", b: "b.example.com"},
		{a: "*.example.com", b: "xexample.com"},
	} {
		if got := tenancy.Overlap(c.a, c.b); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v", c.a, c.b, got)
		}
		if got := tenancy.Overlap(c.b, c.a); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v", c.b, c.a, got)
		}
	}
	if tenancy.Clash("t1", "a.pets.example.com", "t1", "*.pets.example.com") != "" {
		t.Error("a tenant may nest its own hosts")
	}
	if tenancy.Clash("t1", "a.pets.example.com", "t1", "a.pets.example.com") == "" {
		t.Error("the same host twice is a clash within one tenant")
	}
	if tenancy.Clash("t2", "a.pets.example.com", "t1", "*.pets.example.com") == "" {
		t.Error("another tenant's wildcard")
	}
	if tenancy.Clash("", "a.pets.example.com", "", "*.pets.example.com") == "" {
		t.Error("no tenant shares nothing")
	}
}

func TestFromContext(t *testing.T) {
	for raw, want := range map[string]string{
		``:                    "",
		`null`:                "",
		`{"platform":"test"}`: "",
		`{"platform":"cloudfoundry","organization_guid":"o1","space_guid":"s1"}`: "cf:o1/s1",
		`{"platform":"kubernetes","namespace":"ns","clusterid":"c1"}`:            "k8s:c1/ns",
		`{"tenant":"payments","organization_guid":"o1"}`:                         "payments",
		`{"platform":"kubernetes","namespace":"ns"}`:                             "k8s:default/ns",
	} {
		got, err := tenancy.FromContext([]byte(raw))
		if err != nil || got != want {
			t.Errorf("FromContext(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{`[]`, `{"tenant":1}`, `{"namespace":"a/b"}`} {
		if _, err := tenancy.FromContext([]byte(raw)); err == nil {
			t.Errorf("FromContext(%s) accepted", raw)
		}
	}
	if tenancy.FromTeam(" ") != "" || tenancy.FromTeam("pets") != "team:pets" {
		t.Error("FromTeam")
	}
	if got := tenancy.FromTeamIn("pets", "o1", "s1"); got != "team:pets@o1/s1" {
		t.Errorf("FromTeamIn = %q", got)
	}
	if tenancy.FromTeamIn("pets", "", "") != "team:pets" {
		t.Error("FromTeamIn without org/space")
	}
	for _, c := range []struct {
		key, tenant string
		want        bool
	}{
		{key: "team:pets", tenant: "team:pets@o/s", want: true},
		{key: "team:pets", tenant: "team:petshop@o/s"},
		{key: "cf:o", tenant: "cf:o/s", want: true},
		{key: "cf:o", tenant: "cf:other/s"},
		{key: "cf:o/s", tenant: "cf:o/s", want: true},
		{key: "", tenant: ""},
	} {
		if got := tenancy.KeyMatches(c.key, c.tenant); got != c.want {
			t.Errorf("KeyMatches(%q, %q) = %v", c.key, c.tenant, got)
		}
	}
}

func TestDomains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "domains.yaml")
	if err := os.WriteFile(path, []byte("cf:org-a:\n  - pets.example.com\nteam:cats:\n  - .cats.example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := tenancy.LoadDomains(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tenant, host string
		ok           bool
	}{
		{tenant: "cf:org-a/space-1", host: "api.pets.example.com", ok: true},
		{tenant: "cf:org-a/space-1", host: "*.pets.example.com", ok: true},
		{tenant: "cf:org-a/space-1", host: "pets.example.com", ok: true},
		{tenant: "cf:org-a/space-1", host: "evilpets.example.com"},
		{tenant: "cf:org-a/space-1", host: "api.cats.example.org"},
		{tenant: "team:cats", host: "www.cats.example.org", ok: true},
		{tenant: "team:dogs", host: "www.dogs.example.org"},
		{host: "www.cats.example.org"},
	} {
		if err := d.Allow(c.tenant, c.host); (err == nil) != c.ok {
			t.Errorf("Allow(%q, %q) = %v, want ok=%v", c.tenant, c.host, err, c.ok)
		}
	}
	if err := tenancy.Domains(nil).Allow("x", "a.example.com"); err != nil {
		t.Errorf("no allow-list refused: %v", err)
	}
	if err := os.WriteFile(path, []byte("t:\n  - com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tenancy.LoadDomains(path); err == nil || !strings.Contains(err.Error(), "t[0]") {
		t.Errorf("a public suffix as an allowed domain: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pets.example.com"},
		DNSNames: []string{"pets.example.com", "*.pets.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	if u := tenancy.Uncovered(leaf, []string{"pets.example.com", "api.pets.example.com", "*.pets.example.com"}); len(u) != 0 {
		t.Errorf("covered hosts reported: %v", u)
	}
	if u := tenancy.Uncovered(leaf, []string{"a.b.pets.example.com", "cats.example.com", "*.x.pets.example.com"}); len(u) != 3 {
		t.Errorf("uncovered = %v, want all three", u)
	}
	o := tenancy.CertOwners{"pets-cert": {"cf:org-a"}}
	if o.Allow("pets-cert", "cf:org-a/s") != nil || o.Allow("pets-cert", "cf:org-b/s") == nil || o.Allow("pets-cert", "") == nil || o.Allow("other", "x") != nil {
		t.Error("CertOwners.Allow")
	}
}

// FuzzHostRules: CheckHost and Overlap never panic; a claimable host is
// never a single label or a public suffix; Overlap is symmetric and
// reflexive; a host clashes with itself whatever the tenants.
func FuzzHostRules(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.pets.example.com", "*.com", "co.uk", "localhost", "10.0.0.1", "*.", "..", "*.*.a.b", "a..b"} {
		f.Add(s, "*.example.com")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if tenancy.CheckHost(a) == nil {
			name := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(a)), "*.")
			if !strings.Contains(name, ".") || name == "localhost" {
				t.Fatalf("CheckHost(%q) accepted a single label", a)
			}
		}
		if tenancy.Overlap(a, b) != tenancy.Overlap(b, a) {
			t.Fatalf("Overlap(%q, %q) is not symmetric", a, b)
		}
		if !tenancy.Overlap(a, a) || tenancy.Clash("t", a, "t", a) == "" {
			t.Fatalf("%q does not clash with itself", a)
		}
	})
}

// FuzzFromContext: any OSB context either yields a tenant without
// newlines or is refused; it never panics.
func FuzzFromContext(f *testing.F) {
	for _, s := range []string{``, `null`, `{"tenant":"a"}`, `{"organization_guid":"o","space_guid":"s"}`, `{"namespace":"n","clusterid":"c"}`, `[]`, `{"tenant":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := tenancy.FromContext(raw)
		if err == nil && strings.ContainsAny(got, "\n\x00") {
			t.Fatalf("FromContext(%q) = %q", raw, got)
		}
	})
}
