package duckstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// benchRows is the store size for the query benchmarks: 200,000 rows by
// default, GATEHOUSE_BENCH_ROWS=10000000 in `make bench-accesslog`.
func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("GATEHOUSE_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

var (
	benchOnce  sync.Once
	benchStore *duckstore.Store
	benchEnd   time.Time
	benchErr   error
)

// loadBench fills a store with n rows over 7 days through WriteBatch in
// 100,000-row hash-chained batches (the embedded store's bulk path). With
// GATEHOUSE_BENCH_DIR set the file is kept and reused across runs.
func loadBench(b *testing.B) (*duckstore.Store, time.Time) {
	b.Helper()
	benchOnce.Do(func() {
		n := benchRows()
		dir := os.Getenv("GATEHOUSE_BENCH_DIR")
		if dir == "" {
			d, err := os.MkdirTemp("", "gatehouse-bench-")
			if err != nil {
				benchErr = err
				return
			}
			dir = d
		}
		path := filepath.Join(dir, fmt.Sprintf("bench-%d-v2.duckdb", n))
		benchEnd = time.Date(2026, 6, 8, 0, 0, 0, 0, time.UTC)
		s, err := duckstore.Open(context.Background(), duckstore.Config{Path: path, MemoryLimit: "1GB", Threads: 2})
		if err != nil {
			benchErr = err
			return
		}
		benchStore = s
		head, err := s.Head(context.Background(), 0)
		if err != nil {
			benchErr = err
			return
		}
		const batch = 100_000
		have := int(head.Seq) * batch
		if head.Seq > 0 && have >= n {
			return // reused
		}
		start := time.Now()
		span := 7 * 24 * time.Hour
		prev := head
		for off := have; off < n; off += batch {
			m := min(batch, n-off)
			t0 := benchEnd.Add(-span + span/time.Duration(n)*time.Duration(off))
			recs := accesslogtest.RandomRecords(uint64(off), m, t0, span/time.Duration(n)*time.Duration(m))
			bt := &accesslog.Batch{Records: recs}
			bt.Seq, bt.SpoolSeq, bt.Count, bt.PrevHash = prev.Seq+1, prev.Seq+1, uint32(m), prev.Hash
			for i := range recs {
				recs[i].Batch, recs[i].Index = bt.Seq, uint32(i)
			}
			bt.MinTime, bt.MaxTime = recs[0].Time, recs[m-1].Time
			if bt.Hash, err = accesslog.ChainHash(bt.PrevHash, bt.Seq, recs); err != nil {
				benchErr = err
				return
			}
			if err := s.WriteBatch(context.Background(), bt); err != nil {
				benchErr = err
				return
			}
			prev = bt.BatchHeader
		}
		el := time.Since(start)
		fmt.Fprintf(os.Stderr, "loaded %d rows into %s in %s (%.0f rows/s)\n", n-have, path, el.Round(time.Millisecond), float64(n-have)/el.Seconds())
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchStore, benchEnd
}

// BenchmarkQuery measures the security team's queries on the embedded
// store (see docs/PERFORMANCE.md).
func BenchmarkQuery(b *testing.B) {
	s, end := loadBench(b)
	ctx := context.Background()
	week := accesslog.Filter{Since: end.Add(-7 * 24 * time.Hour), Until: end}
	day := accesslog.Filter{Since: end.Add(-24 * time.Hour), Until: end}
	with := func(f accesslog.Filter, mod func(*accesslog.Filter)) accesslog.Filter { mod(&f); return f }
	cases := []struct {
		name string
		run  func() (int, error)
	}{
		{"logs_client_ip_7d", func() (int, error) {
			r, err := s.Query(ctx, with(week, func(f *accesslog.Filter) { f.ClientIP = "10.3.17.4"; f.Limit = 100 }))
			return len(r), err
		}},
		{"logs_route_status403_24h", func() (int, error) {
			r, err := s.Query(ctx, with(day, func(f *accesslog.Filter) { f.Route = "svc1/route2"; f.Status = 403; f.Limit = 100 }))
			return len(r), err
		}},
		{"logs_subject_denied_7d", func() (int, error) {
			d := true
			r, err := s.Query(ctx, with(week, func(f *accesslog.Filter) { f.Subject = "user-42"; f.Denied = &d; f.Limit = 100 }))
			return len(r), err
		}},
		{"logs_newest_page", func() (int, error) {
			r, err := s.Query(ctx, with(week, func(f *accesslog.Filter) { f.Limit = 100 }))
			return len(r), err
		}},
		{"top10_ips_by_403_7d", func() (int, error) {
			g, err := s.Stats(ctx, accesslog.StatsQuery{Filter: with(week, func(f *accesslog.Filter) { f.Status = 403; f.Limit = 10 }), GroupBy: "client_ip"})
			return len(g), err
		}},
		{"p99_by_route_7d", func() (int, error) {
			g, err := s.Stats(ctx, accesslog.StatsQuery{Filter: with(week, func(f *accesslog.Filter) { f.Limit = 100 }), GroupBy: "route"})
			return len(g), err
		}},
		{"histogram_24h_1m", func() (int, error) {
			h, err := s.Histogram(ctx, day, time.Minute)
			return len(h), err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := testenv.CPUTime()
			for b.Loop() {
				n, err := c.run()
				if err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					b.Fatal("empty answer")
				}
			}
			// CPU time (all DuckDB threads) is steadier than wall time on
			// a shared machine.
			b.ReportMetric(float64((testenv.CPUTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkWriteBatch is the store's insert path: one 10,000-row batch
// per op (rows + header in one transaction).
func BenchmarkWriteBatch(b *testing.B) {
	benchWriteBatch(b, accesslogtest.RandomRecords(1, 10_000, time.Now().Add(-time.Hour), time.Hour))
}

// BenchmarkWriteBatchFrames is BenchmarkWriteBatch with the records
// handed as the Ingester hands them: encoded, in spool frames of 1,000
// (Batch.Frames), decoded a chunk at a time by the store.
func BenchmarkWriteBatchFrames(b *testing.B) {
	benchWriteBatchFrames = 1000
	defer func() { benchWriteBatchFrames = 0 }()
	benchWriteBatch(b, accesslogtest.RandomRecords(1, 10_000, time.Now().Add(-time.Hour), time.Hour))
}

// benchWriteBatchFrames, when not 0, makes benchWriteBatch hand the
// records as frames of that many.
var benchWriteBatchFrames int

// BenchmarkWriteBatchNoConstantColumn is BenchmarkWriteBatch with a value
// of its own in every VARCHAR column of every row (RandomRecords leaves
// most of them the same across a batch, which the store writes as one
// parameter): the store's worst case.
func BenchmarkWriteBatchNoConstantColumn(b *testing.B) {
	recs := accesslogtest.RandomRecords(1, 10_000, time.Now().Add(-time.Hour), time.Hour)
	for i := range recs {
		r, v := &recs[i], strconv.Itoa(i)
		for _, f := range []*string{&r.RequestID, &r.Kind, &r.LogType, &r.Node, &r.NodeGroup, &r.Route, &r.Authority,
			&r.Method, &r.Path, &r.Query, &r.ResponseFlags, &r.ClientIP, &r.TLSVersion, &r.TLSSNI, &r.PeerPrincipal,
			&r.UserAgent, &r.Headers, &r.UpstreamCluster, &r.UpstreamHost, &r.Subject, &r.Provider, &r.AuthKind,
			&r.APIKeyID, &r.Rule, &r.Decision, &r.ConfigVersion} {
			*f += "-" + v
		}
	}
	benchWriteBatch(b, recs)
}

// BenchmarkWriteBatchUnique writes rows like the ingest benchmark's
// (accesslogtest.UniqueEntry, through the redactor): a unique
// request id, path, query, client address and port, user agent and
// headers JSON in every row, routes, hosts and upstreams from 16 specs,
// subjects from 50,000, a few statuses; 200,000 rows per batch (the
// shipped --store-batch), so full row groups go to the file compressed
// at once as in the sidecar. It also reports the CPU of the store's
// close (the last checkpoint) and the file's bytes per 1,000 rows.
func BenchmarkWriteBatchUnique(b *testing.B) {
	benchWriteBatch(b, uniqueRecords(b, 200_000, time.Now().UTC().Add(-time.Hour)))
}

// uniqueRecords is n records made as the ingest benchmark's sidecar makes
// them (accesslogtest.UniqueEntry through its redactor).
func uniqueRecords(tb testing.TB, n int, t0 time.Time) []accesslog.Record {
	p := accesslogtest.IngestRedactor(tb)
	out := make([]accesslog.Record, n)
	for i := range out {
		out[i] = p.FromHTTP(fmt.Sprintf("envoy-%d", i%4), "bench", accesslogtest.UniqueEntry(i, n, t0))
		out[i].ConfigVersion = "v1-0123456789abcdef"
	}
	return out
}

func benchWriteBatch(b *testing.B, recs []accesslog.Record) {
	path := filepath.Join(b.TempDir(), "w.duckdb")
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: path, MemoryLimit: "512MB", Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	var prev accesslog.BatchHeader
	var frames [][]byte // the same for every batch: Batch and Index are not encoded
	if benchWriteBatchFrames > 0 {
		frames = framesOf(recs, benchWriteBatchFrames)
	}
	b.ReportAllocs()
	cpu0 := testenv.CPUTime()
	for b.Loop() {
		bt := &accesslog.Batch{Records: recs}
		bt.Seq, bt.SpoolSeq, bt.Count, bt.PrevHash = prev.Seq+1, prev.Seq+1, uint32(len(recs)), prev.Hash
		for i := range recs {
			recs[i].Batch, recs[i].Index = bt.Seq, uint32(i)
		}
		bt.MinTime, bt.MaxTime = recs[0].Time, recs[len(recs)-1].Time
		bt.Hash, _ = accesslog.ChainHash(bt.PrevHash, bt.Seq, recs)
		if frames != nil {
			bt.Records, bt.Frames = nil, frames
		}
		if err := s.WriteBatch(context.Background(), bt); err != nil {
			b.Fatal(err)
		}
		prev = bt.BatchHeader
	}
	b.StopTimer()
	rows := float64(b.N * len(recs))
	cpu1 := testenv.CPUTime()
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/rows, "cpu-ms/1k-rows")
	// The close checkpoints what the WAL still holds: part of the cost.
	closed = true
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((testenv.CPUTime()-cpu0).Microseconds())/rows, "cpu-ms/1k-rows-incl-close")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/rows*1000, "file-B/1k-rows")
	}
}
