package controlplane_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestBrokerStoreTenantsArePruned: specs in the broker's store that clash
// across tenants (two provisions the broker accepted at once) are pruned
// by the control plane with the instance's tenant, not metadata.team: the
// older claim is published, the newer one reported with the reason, and a
// same-tenant nested host ships.
func TestBrokerStoreTenantsArePruned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(name, tenant, host string) int64 {
		t.Helper()
		if _, err := st.PutInstance(ctx, store.Instance{ID: "i-" + name, SpecName: name, Tenant: tenant}); err != nil {
			t.Fatal(err)
		}
		var v any
		// Every spec says team t: only the instances' tenants tell them apart.
		if err := yamlv3.Unmarshal([]byte(strings.Replace(specYAML(name, "HOSTX", "10.0.0.1:80"), "HOSTX", `"`+host+`"`, 1)), &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		rev, err := st.PutSpec(ctx, store.StoredSpec{Name: name, InstanceID: "i-" + name, JSON: b}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	ra := put("a", "cf:org-a/s", "*.pets.example.com")
	rb := put("b", "cf:org-b/s", "login.pets.example.com")
	rc := put("c", "cf:org-a/s", "shop.pets.example.com")
	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: 20 * time.Millisecond}),
		Reporter: st,
		Registry: prometheus.NewRegistry(),
		HoldOff:  5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	defer wg.Wait()
	defer cancel()
	waitPub := func(name string, rev int64) store.Publication {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if p, err := st.GetPublication(ctx, name); err == nil && p.Revision == rev {
				return p
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no report for %s at revision %d", name, rev)
		return store.Publication{}
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
