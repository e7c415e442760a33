package source_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestFeedDeliversSnapshotsOnChange follows a real SQLite route store:
// the whole live set at start, again after each change (a deletion listed
// in Revision.Deleted), and nothing while nothing changes.
func TestFeedDeliversSnapshotsOnChange(t *testing.T) {
	s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{}`)}, 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got [][]string
	done := make(chan error, 1)
	go func() {
		done <- source.NewFeed(s, source.Options{PollInterval: 5 * time.Millisecond}).Watch(ctx, func(rev source.Revision) {
			var names []string
			for _, sp := range rev.Specs {
				names = append(names, sp.Name)
			}
			for _, sp := range rev.Deleted {
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
