package compile

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func teamSpec(name, team string, hosts ...string) []byte {
	b := strings.Replace(string(specBytes(name, `"`+strings.Join(hosts, `", "`)+`"`)), "team: t}", "team: "+team+"}", 1)
	return []byte(b)
}

func published(res *Result) map[string]bool {
	out := map[string]bool{}
	for _, s := range res.Published() {
		out[s.Name] = true
	}
	return out
}

func specErr(res *Result, name string) string {
	for _, s := range res.Specs {
		if s.Name == name && s.Err != nil {
			return s.Err.Error()
		}
	}
	return ""
}

// TestHostRulesPruneOthersShip: specs from files or S3 (tenant =
// metadata.team) follow the broker's host rules: an exact host under
// another tenant's wildcard, a wildcard over another tenant's host, the
// same host twice and hostile names are pruned with the reason; the
// others ship; the older (or, without store revisions, first by origin)
// claim wins whatever the order of delivery; a pruned spec publishes once
// the clash is gone.
func TestHostRulesPruneOthersShip(t *testing.T) {
	c := newCompiler(t)
	specs := []source.Spec{
		{Origin: "a.yaml", Data: teamSpec("pets", "pets", "*.pets.example.com")},
		{Origin: "b.yaml", Data: teamSpec("cats-login", "cats", "login.pets.example.com")},
		{Origin: "c.yaml", Data: teamSpec("pets-shop", "pets", "shop.pets.example.com")},
		{Origin: "d.yaml", Data: teamSpec("cats-all", "cats", "*.example.com")},
		{Origin: "e.yaml", Data: teamSpec("tld", "cats", "*.com")},
		{Origin: "f.yaml", Data: teamSpec("local", "cats", "localhost")},
		{Origin: "g.yaml", Data: teamSpec("suffix", "cats", "ok.example.org", "*.co.uk")},
		{Origin: "h.yaml", Data: teamSpec("pets-dup", "pets", "shop.pets.example.com")},
	}
	res := c.Compile(source.Revision{ID: "r1", Specs: specs})
	if got := published(res); len(got) != 2 || !got["pets"] || !got["pets-shop"] {
		t.Fatalf("published = %v, want pets and pets-shop", got)
	}
	for name, want := range map[string]string{
		"cats-login": `spec.hosts[0]: host "login.pets.example.com" is under wildcard "*.pets.example.com" of another tenant: EdgeRoute "pets" (a.yaml)`,
		"cats-all":   `spec.hosts[0]: wildcard "*.example.com" overlaps wildcard "*.pets.example.com" of another tenant`,
		"tld":        `spec.hosts[0]: host "*.com" covers a whole top-level domain`,
		"local":      `spec.hosts[0]: host "localhost" localhost names`,
		"suffix":     `spec.hosts[1]: host "*.co.uk" covers every domain under the public suffix "co.uk"`,
		"pets-dup":   `EdgeRoute "pets-shop" (c.yaml)`,
	} {
		if got := specErr(res, name); !strings.Contains(got, want) {
			t.Errorf("%s: error %q, want one containing %q", name, got, want)
		}
	}
	if _, _, err := res.Resources("any"); err != nil {
		t.Fatal(err)
	}

	// Deterministic: reversed delivery, same winners.
	rev := append([]source.Spec(nil), specs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	c2 := newCompiler(t)
	res2 := c2.Compile(source.Revision{ID: "r1", Specs: rev})
	if got := published(res2); len(got) != 2 || !got["pets"] || !got["pets-shop"] {
		t.Fatalf("reversed delivery publishes %v, want the same winners", got)
	}

	// With store revisions the older claim wins in any delivery order.
	for _, order := range [][]source.Spec{
		{{Origin: "broker:new", Name: "new", Revision: 9, Data: teamSpec("new", "cats", "login.pets.example.com")}, {Origin: "broker:old", Name: "old", Revision: 3, Data: teamSpec("old", "pets", "*.pets.example.com")}},
		{{Origin: "broker:old", Name: "old", Revision: 3, Data: teamSpec("old", "pets", "*.pets.example.com")}, {Origin: "broker:new", Name: "new", Revision: 9, Data: teamSpec("new", "cats", "login.pets.example.com")}},
	} {
		r := newCompiler(t).Compile(source.Revision{ID: "s", Specs: order})
		if got := published(r); len(got) != 1 || !got["old"] {
			t.Fatalf("published %v, want the older claim", got)
		}
	}

	// The owner leaves: the pruned spec ships on the next revision
	// without changing a byte.
	res3 := c.Compile(source.Revision{ID: "r2", Specs: specs[1:2]})
	if got := published(res3); !got["cats-login"] {
		t.Fatalf("after the owner left: published %v, errors %q", got, specErr(res3, "cats-login"))
	}
}

// TestSourceTenantWinsOverTeam: the broker's tenant (from the OSB
// context) decides, not metadata.team.
func TestSourceTenantWinsOverTeam(t *testing.T) {
	res := newCompiler(t).Compile(source.Revision{ID: "r", Specs: []source.Spec{
		{Origin: "broker:a", Name: "a", Revision: 1, Tenant: "cf:org/space", Data: teamSpec("a", "x", "*.pets.example.com")},
		{Origin: "broker:b", Name: "b", Revision: 2, Tenant: "cf:org/space", Data: teamSpec("b", "y", "login.pets.example.com")},
		{Origin: "broker:c", Name: "c", Revision: 3, Tenant: "cf:other/space", Data: teamSpec("c", "x", "shop.pets.example.com")},
	}})
	if got := published(res); len(got) != 2 || !got["a"] || !got["b"] {
		t.Fatalf("published = %v (c: %s)", got, specErr(res, "c"))
	}
}

// TestCertificateOwnership: a spec may name a certificate only when its
// SANs cover every host of the spec and, when the operator binds it to
// tenants, the spec's tenant is one of them.
func TestCertificateOwnership(t *testing.T) {
	dir := t.TempDir()
	writeTestCert(t, dir, "shop-cert", 7, "shop.example.com", "*.shop.example.com")
	withTLS := func(b []byte, cert string) []byte {
		return []byte(strings.Replace(string(b), "spec:\n", "spec:\n  tls: {certificate: "+cert+"}\n", 1))
	}
	c, err := New(Options{CertDir: dir, CertOwners: tenancy.CertOwners{"shop-cert": {"team:shop"}}})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "r", Specs: []source.Spec{
		{Origin: "shop.yaml", Data: withTLS(teamSpec("shop", "shop", "shop.example.com", "api.shop.example.com"), "shop-cert")},
		{Origin: "evil.yaml", Data: withTLS(teamSpec("evil", "shop", "evil.example.com"), "shop-cert")},
		{Origin: "thief.yaml", Data: withTLS(teamSpec("thief", "other", "cart.shop.example.com"), "shop-cert")},
	}})
	if got := published(res); len(got) != 1 || !got["shop"] {
		t.Fatalf("published = %v (evil: %s; thief: %s)", got, specErr(res, "evil"), specErr(res, "thief"))
	}
	if got := specErr(res, "evil"); !strings.Contains(got, `spec.tls.certificate: certificate "shop-cert" does not cover host(s) evil.example.com`) {
		t.Errorf("evil: %s", got)
	}
	if got := specErr(res, "thief"); !strings.Contains(got, `spec.tls.certificate: certificate "shop-cert" is bound to other tenants`) {
		t.Errorf("thief: %s", got)
	}
}

