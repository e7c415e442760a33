package duckstore_test

import (
	"context"
	"path/filepath"
	"strings"
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

// framesOf encodes recs as the spool does, in frames of up to size
// records.
func framesOf(recs []accesslog.Record, size int) [][]byte {
	var frames [][]byte
	for len(recs) > 0 {
		n := min(size, len(recs))
		var b []byte
		for i := range recs[:n] {
			b = recs[i].AppendBinary(b)
		}
		frames = append(frames, b)
		recs = recs[n:]
	}
	return frames
}

// TestWriteBatchFromFrames: a batch handed as encoded frames (as the
// Ingester hands it to a FrameStore) stores the same rows as the same
// batch in Records: every column, the constant ones as parameters, Batch
// and Index from the header; the frames' bytes are not referenced after
// WriteBatch (overwritten, the rows still read back), and frames holding
// fewer records than the header says fail the batch, which leaves
// nothing behind and can be written again.
func TestWriteBatchFromFrames(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "f.duckdb"))
	defer s.Close()
	if !s.ReadsFrames() {
		t.Fatal("the store does not read frames")
	}
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	recs := records(9, 5000, t0, time.Hour) // several 2,048-row chunks
	for i := range recs {
		r := &recs[i]
		r.NodeGroup, r.TLSVersion = "eu-west-1", "" // constant
		r.ConfigVersion = "v" + string(rune('a'+i%3))
	}
	recs[len(recs)-1].Rule = "last-rule"
	b := &accesslog.Batch{Frames: framesOf(recs, 777)}
	b.Seq, b.SpoolSeq, b.Count = 1, 1, uint32(len(recs))
	b.MinTime, b.MaxTime = recs[0].Time, recs[len(recs)-1].Time
	var err error
	if b.Hash, err = accesslog.ChainHash("", b.Seq, recs); err != nil {
		t.Fatal(err)
	}
	short := *b
	short.Frames = b.Frames[:len(b.Frames)-1]
	if err := s.WriteBatch(ctx, &short); err == nil || !strings.Contains(err.Error(), "its frames hold") {
		t.Fatalf("frames short of the count: %v", err)
	}
	if hs, err := s.Headers(ctx, 0); err != nil || len(hs) != 0 {
		t.Fatalf("after the failed batch: %d headers, %v", len(hs), err)
	}
	if err := s.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, f := range b.Frames {
		for i := range f {
			f[i] = 0xA5
		}
	}
	got, err := s.BatchRecords(ctx, b.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d rows back, want %d", len(got), len(recs))
	}
	for i := range recs {
		want := recs[i]
		want.Batch, want.Index = b.Seq, uint32(i)
		want.Time = want.Time.Truncate(time.Microsecond)
		if got[i] != want {
			t.Fatalf("row %d reads back as\n%+v\nwant\n%+v", i, got[i], want)
		}
	}
	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != int64(len(recs)) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}
