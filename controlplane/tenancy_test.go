package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// TestBrokerStoreTenantsArePruned: specs in the broker's store that clash
// across tenants (two provisions the broker accepted at once) are pruned
// by the control plane with the instance's tenant, not metadata.team: the
// older claim is published, the newer one reported with the reason, and a
// same-tenant nested host ships.
func TestBrokerStoreTenantsArePruned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openBrokerStore(t, ctx)
	put := func(name, tenant, host string) int64 {
		t.Helper()
		if _, err := st.PutInstance(ctx, store.Instance{ID: "i-" + name, SpecName: name, Tenant: tenant}); err != nil {
			t.Fatal(err)
		}
		// Every spec says team t: only the instances' tenants tell them apart.
		return putSpecYAML(t, ctx, st, name, strings.Replace(specYAML(name, "HOSTX", "10.0.0.1:80"), "HOSTX", `"`+host+`"`, 1), 0)
	}
	ra := put("a", "cf:org-a/s", "*.pets.example.com")
	rb := put("b", "cf:org-b/s", "login.pets.example.com")
	rc := put("c", "cf:org-a/s", "shop.pets.example.com")
	runOnBrokerStore(t, ctx, st, 20*time.Millisecond, 5*time.Millisecond)
	defer cancel()
	waitPub := func(name string, rev int64) store.Publication {
		t.Helper()
		return waitPublication(t, ctx, st, name, rev, 10*time.Second)
	}
	if p := waitPub("a", ra); p.Error != "" {
		t.Errorf("a: %s", p.Error)
	}
	if p := waitPub("c", rc); p.Error != "" {
		t.Errorf("c (same tenant, nested): %s", p.Error)
	}
	if p := waitPub("b", rb); !strings.Contains(p.Error, `is under wildcard "*.pets.example.com" of another tenant: EdgeRoute "a"`) {
		t.Errorf("b: %q, want the clash with a named", p.Error)
	}
}
