package accesslog_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// frameRecords are records of every shape the encoding has: with and
// without a config version, non-ASCII, empty strings.
func frameRecords(n int) []accesslog.Record {
	recs := accesslogtest.RandomRecords(42, n, time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), time.Hour)
	for i := range recs {
		if i%3 == 0 {
			recs[i].ConfigVersion = fmt.Sprintf("v%d-ü", i)
		}
	}
	return recs
}

// encodeFrames encodes recs as frames of the given sizes (the rest in a
// last one), as the spool does.
func encodeFrames(recs []accesslog.Record, sizes ...int) [][]byte {
	var frames [][]byte
	for len(recs) > 0 {
		n := len(recs)
		if len(sizes) > 0 {
			n, sizes = min(n, sizes[0]), sizes[1:]
		}
		var b []byte
		for i := range recs[:n] {
			b = recs[i].AppendBinary(b)
		}
		frames = append(frames, b)
		recs = recs[n:]
	}
	return frames
}

// TestBatchHashFramesIsBatchHash: the hash of a batch over its encoded
// records (the spool's bytes, as the Ingester now hashes a batch) is
// bit-identical to BatchHash over the records, keyed and unkeyed, however
// the records are split into frames; and BatchHash itself still gives the
// hashes it gave before (golden values computed with the code of main
// before the change), so existing chains verify.
func TestBatchHashFramesIsBatchHash(t *testing.T) {
	recs := frameRecords(257)
	keys, err := accesslog.ParseKeyRing([]byte("k1 0123456789abcdef0123456789abcdef-one\nk2 0123456789abcdef0123456789abcdef-two\n"))
	if err != nil {
		t.Fatal(err)
	}
	golden := map[string]string{
		"":   "a673b98e8d4d1af6d1ac531da86661e22ac823f9b29d7d2a4e270ac7c451718a",
		"k2": "a9344f9d16acf18f0d3e2c30c1615a349a5502e6a5629031fa1abd811ea1a3b8",
	}
	for kid, want := range golden {
		h := accesslog.BatchHeader{Seq: accesslog.SeqOf(3, 17), Count: uint32(len(recs)), KeyID: kid, PrevHash: "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"}
		got, err := accesslog.BatchHash(keys, &h, recs)
		if err != nil || got != want {
			t.Fatalf("key %q: BatchHash = %s, %v; want %s as before", kid, got, err, want)
		}
		for _, sizes := range [][]int{nil, {1}, {100, 100}, {3, 0, 250}, {256}} {
			frames := encodeFrames(recs, sizes...)
			got, err := accesslog.BatchHashFrames(keys, &h, frames)
			if err != nil || got != want {
				t.Errorf("key %q, frames of %v: BatchHashFrames = %s, %v; want %s", kid, sizes, got, err, want)
			}
		}
	}
	// An empty batch and the errors are BatchHash's too.
	h := accesslog.BatchHeader{Seq: 1}
	want, _ := accesslog.BatchHash(nil, &h, nil)
	if got, err := accesslog.BatchHashFrames(nil, &h, nil); err != nil || got != want {
		t.Errorf("empty batch: %s %v, want %s", got, err, want)
	}
	h.KeyID = "nope"
	if _, err := accesslog.BatchHashFrames(keys, &h, nil); err == nil || !strings.Contains(err.Error(), `chain key "nope", which is not in the key ring`) {
		t.Errorf("unknown key: %v", err)
	}
}

