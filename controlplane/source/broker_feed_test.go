package source

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// repeatingFeed hands the same recent changes out on every poll, as
// DynamoDB's change feed does for a few seconds.
type repeatingFeed struct {
	mu      sync.Mutex
	changes []store.StoredSpec
}

func (f *repeatingFeed) Snapshot(context.Context) (int64, []store.StoredSpec, error) {
	return 1, []store.StoredSpec{{Name: "a", Revision: 1, JSON: []byte(`{}`)}}, nil
}

func (f *repeatingFeed) Changes(_ context.Context, since int64) (int64, []store.StoredSpec, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return since, f.changes, nil // the cursor never moves past them
}

func (f *repeatingFeed) ReportPublished(context.Context, string, int64, error) error { return nil }
func (f *repeatingFeed) ReportPublishedNote(context.Context, string, int64, string) error {
	return nil
}

func TestFeedIgnoresRepeatedChanges(t *testing.T) {
	f := &repeatingFeed{changes: []store.StoredSpec{
		{Name: "b", Revision: 2, JSON: []byte(`{}`)},
		{Name: "a", Revision: 3, Deleted: true},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var revs []Revision
	_ = NewFeed(f, Options{PollInterval: 10 * time.Millisecond}).Watch(ctx, func(r Revision) {
		revs = append(revs, r)
		if len(revs) >= 3 {
			cancel()
		}
	})
	if len(revs) != 2 {
		t.Fatalf("got %d revisions from one snapshot and one set of changes handed out again and again, want 2", len(revs))
	}
	if len(revs[1].Specs) != 1 || revs[1].Specs[0].Name != "b" || len(revs[1].Deleted) != 1 || revs[1].Deleted[0].Name != "a" {
		t.Fatalf("second revision = %+v", revs[1])
	}
}
