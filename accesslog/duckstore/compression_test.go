package duckstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// TestUniqueColumnsCompressedWithFSST: request_id, query and headers are
// stored with FSST whatever their values (DuckDB would take a dictionary
// for these few distinct ones, after hashing every value to find out);
// path, a column left to DuckDB, still gets its dictionary; every row
// reads back as written.
func TestUniqueColumnsCompressedWithFSST(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "fsst.duckdb"))
	defer s.Close()
	recs := records(5, 20000, time.Now().UTC().Add(-time.Hour), time.Minute)
	for i := range recs {
		r := &recs[i]
		v := string(rune('a' + i%3))
		r.RequestID, r.Query, r.Headers, r.Path = "req-"+v, "q="+v, `{"x-v":"`+v+`"}`, "/p/"+v
	}
	writeOne(t, s, accesslog.BatchHeader{}, recs)
	if _, err := s.DB().ExecContext(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().QueryContext(ctx, `SELECT column_name, list(DISTINCT compression ORDER BY compression) FROM pragma_storage_info('logs')
		WHERE column_name IN ('request_id', 'query', 'headers', 'path') AND segment_type = 'VARCHAR' GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var col string
		var comp []any
		if err := rows.Scan(&col, &comp); err != nil {
			t.Fatal(err)
		}
		got[col] = fmt.Sprint(comp)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"request_id": "[FSST]", "query": "[FSST]", "headers": "[FSST]", "path": "[Dictionary]"}
	for col, w := range want {
		if got[col] != w {
			t.Errorf("column %s stored with %s, want %s", col, got[col], w)
		}
	}
	back, err := s.BatchRecords(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if back[i] != recs[i] {
			t.Fatalf("row %d reads back as %+v, want %+v", i, back[i], recs[i])
		}
	}
}
