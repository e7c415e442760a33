package source

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
)

// TestBrokerReporterNotes: on the broker's real SQLite store, a spec
// published with a note keeps it against an error for the same revision
// (that revision is live); a report of the same revision without a note
// (a replica reaching every group) clears it; and a note never replaces
// a plain "published" of the same revision, so replicas do not flap.
func TestBrokerReporterNotes(t *testing.T) {
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := NewBrokerReporter(st)
	var _ NoteReporter = r
	const note = "published; no node of group edge-b connected"
	check := func(what string, rev int64, wantErr, wantNote string) {
		t.Helper()
		p, err := st.GetPublication(ctx, "a")
		if err != nil || p.Revision != rev || p.Error != wantErr || p.Note != wantNote {
			t.Fatalf("%s: publication %+v, %v; want revision %d, error %q, note %q", what, p, err, rev, wantErr, wantNote)
		}
	}
	if err := r.ReportPublishedNote(ctx, "a", 3, note); err != nil {
		t.Fatal(err)
	}
	check("a note", 3, "", note)
	if err := r.ReportPublished(ctx, "a", 3, errors.New("not published: node group x: boom")); err != nil {
		t.Fatal(err)
	}
	check("an error for the published revision", 3, "", note)
	if err := r.ReportPublished(ctx, "a", 3, nil); err != nil {
		t.Fatal(err)
	}
	check("published without a note", 3, "", "")
	if err := r.ReportPublishedNote(ctx, "a", 3, note); err != nil {
		t.Fatal(err)
	}
	check("a note after a plain published", 3, "", "")
	if err := r.ReportPublishedNote(ctx, "a", 4, note); err != nil {
		t.Fatal(err)
	}
	check("a note for a newer revision", 4, "", note)
	if err := r.ReportPublishedNote(ctx, "a", 2, "older"); err != nil {
		t.Fatal(err)
	}
	check("a note for an older revision", 4, "", note)
}
