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
		{tenant: "cf:org-b/space-b", hosts: []string{"login.pets.example.com"}, want: 1},       // exact under another tenant's wildcard
		{tenant: "cf:org-b/space-b", hosts: []string{"a.b.pets.example.com"}, want: 1},         // deeper, still covered
		{tenant: "cf:org-b/space-b", hosts: []string{"*.example.com"}, want: 1},                // wildcard over shop.example.com
		{tenant: "cf:org-b/space-b", hosts: []string{"*.x.pets.example.com"}, want: 1},         // nested wildcard
		{tenant: "team:cats", hosts: []string{"login.pets.example.com"}, want: 1},              // metadata.team is not the tenant
		{tenant: "cf:org-a/space-a", hosts: []string{"login.pets.example.com"}},                // own nesting
		{tenant: "cf:org-a/space-a", hosts: []string{"shop.example.com"}, want: 1},             // same exact host, same tenant
		{tenant: "cf:org-a/space-a", hosts: []string{"*.pets.example.com"}, want: 1},           // same wildcard, same tenant
		{hosts: []string{"login.pets.example.com"}, want: 1},                                   // nobody's tenant shares nothing
		{tenant: "cf:org-b/space-b", hosts: []string{"pets.example.com", "other.example.org"}}, // not covered by *.pets
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
		{kind: store.OpBind, state: store.StateInProgress, want: true},
		{kind: store.OpBind, state: store.StateSucceeded, want: true},
		{kind: store.OpBind, state: store.StateFailed},
		{kind: store.OpUnbind, state: store.StateInProgress},
		{kind: store.OpUnbind, state: store.StateFailed, want: true},
		{kind: store.OpBind, state: store.StateSucceeded, del: true},
	} {
		b := store.Binding{Deleted: c.del, Op: store.Operation{Kind: c.kind, State: c.state}}
		if got := b.Active(); got != c.want {
			t.Errorf("%s %s deleted=%v: Active = %v, want %v", c.kind, c.state, c.del, got, c.want)
		}
	}
}