// TestTenantDomainsForFiles: with --tenant-domains the control plane (and
// the worker's check) refuse hosts outside the tenant's domains, the
// tenant of a file spec being team:<metadata.team>.
func TestTenantDomainsForFiles(t *testing.T) {
	c, err := New(Options{TenantDomains: tenancy.Domains{"team:pets": {"pets.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "r", Specs: []source.Spec{
		{Origin: "in.yaml", Data: teamSpec("in", "pets", "api.pets.example.com")},
		{Origin: "out.yaml", Data: teamSpec("out", "pets", "api.cats.example.com")},
		{Origin: "other.yaml", Data: teamSpec("other", "cats", "www.cats.example.com")},
	}})
	if got := published(res); len(got) != 1 || !got["in"] {
		t.Fatalf("published = %v", got)
	}
	if got := specErr(res, "out"); !strings.Contains(got, `spec.hosts[0]: host "api.cats.example.com" is outside the domains tenant "team:pets" may use`) {
		t.Errorf("out: %s", got)
	}
	if got := specErr(res, "other"); !strings.Contains(got, `tenant "team:cats" has no allowed domains`) {
		t.Errorf("other: %s", got)
	}
}

// TestHostClaimsIndexMatchesScan: the indexed host claims find exactly
// what a scan of every accepted claim with tenancy.Overlap finds, in the
// same order (so the same error names the same owner), over random host
// sets with nested wildcards, repeats, upper case and shared tenants.
func TestHostClaimsIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := []string{"a", "b", "c", "A"}
	host := func() string {
		var parts []string
		for range 1 + rng.IntN(4) {
			parts = append(parts, labels[rng.IntN(len(labels))])
		}
		h := strings.Join(parts, ".")
		if rng.IntN(3) == 0 {
			h = "*." + h
		}
		return h
	}
	tenants := []string{"", "t1", "t2", "t3"}
	checked, clashes := 0, 0
	for round := range 300 {
		index := newHostClaims()
		var scan []*Spec // accepted, in claim order
		for i := range 12 {
			s := &Spec{Name: fmt.Sprintf("s%d", i), Origin: fmt.Sprintf("r%d/%d.yaml", round, i), Tenant: tenants[rng.IntN(len(tenants))],
				doc: &spec.Document{}}
			for range 1 + rng.IntN(3) {
				s.doc.EdgeRoute.Spec.Hosts = append(s.doc.EdgeRoute.Spec.Hosts, host())
			}
			got, want := index.clash(s), scanClash(scan, s)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d, spec %d %q (tenant %q) after %d accepted:\nindex: %v\nscan:  %v", round, i, s.doc.EdgeRoute.Spec.Hosts, s.Tenant, len(scan), got, want)
			}
			checked++
			if want != nil {
				clashes++
				continue
			}
			index.add(s)
			scan = append(scan, s)
		}
	}
	if clashes < checked/10 || clashes > checked*9/10 {
		t.Fatalf("%d clashes in %d checks: the random hosts do not exercise both outcomes", clashes, checked)
	}
}

// scanClash is the rule without an index: every host of s against every
// accepted host, the same pattern first, then in claim order.
func scanClash(accepted []*Spec, s *Spec) error {
	type claim struct {
		host string
		s    *Spec
	}
	var all []claim
	for _, a := range accepted {
		for _, h := range a.doc.EdgeRoute.Spec.Hosts {
			all = append(all, claim{strings.ToLower(h), a})
		}
	}
	for i, h := range s.doc.EdgeRoute.Spec.Hosts {
		lh := strings.ToLower(h)
		var cands []claim
		for _, c := range all {
			if c.host == lh {
				cands = append(cands, c)
				break
			}
		}
		for _, c := range all {
			if c.host != lh && tenancy.Overlap(lh, c.host) {
				cands = append(cands, c)
			}
		}
		for _, o := range cands {
			if why := tenancy.Clash(tenantOf(s), lh, tenantOf(o.s), o.host); why != "" {
				return fmt.Errorf("%s: spec.hosts[%d]: %s: EdgeRoute %q (%s) claims %q", s.Origin, i, why, o.s.Name, o.s.Origin, o.host)
			}
		}
	}
	return nil
}
