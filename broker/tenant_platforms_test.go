package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// TestTenantFromEveryPlatform provisions overlapping hosts the way each
// kind of OSB platform sends them, over HTTP against the broker and a
// worker on SQLite and on DynamoDB (dynalite) + SQS (goaws):
//
//   - Cloud Foundry: context.organization_guid/space_guid (repeated at the
//     top level, as OSB requires) name the tenant;
//   - no context at all: metadata.team within the top-level
//     organization_guid/space_guid names it, so two teams of one org and
//     space are two tenants;
//   - Kubernetes: context.clusterid/namespace name it.
//
// On each, another tenant's host under a wildcard (or a wildcard over
// another tenant's host) is a 409 naming the owner's instance and stores
// nothing, the owner nests its own hosts, an unrelated host of the other
// tenant is accepted and bindable without accepts_incomplete, and hostile
// names are a 400 with the field path.
func TestTenantFromEveryPlatform(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st, q := be.open(t, 2*time.Second)
			tenantFromEveryPlatform(t, newPipeline(t, pipelineOpts{store: st, queue: q}))
		})
	}
}

// platformBody is a provision body with the REQUIRED top-level ids and, when
// ctx is non-nil, an OSB context object.
func platformBody(org, space string, ctx map[string]any, params map[string]any) map[string]any {
	b := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": params,
		"organization_guid": org, "space_guid": space}
	if ctx != nil {
		b["context"] = ctx
	}
	return b
}

func tenantFromEveryPlatform(t *testing.T, p *pipeline) {
	ctx := context.Background()
	put := func(t *testing.T, id string, body map[string]any) resp {
		t.Helper()
		return p.do(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
	}
	accepted := func(t *testing.T, id string, body map[string]any) {
		t.Helper()
		r := put(t, id, body)
		p.expect(t, r, 202, "provision "+id)
		if last := p.waitOp(t, "/v2/service_instances/"+id, r.str("operation"), 30*time.Second); last.str("state") != "succeeded" {
			t.Fatalf("provision %s: %s", id, last.Raw)
		}
	}
	refused := func(t *testing.T, id string, body map[string]any, code int, want ...string) {
		t.Helper()
		r := put(t, id, body)
		p.expect(t, r, code, "provision "+id)
		if r.str("error") == "" || !containsAll(r.str("description"), want...) {
			t.Fatalf("provision %s: HTTP %d does not say %q: %s", id, code, want, r.Raw)
		}
		if _, err := p.Store.GetInstance(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("refused provision %s stored an instance: %v", id, err)
		}
	}
	bindSync := func(t *testing.T, id string) {
		t.Helper()
		r := p.do(t, "PUT", "/v2/service_instances/"+id+"/service_bindings/k-"+id, map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID,
			"parameters": map[string]any{"provider": "partners", "labels": map[string]string{"plan": "gold"}}})
		p.expect(t, r, 201, "bind "+id+" without accepts_incomplete")
		cred, _ := r.Body["credentials"].(map[string]any)
		if k, _ := cred["api_key"].(string); k == "" {
			t.Fatalf("bind %s: 201 without the key: %s", id, r.Raw)
		}
	}

	platforms := []struct {
		name   string
		domain string
		// a and b are two tenants' bodies; a2 is a's tenant again.
		a, a2, b func(params map[string]any) map[string]any
		tenant   string // a's tenant as stored
	}{
		{
			name: "CloudFoundry", domain: "shop.cf.example.com", tenant: "cf:org-1/space-1",
			a: func(pm map[string]any) map[string]any {
				return platformBody("org-1", "space-1", map[string]any{"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1"}, pm)
			},
			a2: func(pm map[string]any) map[string]any {
				return platformBody("org-1", "space-1", map[string]any{"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1", "instance_name": "other"}, pm)
			},
			b: func(pm map[string]any) map[string]any {
				return platformBody("org-2", "space-2", map[string]any{"platform": "cloudfoundry", "organization_guid": "org-2", "space_guid": "space-2"}, pm)
			},
		},
		{
			// No context: the team decides, within one org and space.
			name: "NoContext", domain: "shop.plain.example.com", tenant: "team:alpha@org-x/space-x",
			a: func(pm map[string]any) map[string]any {
				return platformBody("org-x", "space-x", nil, platformTeam(pm, "alpha"))
			},
			a2: func(pm map[string]any) map[string]any {
				return platformBody("org-x", "space-x", nil, platformTeam(pm, "alpha"))
			},
			b: func(pm map[string]any) map[string]any {
				return platformBody("org-x", "space-x", nil, platformTeam(pm, "beta"))
			},
		},
		{
			name: "Kubernetes", domain: "shop.kube.example.com", tenant: "k8s:cluster-1/ns-a",
			a: func(pm map[string]any) map[string]any {
				return platformBody("cluster-1", "ns-a", map[string]any{"platform": "kubernetes", "clusterid": "cluster-1", "namespace": "ns-a"}, pm)
			},
			a2: func(pm map[string]any) map[string]any {
				return platformBody("cluster-1", "ns-a", map[string]any{"platform": "kubernetes", "clusterid": "cluster-1", "namespace": "ns-a"}, pm)
			},
			b: func(pm map[string]any) map[string]any {
				return platformBody("cluster-1", "ns-b", map[string]any{"platform": "kubernetes", "clusterid": "cluster-1", "namespace": "ns-b"}, pm)
			},
		},
	}
	for _, pf := range platforms {
		t.Run(pf.name, func(t *testing.T) {
			pre := strings.ToLower(pf.name)
			owner := pre + "-a"
			accepted(t, owner, pf.a(edgeRoute(owner, "*."+pf.domain)))
			if in, err := p.Store.GetInstance(ctx, owner); err != nil || in.Tenant != pf.tenant {
				t.Fatalf("tenant of %s = %q (%v), want %q", owner, in.Tenant, err, pf.tenant)
			}
			// Another tenant: an exact host under the wildcard, a deeper
			// one, and a wildcard over it are all the owner's.
			for i, h := range []string{"login." + pf.domain, "a.b." + pf.domain, "*." + strings.SplitN(pf.domain, ".", 2)[1]} {
				id := pre + "-b-clash-" + string(rune('0'+i))
				refused(t, id, pf.b(edgeRoute(id, "free-"+id+".example.org", h)), 409,
					`service instance "`+owner+`"`, "spec.hosts[1]", "another tenant")
			}
			// The owner nests its own exact host under its wildcard.
			accepted(t, pre+"-a-login", pf.a2(edgeRoute(pre+"-a-login", "login."+pf.domain)))
			// The other tenant's unrelated host is accepted and bindable
			// by a platform that does not send accepts_incomplete.
			accepted(t, pre+"-b-own", pf.b(edgeRoute(pre+"-b-own", "own."+pre+".example.net")))
			bindSync(t, pre+"-b-own")
			// Hostile names are nobody's, whichever platform asks.
			for _, h := range []string{"*.com", "localhost", "co.uk", "intranet"} {
				refused(t, pre+"-hostile", pf.b(edgeRoute(pre+"-hostile", "ok-"+pre+".example.net", h)), 400, "spec.hosts[1]")
			}
		})
	}
}

func platformTeam(params map[string]any, team string) map[string]any {
	params["metadata"].(map[string]any)["team"] = team
	return params
}
