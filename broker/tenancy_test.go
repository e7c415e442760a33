package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

// cfBody is a provision body from Cloud Foundry org/space.
func cfBody(org, space string, params any) map[string]any {
	b := provisionBody(params)
	b["organization_guid"], b["space_guid"] = org, space
	b["context"] = map[string]any{"platform": "cloudfoundry", "organization_guid": org, "space_guid": space}
	return b
}

// TestTenantHosts drives the tenant host rules at provision over
// HTTP against the broker and a worker, on SQLite and on DynamoDB
// (dynalite) + SQS (goaws): a host belongs to one tenant, hostile names
// are refused with their field path, the operator's domain allow-list
// holds, and OSB's REQUIRED organization_guid/space_guid are enforced.
func TestTenantHosts(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			tenantHosts(t, st, q)
		})
	}
}

func tenantHosts(t *testing.T, st store.Store, q queue.Queue) {
	dir := t.TempDir()
	domains := filepath.Join(dir, "domains.yaml")
	if err := os.WriteFile(domains, []byte("cf:org-a:\n  - pets.example.com\n  - example.com\ncf:org-b:\n  - example.com\nteam:pets:\n  - example.com\nteam:cats:\n  - example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := tenancy.LoadDomains(domains)
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, pipelineOpts{store: st, queue: q, tenancy: api.Tenancy{Domains: d}})
	ctx := context.Background()
	put := func(id string, body map[string]any) resp {
		return p.do(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
	}
	wait := func(id string, r resp) resp {
		t.Helper()
		p.expect(t, r, 202, "provision "+id)
		return p.waitOp(t, "/v2/service_instances/"+id, r.str("operation"), 30*time.Second)
	}
	notStored := func(id string) {
		t.Helper()
		if _, err := p.Store.GetInstance(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused provision stored instance %s: %v", id, err)
		}
	}

	// Tenant A (org-a/space-a) owns *.pets.example.com.
	if last := wait("i-a", put("i-a", cfBody("org-a", "space-a", edgeRoute("pets-a", "*.pets.example.com")))); last.str("state") != "succeeded" {
		t.Fatalf("tenant A: %s", last.Raw)
	}
	if in, _ := p.Store.GetInstance(ctx, "i-a"); in.Tenant != "cf:org-a/space-a" {
		t.Fatalf("instance tenant = %q, want the OSB context's", in.Tenant)
	}

	t.Run("OverlapBetweenTenantsIs409NamingTheOwner", func(t *testing.T) {
		for id, hosts := range map[string][]string{
			"b-exact":    {"login.pets.example.com"}, // exact under A's wildcard
			"b-deep":     {"a.b.pets.example.com"},   // deeper under it
			"b-wildcard": {"*.example.com"},          // covers A's wildcard
			"b-mixed":    {"ok.example.com", "x.pets.example.com"},
		} {
			r := put(id, cfBody("org-b", "space-b", edgeRoute("spec-"+id, hosts...)))
			p.expect(t, r, 409, id)
			desc := r.str("description")
			if r.str("error") == "" || !containsAll(desc, `service instance "i-a"`, `EdgeRoute "pets-a"`, "spec.hosts[", "another tenant") {
				t.Fatalf("%s: 409 does not name the owner: %s", id, r.Raw)
			}
			notStored(id)
		}
		// A self-declared metadata.team is no way into A's tenant.
		r := put("b-team", provisionBody(edgeRoute("spec-b-team", "login.pets.example.com")))
		p.expect(t, r, 409, "team fallback under another tenant's wildcard")
	})

	t.Run("SameTenantNestsButNeverDuplicates", func(t *testing.T) {
		r := put("a-login", cfBody("org-a", "space-a", edgeRoute("pets-login", "login.pets.example.com")))
		if last := wait("a-login", r); last.str("state") != "succeeded" {
			t.Fatalf("own host under own wildcard: %s", last.Raw)
		}
		r = put("a-dup", cfBody("org-a", "space-a", edgeRoute("pets-dup", "login.pets.example.com")))
		p.expect(t, r, 409, "the same exact host twice within one tenant")
		if !strings.Contains(r.str("description"), `"a-login"`) {
			t.Fatalf("duplicate host: %s", r.Raw)
		}
		// Another space of org A is another tenant.
		p.expect(t, put("a2", cfBody("org-a", "space-2", edgeRoute("pets-2", "shop.pets.example.com"))), 409, "another space")
	})

	t.Run("HostileNames400WithFieldPath", func(t *testing.T) {
		for _, h := range []string{"*.com", "com", "*.co.uk", "co.uk", "localhost", "api.localhost", "intranet", "10.0.0.1", "*.github.io"} {
			r := put("hostile", cfBody("org-a", "space-a", edgeRoute("hostile", "ok.example.com", h)))
			p.expect(t, r, 400, "host "+h)
			if !strings.Contains(r.str("description"), "spec.hosts[1]") {
				t.Fatalf("host %s: no field path: %s", h, r.Raw)
			}
			notStored("hostile")
		}
	})

	t.Run("WithoutContextTheTenantIsTheTeamWithinOrgAndSpace", func(t *testing.T) {
		plain := func(org, space string, params map[string]any) map[string]any {
			b := provisionBody(params)
			b["organization_guid"], b["space_guid"] = org, space
			return b
		}
		cats := func(name string, hosts ...string) map[string]any {
			r := edgeRoute(name, hosts...)
			r["metadata"].(map[string]any)["team"] = "cats"
			return r
		}
		if last := wait("z-wild", put("z-wild", plain("o1", "s1", edgeRoute("z-wild", "*.zoo.example.com")))); last.str("state") != "succeeded" {
			t.Fatalf("z-wild: %s", last.Raw)
		}
		if in, _ := p.Store.GetInstance(ctx, "z-wild"); in.Tenant != "team:pets@o1/s1" {
			t.Fatalf("tenant without a context = %q", in.Tenant)
		}
		p.expect(t, put("z-org", plain("o2", "s1", edgeRoute("z-org", "a.zoo.example.com"))), 409, "same team, another org")
		p.expect(t, put("z-team", plain("o1", "s1", cats("z-team", "b.zoo.example.com"))), 409, "same org and space, another team")
		if last := wait("z-own", put("z-own", plain("o1", "s1", edgeRoute("z-own", "c.zoo.example.com")))); last.str("state") != "succeeded" {
			t.Fatalf("same team, org and space nests: %s", last.Raw)
		}
	})

	t.Run("TenantDomains", func(t *testing.T) {
		r := put("b-out", cfBody("org-b", "space-b", edgeRoute("b-out", "shop.example.org")))
		p.expect(t, r, 400, "host outside the tenant's domains")
		if !containsAll(r.str("description"), "spec.hosts[0]", `"cf:org-b/space-b"`, "example.com") {
			t.Fatalf("outside domains: %s", r.Raw)
		}
		r = put("k8s", map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "organization_guid": "c1", "space_guid": "ns",
			"context": map[string]any{"platform": "kubernetes", "clusterid": "c1", "namespace": "ns"}, "parameters": edgeRoute("k8s", "k.example.com")})
		p.expect(t, r, 400, "a tenant the allow-list does not name")
		notStored("b-out")
		notStored("k8s")
		if last := wait("b-in", put("b-in", cfBody("org-b", "space-b", edgeRoute("b-in", "shop.example.com")))); last.str("state") != "succeeded" {
			t.Fatalf("inside domains: %s", last.Raw)
		}
	})

	t.Run("UpdateKeepsTheTenant", func(t *testing.T) {
		// Tenant B may not move its host under A's wildcard by update.
		r := p.do(t, "PATCH", "/v2/service_instances/b-in?accepts_incomplete=true", map[string]any{"service_id": api.ServiceID,
			"parameters": edgeRoute("b-in", "shop.example.com", "cart.pets.example.com")})
		p.expect(t, r, 409, "update into another tenant's wildcard")
	})

	t.Run("OSBRequiredPlatformIDs", func(t *testing.T) {
		for _, drop := range []string{"organization_guid", "space_guid"} {
			b := cfBody("org-a", "space-a", edgeRoute("noorg", "noorg.example.com"))
			delete(b, drop)
			r := put("noorg", b)
			p.expect(t, r, 400, "provision without "+drop)
			if !strings.Contains(r.str("description"), drop) {
				t.Fatalf("without %s: %s", drop, r.Raw)
			}
			b = cfBody("org-a", "space-a", edgeRoute("noorg", "noorg.example.com"))
			b[drop] = " "
			p.expect(t, put("noorg", b), 400, "provision with an empty "+drop)
		}
		notStored("noorg")
	})
}

// tlsRoute is edgeRoute with spec.tls naming cert.
func tlsRoute(name, cert string, hosts ...string) map[string]any {
	r := edgeRoute(name, hosts...)
	r["spec"].(map[string]any)["tls"] = map[string]any{"certificate": cert}
	return r
}

// TestCertificateOwnership drives certificate ownership over HTTP on SQLite
// and on DynamoDB + SQS: the broker refuses (400, spec.tls.certificate) a
// spec naming a certificate whose SANs do not cover all of its hosts, or
// one the operator bound to other tenants; a broker that does not know the
// certificate directory leaves it to the worker, whose compile check (the
// control plane's, with its options) fails the operation.
func TestCertificateOwnership(t *testing.T) {
	certDir := t.TempDir()
	writeCert(t, certDir, "shop-cert", "shop.example.com", "*.shop.example.com")
	owners := tenancy.CertOwners{"shop-cert": {"cf:org-shop"}}
	checker, err := compile.NewChecker(compile.Options{CertDir: certDir, CertOwners: owners})
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, workers: 1, compile: checker.Check,
				tenancy: api.Tenancy{CertDir: certDir, CertOwners: owners}})
			put := func(id string, body map[string]any) resp {
				return p.do(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
			}
			r := put("shop", cfBody("org-shop", "s1", tlsRoute("shop", "shop-cert", "shop.example.com", "api.shop.example.com")))
			p.expect(t, r, 202, "covered hosts, owning tenant")
			if last := p.waitOp(t, "/v2/service_instances/shop", r.str("operation"), 30*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("shop: %s", last.Raw)
			}
			r = put("evil", cfBody("org-shop", "s1", tlsRoute("evil", "shop-cert", "evil.example.com")))
			p.expect(t, r, 400, "a certificate that does not cover the hosts")
			if !containsAll(r.str("description"), "spec.tls.certificate", "does not cover", "evil.example.com") {
				t.Fatalf("not covered: %s", r.Raw)
			}
			r = put("thief", cfBody("org-other", "s1", tlsRoute("thief", "shop-cert", "cart.shop.example.org")))
			p.expect(t, r, 400, "a certificate bound to another tenant")
			if !containsAll(r.str("description"), "spec.tls.certificate", "bound to other tenants") {
				t.Fatalf("bound: %s", r.Raw)
			}
			r = put("missing", cfBody("org-shop", "s1", tlsRoute("missing", "no-such-cert", "m.example.com")))
			p.expect(t, r, 400, "a certificate the operator does not provide")
			for _, id := range []string{"evil", "thief", "missing"} {
				if _, err := p.Store.GetInstance(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("a refused provision stored %s: %v", id, err)
				}
			}
		})
	}
	// The broker without the certificate directory: the worker refuses.
	p := newPipeline(t, pipelineOpts{workers: 1, compile: checker.Check})
	r := p.do(t, "PUT", "/v2/service_instances/evil?accepts_incomplete=true", cfBody("org-shop", "s1", tlsRoute("evil", "shop-cert", "evil.example.com")))
	p.expect(t, r, 202, "provision (the broker cannot check the certificate)")
	last := p.waitOp(t, "/v2/service_instances/evil", r.str("operation"), 30*time.Second)
	if last.str("state") != "failed" || !containsAll(last.str("description"), "spec.tls.certificate", "does not cover") {
		t.Fatalf("the worker let a certificate not covering the hosts through: %s", last.Raw)
	}
	if _, specs, _ := p.Store.Snapshot(context.Background()); len(specs) != 0 {
		t.Fatalf("the refused spec reached the route store: %v", specs)
	}
}

