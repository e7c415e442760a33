package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestWatchDeliversSnapshotsOnChange(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{}`)}, 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got [][]string
	done := make(chan error, 1)
	go func() {
		done <- store.Watch(ctx, s, 5*time.Millisecond, func(_ int64, specs, deleted []store.StoredSpec) {
			var names []string
			for _, sp := range specs {
				names = append(names, sp.Name)
			}
			for _, sp := range deleted {
				names = append(names, "-"+sp.Name)
			}
			mu.Lock()
			got = append(got, names)
			mu.Unlock()
		})
	}()
	waitFor := func(n int) [][]string {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			if len(got) >= n {
				out := append([][]string(nil), got...)
				mu.Unlock()
				return out
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("fewer than %d deliveries: %v", n, got)
		return nil
	}
	if g := waitFor(1); len(g[0]) != 1 || g[0][0] != "a" {
		t.Fatalf("first delivery = %v", g[0])
	}
	rb, err := s.PutSpec(ctx, store.StoredSpec{Name: "b", JSON: []byte(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g := waitFor(2); len(g[1]) != 2 {
		t.Fatalf("after adding b: %v", g[1])
	}
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "b", Deleted: true}, rb); err != nil {
		t.Fatal(err)
	}
	if g := waitFor(3); strings.Join(g[2], ",") != "a,-b" {
		t.Fatalf("after deleting b: %v, want live a and deleted b", g[2])
	}
	time.Sleep(50 * time.Millisecond) // no change: no delivery
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 3 {
		t.Fatalf("deliveries without a change: %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHostIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	r, _ := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{"spec":{"hosts":["A.example.com","*.a.example.com"]}}`)}, 0)
	x := store.NewHostIndex()
	if err := x.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := x.Conflicts("b", []string{"a.example.com", "b.example.com"}); len(c) != 1 || c["a.example.com"] != "a" {
		t.Fatalf("conflicts = %v", c)
	}
	if c := x.Conflicts("a", []string{"a.example.com"}); len(c) != 0 {
		t.Fatalf("a spec conflicts with itself: %v", c)
	}
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", Deleted: true}, r); err != nil {
		t.Fatal(err)
	}
	if err := x.Refresh(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := x.Conflicts("b", []string{"a.example.com"}); len(c) != 0 {
		t.Fatalf("a deleted spec still owns its hosts: %v", c)
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
