package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/broker/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Two handles on one file behave as a broker and a worker process would.
func TestTwoHandlesShareOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	a, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := a.PutSpec(ctx, store.StoredSpec{Name: "x", JSON: []byte(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReportPublished(ctx, "x", r, nil); err != nil {
		t.Fatal(err)
	}
	p, err := a.GetPublication(ctx, "x")
	if err != nil || p.Revision != r {
		t.Fatalf("publication seen through the other handle = %+v, %v", p, err)
	}
}
