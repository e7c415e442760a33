package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
)

// TestTenantsShareNoHosts provisions two tenants' specs through the
// suite's real broker, as Cloud Foundry would (OSB context with
// organization_guid/space_guid): tenant A holds *.shop.example.com, so
// tenant B's login.shop.example.com is a 409 naming A's instance, and
// nothing of it reaches the node; B's own unrelated host is accepted and
// served; A nests its own exact host under its wildcard; names nobody
// may claim are a 400 with the field path.
func TestTenantsShareNoHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSuite(t, ctx)
	echo := strings.TrimPrefix(s.ep.Echo, "http://")
	specFor := func(name string, hosts ...string) []byte {
		return []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"` + name + `","team":"shop"},
"spec":{"hosts":["` + strings.Join(hosts, `","`) + `"],"upstreams":[{"name":"api","endpoints":["` + echo + `"]}],
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`)
	}
	cf := func(org, space string) map[string]any {
		return map[string]any{"platform": "cloudfoundry", "organization_guid": org, "space_guid": space}
	}
	provision := func(id, org, space string, spec []byte) error {
		t.Helper()
		r, err := s.osb.ProvisionIn(ctx, id, spec, org, space, cf(org, space))
		if err != nil {
			return err
		}
		final, err := osbclient.Wait(ctx, time.Minute, func(ctx context.Context) (*osbclient.Response, error) {
			return s.osb.LastOperation(ctx, id, r.Operation)
		}, nil)
		if err != nil || final.State != "succeeded" {
			t.Fatalf("provision %s: %v %+v", id, err, final)
		}
		return nil
	}
	refused := func(err error, code int, what string, want ...string) {
		t.Helper()
		var oe *osbclient.Error
		if !errors.As(err, &oe) || oe.Code != code {
			t.Fatalf("%s: %v, want HTTP %d", what, err, code)
		}
		for _, w := range want {
			if !strings.Contains(oe.Description, w) {
				t.Fatalf("%s: %q does not say %q", what, oe.Description, w)
			}
		}
	}

	// Tenant A (org-a/space-a) claims the wildcard.
	if err := provision("shop-a", "org-a", "space-a", specFor("shop-a", "*.shop.example.com")); err != nil {
		t.Fatalf("tenant A: %v", err)
	}
	// Tenant B under it: 409 naming A's instance.
	err := provision("shop-b-login", "org-b", "space-b", specFor("shop-b-login", "login.shop.example.com"))
	refused(err, 409, "tenant B's host under tenant A's wildcard", `service instance "shop-a"`, "spec.hosts[0]", "another tenant")
	// Tenant B's own unrelated host: accepted (and served, below).
	if err := provision("shop-b", "org-b", "space-b", specFor("shop-b", "b-shop.example.org")); err != nil {
		t.Fatalf("tenant B's own host: %v", err)
	}
	// Tenant A nests its own exact host under its wildcard.
	if err := provision("shop-a-login", "org-a", "space-a", specFor("shop-a-login", "login.shop.example.com")); err != nil {
		t.Fatalf("tenant A nesting its own host: %v", err)
	}
	// The tenant is the platform's word (context), not the request's ids:
	// a platform-neutral context.tenant splits one org, space and team.
	one := func(tenant string) map[string]any {
		return map[string]any{"platform": "gatehouse-e2e", "tenant": tenant}
	}
	if r, err := s.osb.ProvisionIn(ctx, "mall-a", specFor("mall-a", "*.mall.example.com"), "platform", "platform", one("mall-a")); err != nil {
		t.Fatalf("tenant mall-a: %v", err)
	} else if final, err := osbclient.Wait(ctx, time.Minute, func(ctx context.Context) (*osbclient.Response, error) {
		return s.osb.LastOperation(ctx, "mall-a", r.Operation)
	}, nil); err != nil || final.State != "succeeded" {
		t.Fatalf("tenant mall-a: %v %+v", err, final)
	}
	_, err = s.osb.ProvisionIn(ctx, "mall-b", specFor("mall-b", "login.mall.example.com"), "platform", "platform", one("mall-b"))
	refused(err, 409, "context.tenant mall-b under mall-a's wildcard", `service instance "mall-a"`, "spec.hosts[0]")

	// Names nobody may claim, from any tenant.
	for _, h := range []string{"*.com", "localhost", "co.uk", "intranet"} {
		err := provision("hostile", "org-b", "space-b", specFor("hostile", "ok-b.example.org", h))
		refused(err, 400, "host "+h, "spec.hosts[1]")
	}

	// What the node serves: B's host and A's two, never B's refused claim.
	s.node = startEnvoyNode(t, ctx, s.ep.XDS, envoyTLS(t, s.ep.PKI), "e2e-tenants", s.ep.NodeGroup)
	cfg := s.node.waitFor(t, 30*time.Second, "the tenants' routes", func(c nodeConfig) bool {
		rc := c.Routes["gatehouse_routes"]
		return c.Listeners["gatehouse_http"] != nil && rc != nil && selectVirtualHost(rc, "b-shop.example.org") != nil &&
			selectVirtualHost(rc, "login.shop.example.com") != nil && c.CLA["shop-b/api"] != nil && c.CLA["shop-a-login/api"] != nil
	})
	s.connectSidecars(ctx, cfg)
	for host, route := range map[string]string{
		"b-shop.example.org":     "shop-b/r",
		"login.shop.example.com": "shop-a-login/r", // A's, not B's refused claim
		"www.shop.example.com":   "shop-a/r",
	} {
		waitUntil(t, 20*time.Second, host+" served", func() bool {
			return s.do(ctx, httpRequest{Method: "GET", Host: host, Path: "/"}).Status == 200
		})
		if o := s.do(ctx, httpRequest{Method: "GET", Host: host, Path: "/"}); o.Status != 200 || o.Route != route {
			t.Fatalf("%s: status %d route %q (%s), want 200 from %s", host, o.Status, o.Route, o.Reason, route)
		}
	}
}
