package duckstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

func writeBatch(t *testing.T, s interface {
	WriteBatch(context.Context, *accesslog.Batch) error
}, seq uint64, prev string, recs []accesslog.Record) string {
	t.Helper()
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count = seq, seq, uint32(len(recs))
	for i := range recs {
		recs[i].Batch, recs[i].Index = b.Seq, uint32(i)
	}
	b.MinTime, b.MaxTime, b.PrevHash = recs[0].Time, recs[len(recs)-1].Time, prev
	var err error
	if b.Hash, err = accesslog.ChainHash(prev, b.Seq, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b.Hash
}

// TestConfigVersionColumnAndMigration: a file written before the
// config_version column gains it on Open (old rows read back as ""), and
// new rows keep the version that served them.
func TestConfigVersionColumnAndMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.duckdb")
	s := openStore(t, path)
	start := time.Now().UTC().Truncate(time.Hour)
	h := writeBatch(t, s, 1, "", records(1, 10, start, time.Minute))
	// Make it an old file: the column did not exist then.
	if _, err := s.DB().ExecContext(ctx, "ALTER TABLE logs DROP COLUMN config_version"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, path)
	defer s.Close()
	recs := records(2, 10, start.Add(2*time.Minute), time.Minute)
	for i := range recs {
		recs[i].ConfigVersion = "v-9c1e"
	}
	writeBatch(t, s, 2, h, recs)
	got, err := s.Query(ctx, accesslog.Filter{Since: start.Add(-time.Hour), Until: start.Add(time.Hour), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	byVersion := map[string]int{}
	for _, r := range got {
		byVersion[r.ConfigVersion]++
	}
	if byVersion[""] != 10 || byVersion["v-9c1e"] != 10 {
		t.Fatalf("records by config_version = %v, want 10 old (\"\") and 10 v-9c1e", byVersion)
	}
	back, err := s.BatchRecords(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if back[0].ConfigVersion != "v-9c1e" {
		t.Fatalf("BatchRecords config_version = %q", back[0].ConfigVersion)
	}
}
