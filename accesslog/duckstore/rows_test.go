package duckstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// TestConstantColumnsStoredPerRow: VARCHAR columns that hold one value in
// every row of a batch go in as one INSERT parameter instead of one value
// per row; every row still reads back with its own value (an empty string
// stays ”, not NULL), a column that differs only in the last row or only
// in the first is not taken for constant, and the chain verifies.
func TestConstantColumnsStoredPerRow(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "c.duckdb"))
	defer s.Close()
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	recs := records(7, 5000, t0, time.Hour) // several 2,048-row chunks
	for i := range recs {
		r := &recs[i]
		r.NodeGroup = "eu-west-1"         // constant, not empty
		r.TLSVersion, r.Provider = "", "" // constant, empty
		r.Rule = ""                       // differs in the last row only
		r.APIKeyID = "k-1"                // differs in the first row only
		r.ConfigVersion = "v" + string(rune('a'+i%3))
	}
	recs[len(recs)-2].Rule = "last-rule" // the last row of the first batch
	recs[0].APIKeyID = "first-key"
	var prev accesslog.BatchHeader
	for k, part := range [][]accesslog.Record{recs[:4999], recs[4999:]} { // and a one-row batch
		b := &accesslog.Batch{Records: part}
		b.Seq, b.SpoolSeq, b.Count, b.PrevHash = prev.Seq+1, prev.Seq+1, uint32(len(part)), prev.Hash
		for i := range part {
			part[i].Batch, part[i].Index = b.Seq, uint32(i)
		}
		b.MinTime, b.MaxTime = part[0].Time, part[len(part)-1].Time
		var err error
		if b.Hash, err = accesslog.ChainHash(b.PrevHash, b.Seq, part); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBatch(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		got, err := s.BatchRecords(ctx, b.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(part) {
			t.Fatalf("batch %d: %d rows back, want %d", k, len(got), len(part))
		}
		for i := range part {
			want := part[i]
			want.Time = want.Time.Truncate(time.Microsecond)
			if got[i] != want {
				t.Fatalf("batch %d row %d reads back as\n%+v\nwant\n%+v", k, i, got[i], want)
			}
		}
		prev = b.BatchHeader
	}
	var nulls, empty int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FILTER (WHERE tls_version IS NULL OR provider IS NULL), count(*) FILTER (WHERE tls_version = '' AND provider = '') FROM logs").Scan(&nulls, &empty); err != nil {
		t.Fatal(err)
	}
	if nulls != 0 || empty != len(recs) {
		t.Errorf("constant empty columns: %d rows NULL, %d rows '' of %d", nulls, empty, len(recs))
	}
	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}