// TestWorkerRechecksTenantHosts: two tenants' overlapping provisions sent
// to two broker replicas both pass the API while no worker runs (neither
// is stored yet, and each replica reserves only the claims it accepted
// itself; one broker refuses the second at once, TestOverlapWithAProvisionInFlight
// in broker/api); the worker then applies the rule with the instance's
// tenant: the first goes live, the second fails naming the owner, and
// nothing of it is stored.
func TestWorkerRechecksTenantHosts(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			o := pipelineOpts{store: st, queue: q, noWorker: true, workers: 1}
			p := newPipeline(t, o)
			ra := p.do(t, "PUT", "/v2/service_instances/wa?accepts_incomplete=true", cfBody("org-a", "s", edgeRoute("wild-a", "*.pets.example.com")))
			p.expect(t, ra, 202, "tenant A")
			replica := newPipeline(t, o)
			rb := replica.do(t, "PUT", "/v2/service_instances/wb?accepts_incomplete=true", cfBody("org-b", "s", edgeRoute("exact-b", "login.pets.example.com")))
			replica.expect(t, rb, 202, "tenant B on another broker replica (nothing stored to clash with yet)")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			p.startWorker(ctx, t, &wg, o)
			t.Cleanup(func() { cancel(); wg.Wait() })
			if last := p.waitOp(t, "/v2/service_instances/wa", ra.str("operation"), 30*time.Second); last.str("state") != "succeeded" {
				t.Fatalf("A: %s", last.Raw)
			}
			last := p.waitOp(t, "/v2/service_instances/wb", rb.str("operation"), 30*time.Second)
			if last.str("state") != "failed" || !containsAll(last.str("description"), "spec.hosts[0]", `"wa"`, "another tenant") {
				t.Fatalf("B: %s", last.Raw)
			}
			if _, err := p.Store.GetSpec(ctx, "exact-b"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("B's spec reached the route store: %v", err)
			}
		})
	}
}

// writeCert writes dir/name.crt and dir/name.key: a self-signed ECDSA
// certificate for hosts.
func writeCert(t *testing.T, dir, name string, hosts ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