// TestBatchReaderDecodesFrames: a batch's reader yields from its frames
// exactly the records that were encoded, with Batch and Index set, in
// any scratch size; from Records, the records themselves. Frames that
// hold fewer or more records than the header says, or a cut record, are
// an error naming the batch.
func TestBatchReaderDecodesFrames(t *testing.T) {
	recs := frameRecords(300)
	const seq = 7
	for i := range recs {
		recs[i].Batch, recs[i].Index = seq, uint32(i)
	}
	for _, scratch := range []int{1, 7, 2048} {
		b := &accesslog.Batch{Frames: encodeFrames(recs, 5, 0, 100, 1)}
		b.Seq, b.Count = seq, uint32(len(recs))
		if b.Len() != len(recs) {
			t.Fatalf("Len %d", b.Len())
		}
		rd := b.Reader()
		buf := make([]accesslog.Record, scratch)
		var got []accesslog.Record
		for {
			part, err := rd.Next(buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(part) == 0 {
				break
			}
			got = append(got, part...)
		}
		if len(got) != len(recs) {
			t.Fatalf("scratch %d: %d records, want %d", scratch, len(got), len(recs))
		}
		for i := range recs {
			if got[i] != recs[i] {
				t.Fatalf("scratch %d: record %d is\n%+v\nwant\n%+v", scratch, i, got[i], recs[i])
			}
		}
	}
	// Records: parts of them, not copies.
	b := &accesslog.Batch{Records: recs}
	part, err := b.Reader().Next(make([]accesslog.Record, 10))
	if err != nil || len(part) != 10 || &part[0] != &recs[0] {
		t.Fatalf("from Records: %d records, %v", len(part), err)
	}
	for name, tc := range map[string]struct {
		frames [][]byte
		count  uint32
		want   string
	}{
		"too few":    {frames: encodeFrames(recs[:10]), count: 11, want: "its frames hold 10 records, its header says 11"},
		"too many":   {frames: encodeFrames(recs[:10]), count: 9, want: "more than the 9 records"},
		"cut record": {frames: [][]byte{encodeFrames(recs[:2])[0][:40]}, count: 2, want: "record 0: record: truncated record"},
	} {
		b := &accesslog.Batch{Frames: tc.frames}
		b.Seq, b.Count = seq, tc.count
		var err error
		for rd := b.Reader(); err == nil; {
			var part []accesslog.Record
			if part, err = rd.Next(make([]accesslog.Record, 4)); len(part) == 0 && err == nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "batch 7") {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
		if _, err := accesslog.DecodeFrames(b, nil); err == nil {
			t.Errorf("%s: decoded into Records without an error", name)
		}
	}
}

// TestDecodeFramesOwnStrings: a store that reads Records gets them
// decoded from the frames with strings of their own: overwriting the
// frames' bytes afterwards (the Ingester reuses them) changes nothing.
func TestDecodeFramesOwnStrings(t *testing.T) {
	recs := frameRecords(50)
	b := &accesslog.Batch{Frames: encodeFrames(recs, 20)}
	b.Seq, b.Count = 9, uint32(len(recs))
	got, err := accesslog.DecodeFrames(b, make([]accesslog.Record, 3))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range b.Frames {
		for i := range f {
			f[i] = 'X'
		}
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records", len(got))
	}
	for i := range recs {
		want := recs[i]
		want.Batch, want.Index = 9, uint32(i)
		if got[i] != want {
			t.Fatalf("record %d is\n%+v\nwant\n%+v", i, got[i], want)
		}
	}
}

// TestRecordTimes: the earliest and latest Time of encoded records (a
// frame read back from the spool), and an error for bytes that are not
// exactly n records as AppendBinary writes them.
func TestRecordTimes(t *testing.T) {
	recs := frameRecords(40)
	recs[17].Time = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	recs[23].Time = time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	b := encodeFrames(recs)[0]
	lo, hi, err := accesslog.RecordTimes(b, len(recs))
	if err != nil || !lo.Equal(recs[17].Time) || !hi.Equal(recs[23].Time) {
		t.Fatalf("%v %v %v", lo, hi, err)
	}
	// Bytes that decode, but to a record that encodes to other bytes: a
	// hash over them would not be the hash over the record.
	r := recs[1]
	r.ConfigVersion = "x"
	flagged := r.AppendBinary(nil)
	flagged = append(flagged[:len(flagged)-2], 0) // the version flagged, and empty
	one := r.AppendBinary(nil)
	_, k := binary.Varint(one)
	long := append(append(append([]byte{}, one[:k-1]...), one[k-1]|0x80, 0), one[k:]...) // the time in one varint byte more
	for _, odd := range [][]byte{flagged, long} {
		var dec accesslog.Record
		if rest, err := dec.DecodeBinary(odd); err != nil || len(rest) != 0 || string(dec.AppendBinary(nil)) == string(odd) {
			t.Fatalf("the odd encoding: %v, %d left", err, len(rest))
		}
	}
	for name, tc := range map[string]struct {
		b []byte
		n int
	}{"a record more": {b, len(recs) + 1}, "bytes left": {b, len(recs) - 1}, "cut": {b[:len(b)-1], len(recs)},
		"empty version flagged": {flagged, 1}, "varint not minimal": {long, 1}} {
		if _, _, err := accesslog.RecordTimes(tc.b, tc.n); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// slowFrameStore is the real store, as a FrameStore and OrderedStore,
// taking its time before each batch (as DuckDB does under load), so the
// frames of later flushes are encoded meanwhile.
type slowFrameStore struct {
	*duckstore.Store
	delay time.Duration
}

func (s *slowFrameStore) WriteBatchAfter(ctx context.Context, b *accesslog.Batch, prev func(context.Context) error) error {
	time.Sleep(s.delay)
	return s.Store.WriteBatchAfter(ctx, b, prev)
}

// slowRecordStore is the same store behind the plain Store interface: it
// does not read frames, so it gets Records decoded by the Ingester.
type slowRecordStore struct {
	accesslog.Store
	delay time.Duration
}

func (s *slowRecordStore) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	time.Sleep(s.delay)
	if b.Frames != nil || len(b.Records) != int(b.Count) {
		return fmt.Errorf("batch %d: %d records, %d frames, count %d", b.Seq, len(b.Records), len(b.Frames), b.Count)
	}
	return s.Store.WriteBatch(ctx, b)
}

// TestFrameBuffersReusedOnlyOnceStored: the encoded frames' buffers are
// reused for later frames only once the batch holding them is stored. In
// this test every buffer given back is overwritten at once (poisoned),
// while flushes keep coming and the store writes slowly, so a buffer
// given back before its batch is stored would be read as garbage by the
// store: every entry must still be stored once, as it was added, and
// the chain verify; with a store that reads frames and one that gets
// Records.
func TestFrameBuffersReusedOnlyOnceStored(t *testing.T) {
	for _, frames := range []bool{true, false} {
		t.Run(fmt.Sprintf("frames=%v", frames), func(t *testing.T) {
			dir := t.TempDir()
			db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
			var store accesslog.Store = &slowRecordStore{Store: db, delay: 20 * time.Millisecond}
			if frames {
				store = &slowFrameStore{Store: db, delay: 20 * time.Millisecond}
			}
			cfg := accesslog.IngesterConfig{Store: store, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50,
				StoreBatch: 400, FlushInterval: 5 * time.Millisecond, StoreDelay: 8 * time.Millisecond}
			reg := prometheus.NewRegistry()
			cfg.Metrics = accesslog.NewMetrics(reg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in, err := accesslog.NewIngester(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			accesslog.PoisonFrameBuffers(in)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := in.Run(ctx); err != nil {
					t.Errorf("ingester: %v", err)
				}
			}()
			recs := frameRecords(6000)
			for i := 0; i < len(recs); i += 150 {
				in.Add(recs[i:min(i+150, len(recs))]...)
				time.Sleep(2 * time.Millisecond)
			}
			testenv.WaitFor(t, "everything stored", 30*time.Second, func() bool {
				return testutil.ToFloat64(cfg.Metrics.Stored) == float64(len(recs))
			})
			cancel()
			wg.Wait()
			accesslogtest.StoredOnce(t, db, len(recs))
			byID := make(map[string]accesslog.Record, len(recs))
			for _, r := range recs {
				byID[r.RequestID] = r
			}
			got, err := db.Query(context.Background(), accesslog.Filter{Limit: 2 * len(recs)})
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range got {
				want := byID[g.RequestID]
				want.Batch, want.Index = g.Batch, g.Index
				want.Time = want.Time.Truncate(time.Microsecond)
				if g != want {
					t.Fatalf("stored as\n%+v\nadded as\n%+v", g, want)
				}
			}
		})
	}
}

// FuzzRecordTimes: bytes recordTimes accepts as one record (a frame read
// back from the spool, whose bytes the chain hash is taken over) decode,
// as a batch's reader and as DecodeBinary, to a record that encodes to
// exactly those bytes again (so the hash over the bytes is the hash over
// the record, as Verify computes it) at the time it reported; and every
// record's own encoding is accepted.
func FuzzRecordTimes(f *testing.F) {
	for _, r := range frameRecords(8) {
		f.Add(r.AppendBinary(nil))
	}
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var dec accesslog.Record
		rest, derr := dec.DecodeBinary(b)
		canonical := derr == nil && len(rest) == 0 && string(dec.AppendBinary(nil)) == string(b)
		lo, hi, err := accesslog.RecordTimes(b, 1)
		if (err == nil) != canonical {
			t.Fatalf("recordTimes: %v; decode: %v, %d bytes left, canonical %v", err, derr, len(rest), canonical)
		}
		if err != nil {
			return
		}
		if !lo.Equal(dec.Time) || !hi.Equal(dec.Time) {
			t.Fatalf("times %v %v, record %v", lo, hi, dec.Time)
		}
		bt := &accesslog.Batch{Frames: [][]byte{b}}
		bt.Seq, bt.Count = 3, 1
		got, err := bt.Reader().Next(make([]accesslog.Record, 2))
		dec.Batch, dec.Index = 3, 0
		if err != nil || len(got) != 1 || got[0] != dec {
			t.Fatalf("reader: %v %+v, want %+v", err, got, dec)
		}
	})
}
