package duckstore_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
)

// stringCorpus: values around DuckDB's 12-byte inline limit, in bytes
// (ASCII, two-, three- and four-byte UTF-8), empty, a NUL byte, long
// and very long.
var stringCorpus = []string{
	"", "a", "GET", "a\x00b", "héllo", "abcdefghijk", "abcdefghijkl", "abcdefghijklm",
	"éééééé", "日本語の", "😀😀😀", "😀😀😀x", "ééééééa", strings.Repeat("long-value/", 30),
	strings.Repeat("ü", 1500), "10.0.0.1", "TLSv1_3", "user-1234567",
}

// stringFields are the record's VARCHAR columns, in Columns order.
func stringFields(r *accesslog.Record) []*string {
	return []*string{&r.RequestID, &r.Kind, &r.LogType, &r.Node, &r.NodeGroup, &r.Route, &r.Authority,
		&r.Method, &r.Path, &r.Query, &r.ResponseFlags, &r.ClientIP, &r.TLSVersion, &r.TLSSNI, &r.PeerPrincipal,
		&r.UserAgent, &r.Headers, &r.UpstreamCluster, &r.UpstreamHost, &r.Subject, &r.Provider, &r.AuthKind,
		&r.APIKeyID, &r.Rule, &r.Decision, &r.ConfigVersion}
}

// writeOne writes recs as batch seq after prev and returns its header.
func writeOne(t *testing.T, s *duckstore.Store, prev accesslog.BatchHeader, recs []accesslog.Record) accesslog.BatchHeader {
	t.Helper()
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count, b.PrevHash = prev.Seq+1, prev.Seq+1, uint32(len(recs)), prev.Hash
	for i := range recs {
		recs[i].Batch, recs[i].Index = b.Seq, uint32(i)
	}
	b.MinTime, b.MaxTime = recs[0].Time, recs[0].Time
	for _, r := range recs {
		if r.Time.Before(b.MinTime) {
			b.MinTime = r.Time
		}
		if r.Time.After(b.MaxTime) {
			b.MaxTime = r.Time
		}
	}
	var err error
	if b.Hash, err = accesslog.ChainHash(b.PrevHash, b.Seq, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatalf("batch %d: %v", b.Seq, err)
	}
	return b.BatchHeader
}

