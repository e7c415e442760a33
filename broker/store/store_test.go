package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
)

func open(t *testing.T) store.Store {
	s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestHostIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	r, _ := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{"metadata":{"team":"pets"},"spec":{"hosts":["A.example.com","*.a.example.com"]}}`)}, 0)
	x := store.NewHostIndex()
	if err := x.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	c := x.Conflicts("b", "team:cats", []string{"a.example.com", "b.example.com"})
	if len(c) != 1 || c[0].Owner.Spec != "a" || c[0].Index != 0 || c[0].Owner.Tenant != "team:pets" {
		t.Fatalf("conflicts = %+v", c)
	}
	if c := x.Conflicts("a", "team:pets", []string{"a.example.com"}); len(c) != 0 {
		t.Fatalf("a spec conflicts with itself: %v", c)
	}
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", Deleted: true}, r); err != nil {
		t.Fatal(err)
	}
	if err := x.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := x.Conflicts("b", "team:cats", []string{"a.example.com"}); len(c) != 0 {
		t.Fatalf("a deleted spec still owns its hosts: %v", c)
	}
}

// TestHostIndexTenants: overlap between tenants is a conflict both ways
// (an exact host under another tenant's wildcard, a wildcard over another
// tenant's host); a tenant nests its own hosts; the same exact host is a
// conflict even within one tenant; the tenant is the instance's.
func TestHostIndexTenants(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.PutInstance(ctx, store.Instance{ID: "i-pets", SpecName: "pets", Tenant: "cf:org-a/space-a"}); err != nil {
		t.Fatal(err)
	}
	// metadata.team says "cats", but the instance's tenant wins.
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "pets", InstanceID: "i-pets", JSON: []byte(`{"metadata":{"team":"cats"},"spec":{"hosts":["*.pets.example.com","shop.example.com"]}}`)}, 0); err != nil {
		t.Fatal(err)
	}
	x := store.NewHostIndex()
	if err := x.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tenant string
		hosts  []string
		want   int // conflicts
	}{
		{"cf:org-b/space-b", []string{"login.pets.example.com"}, 1},                // exact under another tenant's wildcard
		{"cf:org-b/space-b", []string{"a.b.pets.example.com"}, 1},                  // deeper, still covered
		{"cf:org-b/space-b", []string{"*.example.com"}, 1},                         // wildcard over shop.example.com
		{"cf:org-b/space-b", []string{"*.x.pets.example.com"}, 1},                  // nested wildcard
		{"team:cats", []string{"login.pets.example.com"}, 1},                       // metadata.team is not the tenant
		{"cf:org-a/space-a", []string{"login.pets.example.com"}, 0},                // own nesting
		{"cf:org-a/space-a", []string{"shop.example.com"}, 1},                      // same exact host, same tenant
		{"cf:org-a/space-a", []string{"*.pets.example.com"}, 1},                    // same wildcard, same tenant
		{"", []string{"login.pets.example.com"}, 1},                                // nobody's tenant shares nothing
		{"cf:org-b/space-b", []string{"pets.example.com", "other.example.org"}, 0}, // not covered by *.pets
	} {
		got := x.Conflicts("new", c.tenant, c.hosts)
		if len(got) != c.want {
			t.Errorf("tenant %q hosts %v: %d conflicts %+v, want %d", c.tenant, c.hosts, len(got), got, c.want)
		}
		for _, g := range got {
			if g.Owner.Instance != "i-pets" || g.Owner.Spec != "pets" || g.Reason == "" {
				t.Errorf("conflict %+v does not name the owner", g)
			}
		}
	}
}

func TestBindingActive(t *testing.T) {
	for _, c := range []struct {
		kind  store.OpKind
		state store.OpState
		del   bool
		want  bool
	}{
		{store.OpBind, store.StateInProgress, false, true},
		{store.OpBind, store.StateSucceeded, false, true},
		{store.OpBind, store.StateFailed, false, false},
		{store.OpUnbind, store.StateInProgress, false, false},
		{store.OpUnbind, store.StateFailed, false, true},
		{store.OpBind, store.StateSucceeded, true, false},
	} {
		b := store.Binding{Deleted: c.del, Op: store.Operation{Kind: c.kind, State: c.state}}
		if got := b.Active(); got != c.want {
			t.Errorf("%s %s deleted=%v: Active = %v, want %v", c.kind, c.state, c.del, got, c.want)
		}
	}
}
