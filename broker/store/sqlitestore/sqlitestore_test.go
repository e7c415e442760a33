package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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

// A store file from before bindings.sealed_until existed opens, gains the
// column, and keeps its bindings.
func TestOpenAddsSealedUntilToAnOlderFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := sqlitestore.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE bindings (instance_id TEXT NOT NULL, id TEXT NOT NULL, ver INTEGER NOT NULL, doc BLOB NOT NULL,
		outbox INTEGER NOT NULL DEFAULT 0, op_created INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (instance_id, id));
		INSERT INTO bindings (instance_id, id, ver, doc) VALUES ('i', 'old', 1, '{"instance_id":"i","id":"old","provider":"p"}')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if b, err := s.GetBinding(ctx, "i", "old"); err != nil || b.Provider != "p" {
		t.Fatalf("old binding = %+v, %v", b, err)
	}
	b := store.Binding{InstanceID: "i", ID: "new", SealedKey: []byte("x"), SealedUntil: time.Now().Add(-time.Minute)}
	if _, err := s.PutBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ExpiredKeys(ctx, time.Now(), 10); err != nil || len(got) != 1 || got[0].ID != "new" {
		t.Fatalf("ExpiredKeys = %+v, %v", got, err)
	}
}

// A store file from before publications.note existed opens, gains the
// column, keeps its publications, and records notes.
func TestOpenAddsPublicationNoteToAnOlderFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := sqlitestore.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE publications (name TEXT PRIMARY KEY, rev INTEGER NOT NULL, error TEXT NOT NULL, reported_at INTEGER NOT NULL);
		INSERT INTO publications (name, rev, error, reported_at) VALUES ('old', 4, '', 1), ('bad', 2, 'boom', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, err := s.GetPublication(ctx, "old"); err != nil || p.Revision != 4 || p.Error != "" || p.Note != "" {
		t.Fatalf("old publication = %+v, %v", p, err)
	}
	if p, err := s.GetPublication(ctx, "bad"); err != nil || p.Revision != 2 || p.Error != "boom" {
		t.Fatalf("old failed publication = %+v, %v", p, err)
	}
	if err := s.ReportPublishedNote(ctx, "old", 5, "published; no node of group b connected"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.GetPublication(ctx, "old"); err != nil || p.Revision != 5 || p.Note != "published; no node of group b connected" {
		t.Fatalf("publication with a note = %+v, %v", p, err)
	}
}

// A broker and a worker start together on a new file: both add the
// sealed_until column; neither may fail because the other won.
func TestConcurrentOpensOfANewFile(t *testing.T) {
	for round := 0; round < 5; round++ {
		path := filepath.Join(t.TempDir(), "store.db")
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			go func() {
				s, err := sqlitestore.Open(context.Background(), path)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for i := 0; i < 4; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