// TestEveryColumnRoundTrips: every column of a batch (no VARCHAR column
// constant, so all go through the table function) reads back exactly as
// written: strings empty, short, at and around the 12-byte inline limit
// in one- to four-byte UTF-8, with a NUL byte, long and 1,500 runes;
// numbers at their extremes; times before 1970 and far ahead. The batch
// spans two full 2,048-row chunks and a one-row chunk (written by
// duckdb-go's call only), and a one-row batch follows. Short strings go
// straight into DuckDB's vectors (strfill.go), all of them; the chain
// verifies.
func TestEveryColumnRoundTrips(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "rt.duckdb"))
	defer s.Close()
	times := []time.Time{
		time.Date(1901, 12, 14, 20, 45, 52, 1e6, time.UTC), time.Unix(0, 0).UTC(),
		time.Date(2026, 12, 6, 9, 30, 0, 999e6, time.UTC), time.Date(2999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	const n = 2*2048 + 1
	recs := make([]accesslog.Record, n)
	wantInlined := 0
	for i := range recs {
		r := &recs[i]
		for k, f := range stringFields(r) {
			*f = stringCorpus[(i+3*k)%len(stringCorpus)]
			if i < 2*2048 && len(*f) <= 12 { // the one-row chunk takes the call
				wantInlined++
			}
		}
		r.Time = times[i%len(times)]
		switch i % 3 {
		case 0:
			r.Status, r.DurationUS, r.BytesIn, r.BytesOut, r.ClientPort = 0, math.MinInt64, 0, math.MaxUint64, 0
		case 1:
			r.Status, r.DurationUS, r.BytesIn, r.BytesOut, r.ClientPort = math.MaxUint32, math.MaxInt64, math.MaxUint64, 0, math.MaxUint32
		default:
			r.Status, r.DurationUS, r.BytesIn, r.BytesOut, r.ClientPort = 403, -1, 1<<63, 1<<32, 65535
		}
	}
	last := recs[n-1]
	last.RequestID, last.Path, last.Query = "only-row", "é", strings.Repeat("q", 13)
	var prev accesslog.BatchHeader
	for _, part := range [][]accesslog.Record{recs, {last}} {
		prev = writeOne(t, s, prev, part)
		got, err := s.BatchRecords(ctx, prev.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(part) {
			t.Fatalf("batch %d: %d rows back, want %d", prev.Seq, len(got), len(part))
		}
		for i := range part {
			if got[i] != part[i] {
				t.Fatalf("batch %d row %d reads back as\n%#v\nwant\n%#v", prev.Seq, i, got[i], part[i])
			}
		}
	}
	if got := duckstore.InlinedStrings(s); got != int64(wantInlined) {
		t.Errorf("%d strings written straight into the vectors, want %d (every string of up to 12 bytes in a chunk of 2 rows or more)", got, wantInlined)
	}
	if res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

// TestInvalidUTF8StringsAsTheCallDoes: a string that is not UTF-8 goes
// in through duckdb-go's call whatever its length (DuckDB makes it NULL),
// so a short one is stored as a long one is; and the row in
// the same place of the next chunk, valid again, is stored as written
// (what DuckDB made of the first chunk's row does not stay in the
// reused vector).
func TestInvalidUTF8StringsAsTheCallDoes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "utf8.duckdb"))
	defer s.Close()
	recs := records(3, 2048+8, time.Now().UTC().Add(-time.Hour), time.Minute)
	for i := range recs {
		recs[i].Path = "/p" + string(rune('a'+i%26)) // short, valid, not constant
	}
	short, long := "/x\xff", "/"+strings.Repeat("y", 40)+"\xfe"
	if utf8.ValidString(short) || utf8.ValidString(long) {
		t.Fatal("test strings are valid UTF-8")
	}
	recs[5].Path, recs[6].Path = short, long
	// DuckDB's call makes invalid UTF-8 NULL; written into the vector
	// as is, DuckDB refuses the whole batch (segment statistics).
	if err := writeBatchErr(s, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().QueryContext(ctx, "SELECT idx, path IS NULL, coalesce(strlen(path), -1) FROM logs WHERE idx IN (5, 6, 2053, 2054) ORDER BY idx")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type res struct {
		null bool
		n    int
	}
	got := map[int]res{}
	for rows.Next() {
		var idx int
		var r res
		if err := rows.Scan(&idx, &r.null, &r.n); err != nil {
			t.Fatal(err)
		}
		got[idx] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if (got[5] == res{} || got[6] == res{}) || got[5].null != got[6].null || (!got[5].null && got[5].n != len(short)) {
		t.Errorf("short invalid string stored as %+v, long one as %+v: not treated alike", got[5], got[6])
	}
	for _, i := range []int{2053, 2054} {
		if r := got[i]; r.null || r.n != len(recs[i].Path) {
			t.Errorf("row %d of the next chunk (valid %q) stored as %+v", i, recs[i].Path, r)
		}
	}
}

func writeBatchErr(s *duckstore.Store, recs []accesslog.Record) error {
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count = 1, 1, uint32(len(recs))
	for i := range recs {
		recs[i].Batch, recs[i].Index = 1, uint32(i)
	}
	b.MinTime, b.MaxTime = recs[0].Time, recs[len(recs)-1].Time
	var err error
	if b.Hash, err = accesslog.ChainHash(b.PrevHash, b.Seq, recs); err != nil {
		return err
	}
	return s.WriteBatch(context.Background(), b)
}
