package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// tenantProvision is a provision body of spec name with hosts, from the
// Cloud Foundry org/space of the tenant.
func tenantProvision(name, org, host string) []byte {
	params := strings.NewReplacer(`"name":"fz"`, `"name":"`+name+`"`, `"fz.example.com"`, `"`+host+`"`).Replace(validSpec)
	return []byte(`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"` + org + `","space_guid":"s",` +
		`"context":{"platform":"cloudfoundry","organization_guid":"` + org + `","space_guid":"s"},"parameters":` + params + `}`)
}

// TestOverlapWithAProvisionInFlight: tenant B's host under tenant A's
// wildcard is refused with 409 even when A's provision was only accepted
// (no worker has stored it yet); once A's operation fails, the hosts are
// free again.
func TestOverlapWithAProvisionInFlight(t *testing.T) {
	ctx := context.Background()
	a, st := newTestAPI(t, spec.Policy{})

	if w := serve(a, "PUT", "/v2/service_instances/inst-a?accepts_incomplete=true", tenantProvision("shop-a", "org-a", "*.shop.example.com")); w.Code != 202 {
		t.Fatalf("tenant A: HTTP %d %s", w.Code, w.Body)
	}
	w := serve(a, "PUT", "/v2/service_instances/inst-b?accepts_incomplete=true", tenantProvision("shop-b", "org-b", "login.shop.example.com"))
	if w.Code != 409 || !strings.Contains(w.Body.String(), `instance \"inst-a\"`) || !strings.Contains(w.Body.String(), "spec.hosts[0]") {
		t.Fatalf("tenant B under A's in-flight wildcard: HTTP %d %s, want 409 naming instance inst-a at spec.hosts[0]", w.Code, w.Body)
	}
	// The same tenant may nest its own host under its own wildcard.
	if w := serve(a, "PUT", "/v2/service_instances/inst-a2?accepts_incomplete=true", tenantProvision("shop-a2", "org-a", "login.shop.example.com")); w.Code != 202 {
		t.Fatalf("tenant A nesting its own host: HTTP %d %s", w.Code, w.Body)
	}

	// A's and A2's provisions fail: their reservations go, and B may claim.
	for _, id := range []string{"inst-a", "inst-a2"} {
		in, err := st.GetInstance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		in.Op.State = store.StateFailed
		if _, err := st.PutInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if w := serve(a, "PUT", "/v2/service_instances/inst-b?accepts_incomplete=true", tenantProvision("shop-b", "org-b", "login.shop.example.com")); w.Code != 202 {
		t.Fatalf("tenant B after A's provision failed: HTTP %d %s", w.Code, w.Body)
	}
}
