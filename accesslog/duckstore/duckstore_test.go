package duckstore_test

import (
	"context"
	"errors"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func openStore(t *testing.T, path string) *duckstore.Store {
	t.Helper()
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: path, MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func records(seed uint64, n int, start time.Time, span time.Duration) []accesslog.Record {
	p := accesslog.NewRedactor(nil, nil)
	out := make([]accesslog.Record, 0, n)
	for _, e := range accesslogtest.Random(seed, n, start, span) {
		out = append(out, p.FromHTTP("node-1", "us-east-1", e.HTTP()))
	}
	return out
}

type running struct {
	in   *accesslog.Ingester
	m    *accesslog.Metrics
	stop func()
}

func startIngester(t *testing.T, s accesslog.Store, spool string, batch int) *running {
	t.Helper()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: spool, BatchSize: batch, StoreBatch: batch, FlushInterval: 20 * time.Millisecond, Metrics: m, RetryMax: 100 * time.Millisecond, StopGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingester: %v", err)
		}
	}
	t.Cleanup(stop)
	return &running{in: in, m: m, stop: stop}
}

func TestIngestQueryStatsVerifyTamper(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := records(1, 1000, now.Add(-30*time.Minute), 30*time.Minute)
	r := startIngester(t, s, filepath.Join(dir, "spool"), 100)
	for i := 0; i < len(recs); i += 50 {
		r.in.Add(slices.Clone(recs[i : i+50])...)
	}
	testenv.WaitFor(t, "1000 stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 1000 })
	ctx := context.Background()

	// Filters against the same filter applied in Go.
	f, err := accesslog.ParseFilter(url.Values{"since": {"1h"}, "status": {"403"}, "limit": {"10000"}}, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Query(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for _, rec := range recs {
		if rec.Status == 403 {
			want++
		}
	}
	if len(got) != want || want == 0 {
		t.Fatalf("status=403: got %d rows, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.After(got[i-1].Time) {
			t.Fatalf("not newest first at %d", i)
		}
	}

	// Cursor pagination visits every row once, in order.
	all, err := s.Query(ctx, accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 5000})
	if err != nil || len(all) != 1000 {
		t.Fatalf("all: %d rows, %v", len(all), err)
	}
	var paged []accesslog.Record
	page := accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 37}
	for i := 0; i < 100; i++ {
		rows, err := s.Query(ctx, page)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, rows...)
		if len(rows) < page.Limit {
			break
		}
		c := accesslog.CursorOf(&rows[len(rows)-1])
		page.After = &c
	}
	if len(paged) != 1000 {
		t.Fatalf("paged %d rows, want 1000", len(paged))
	}
	for i := range paged {
		if paged[i].Batch != all[i].Batch || paged[i].Index != all[i].Index {
			t.Fatalf("page row %d is %d/%d, want %d/%d", i, paged[i].Batch, paged[i].Index, all[i].Batch, all[i].Index)
		}
	}

	// Stats by client_ip equal a Go count.
	counts := map[string]int64{}
	denied := map[string]int64{}
	for _, rec := range recs {
		counts[rec.ClientIP]++
		if rec.Denied() {
			denied[rec.ClientIP]++
		}
	}
	groups, err := s.Stats(ctx, accesslog.StatsQuery{Filter: accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 5}, GroupBy: "client_ip"})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(groups) != 5 {
		t.Fatalf("groups: %d", len(groups))
	}
	for i, g := range groups {
		if g.Key != keys[i] || g.Count != counts[keys[i]] || g.Denied != denied[keys[i]] {
			t.Fatalf("group %d = %+v, want %s count %d denied %d", i, g, keys[i], counts[keys[i]], denied[keys[i]])
		}
		if g.P99MS < g.P50MS || g.P50MS <= 0 {
			t.Fatalf("group %d percentiles %+v", i, g)
		}
	}
	hist, err := s.Histogram(ctx, accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var total, totalDenied int64
	for _, b := range hist {
		total += b.Count
		totalDenied += b.Denied
	}
	var wantDenied int64
	for _, d := range denied {
		wantDenied += d
	}
	if total != 1000 || totalDenied != wantDenied {
		t.Fatalf("histogram totals %d/%d, want 1000/%d", total, totalDenied, wantDenied)
	}

	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 1000 || res.Batches < 10 {
		t.Fatalf("verify clean store: %+v %v", res, err)
	}
	r.stop()
	// An edit to one row breaks its batch and only its batch.
	if _, err := s.DB().ExecContext(ctx, "UPDATE logs SET subject = 'mallory' WHERE batch = 4 AND idx = 7"); err != nil {
		t.Fatal(err)
	}
	res, err = accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || res.OK || res.BrokenBatch != 4 {
		t.Fatalf("verify after tampering: %+v %v", res, err)
	}
	// Deleting a row is caught as well.
	if _, err := s.DB().ExecContext(ctx, "UPDATE logs SET subject = (SELECT subject FROM logs WHERE batch = 4 AND idx = 6) WHERE batch = 4 AND idx = 7"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "DELETE FROM logs WHERE batch = 2 AND idx = 0"); err != nil {
		t.Fatal(err)
	}
	res, _ = accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if res.OK || res.BrokenBatch != 2 {
		t.Fatalf("verify after delete: %+v", res)
	}
}

// flaky wraps the real store and fails writes while down is set: a store
// outage as the ingester sees it.
type flaky struct {
	accesslog.Store
	down   atomic.Bool
	writes atomic.Int64
}

func (f *flaky) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	if f.down.Load() {
		return errors.New("injected outage")
	}
	f.writes.Add(1)
	return f.Store.WriteBatch(ctx, b)
}

func TestOutageSpillsAndRestartReplays(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	fs := &flaky{Store: s}
	fs.down.Store(true)
	now := time.Now().UTC()
	recs := records(2, 3000, now.Add(-time.Minute), time.Minute)
	r := startIngester(t, fs, filepath.Join(dir, "spool"), 100)
	for i := 0; i < len(recs); i += 100 {
		r.in.Add(slices.Clone(recs[i : i+100])...)
		time.Sleep(time.Millisecond)
	}
	testenv.WaitFor(t, "3000 spooled", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Spooled) == 3000 })
	if st := testutil.ToFloat64(r.m.Stored); st != 0 {
		t.Fatalf("stored %v during the outage", st)
	}
	if sp := testutil.ToFloat64(r.m.Spilled); sp == 0 {
		t.Fatalf("nothing counted as spilled during the outage")
	}
	r.stop() // a restart while the store is still down

	fs.down.Store(false)
	r2 := startIngester(t, fs, filepath.Join(dir, "spool"), 100)
	testenv.WaitFor(t, "3000 stored after restart", 20*time.Second, func() bool { return testutil.ToFloat64(r2.m.Stored) == 3000 })
	r2.stop()
	accesslogtest.StoredOnce(t, s, 3000)
	// Stored segments are removed; only the newest may stay.
	if matches, _ := filepath.Glob(filepath.Join(dir, "spool", "*.seg")); len(matches) > 1 {
		t.Fatalf("spool still holds %d segments after everything was stored", len(matches))
	}
}

func TestRetentionDropsDaysAndChainStillVerifies(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	r := startIngester(t, s, filepath.Join(dir, "spool"), 1000)
	// All four days arrive interleaved in one call (a backfill after an
	// outage): frames and batches must still hold one day each.
	var all []accesslog.Record
	for d := 3; d >= 0; d-- {
		all = append(all, records(uint64(10+d), 200, today.Add(-time.Duration(d)*24*time.Hour+time.Hour), time.Hour)...)
	}
	slices.SortFunc(all, func(a, b accesslog.Record) int {
		return strings.Compare(a.RequestID[len(a.RequestID)-2:], b.RequestID[len(b.RequestID)-2:])
	})
	r.in.Add(all...)
	testenv.WaitFor(t, "stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 800 })
	r.stop()
	dropped, err := r.in.DropBefore(context.Background(), today.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 400 {
		t.Fatalf("dropped %d rows, want 400 (days -3 and -2)", dropped)
	}
	got, err := s.Query(context.Background(), accesslog.Filter{Limit: 10000})
	if err != nil || len(got) != 400 {
		t.Fatalf("rows left: %d %v", len(got), err)
	}
	for _, g := range got {
		if g.Time.Before(today.Add(-24 * time.Hour)) {
			t.Fatalf("row from %s survived retention", g.Time)
		}
	}
	res, err := accesslog.Verify(context.Background(), s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Pruned < 2 || res.Records != 400 {
		t.Fatalf("verify after retention: %+v %v", res, err)
	}
}

// fnvCollision finds two different subjects with the same 32-bit lookup
// hash (birthday search, bounded).
func fnvCollision(t *testing.T) (string, string) {
	seen := map[uint32]string{}
	for i := 0; i < 2_000_000; i++ {
		s := "user-" + strconv.Itoa(i)
		h := fnv.New32a()
		h.Write([]byte(s))
		if o, ok := seen[h.Sum32()]; ok {
			return o, s
		}
		seen[h.Sum32()] = s
	}
	t.Fatal("no FNV-32a collision found")
	return "", ""
}

// TestLookupHashCollisions: two subjects share a lookup hash; a subject
// query returns exactly the rows of the one asked for, on every page.
func TestLookupHashCollisions(t *testing.T) {
	a, b := fnvCollision(t)
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	now := time.Now().UTC()
	recs := records(9, 300, now.Add(-time.Hour), 50*time.Minute)
	want := 0
	for i := range recs {
		switch {
		case i%3 == 0:
			recs[i].Subject = a
			want++
		case i%3 == 1:
			recs[i].Subject = b // interleaved collisions
		}
	}
	r := startIngester(t, s, filepath.Join(dir, "spool"), 1000)
	r.in.Add(recs...)
	testenv.WaitFor(t, "stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 300 })
	f := accesslog.Filter{Since: now.Add(-2 * time.Hour), Until: now, Subject: a, Limit: 7}
	got := 0
	for i := 0; i < 100; i++ {
		page, err := s.Query(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range page {
			if rec.Subject != a {
				t.Fatalf("subject %q returned for %q", rec.Subject, a)
			}
		}
		got += len(page)
		if len(page) < f.Limit {
			break
		}
		c := accesslog.CursorOf(&page[len(page)-1])
		f.After = &c
	}
	if got != want {
		t.Fatalf("paged %d rows of %s, want %d", got, a, want)
	}
	all, err := s.Query(context.Background(), accesslog.Filter{Subject: b, Limit: 1000})
	if err != nil || len(all) != 100 {
		t.Fatalf("subject %s: %d rows %v", b, len(all), err)
	}
	st, err := s.Stats(context.Background(), accesslog.StatsQuery{Filter: accesslog.Filter{Since: now.Add(-2 * time.Hour), Until: now, Subject: a, Limit: 10}, GroupBy: "subject"})
	if err != nil || len(st) != 1 || st[0].Count != int64(want) {
		t.Fatalf("stats for %s: %+v %v", a, st, err)
	}
}

// TestWriteBatchRestoresQueryThreads: a store with two query threads
// writes with one (WriteThreads) and is back at two afterwards, with
// every row and hash stored; the checkpoint threshold is the store's
// default.
func TestWriteBatchRestoresQueryThreads(t *testing.T) {
	ctx := context.Background()
	s, err := duckstore.Open(ctx, duckstore.Config{Path: filepath.Join(t.TempDir(), "t.duckdb"), MemoryLimit: "256MB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := records(3, 5000, time.Now().UTC().Truncate(time.Hour), time.Minute)
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count = 1, 1, uint32(len(recs))
	for i := range recs {
		recs[i].Batch, recs[i].Index = b.Seq, uint32(i)
	}
	b.MinTime, b.MaxTime = recs[0].Time, recs[len(recs)-1].Time
	if b.Hash, err = accesslog.ChainHash("", b.Seq, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	var threads string
	if err := s.DB().QueryRowContext(ctx, "SELECT current_setting('threads')").Scan(&threads); err != nil {
		t.Fatal(err)
	}
	if threads != "2" {
		t.Errorf("threads after WriteBatch = %s, want 2", threads)
	}
	var threshold string
	if err := s.DB().QueryRowContext(ctx, "SELECT current_setting('checkpoint_threshold')").Scan(&threshold); err != nil {
		t.Fatal(err)
	}
	if threshold != "244.1 MiB" { // 256MB as DuckDB prints it
		t.Errorf("checkpoint_threshold = %s, want the 256MB default", threshold)
	}
	got, err := s.BatchRecords(ctx, b.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("stored %d rows, want %d", len(got), len(recs))
	}
	if h, err := accesslog.ChainHash("", b.Seq, got); err != nil || h != b.Hash {
		t.Errorf("stored rows hash to %s (%v), want %s", h, err, b.Hash)
	}
}

// TestAdmitWaitsForRoomInsteadOfDropping: with the in-memory buffer more
// than half full a receiver waits (however long the spool takes) until a
// flush makes room, so nothing read is dropped; it is let go when the
// flush comes, or when its stream ends.
func TestAdmitWaitsForRoomInsteadOfDropping(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: filepath.Join(dir, "spool"), FlushInterval: 20 * time.Millisecond, BufferEntries: 10, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// The spool goroutine is not running: 6 of 10 buffered stay there.
	in.Add(records(6, 6, time.Now().UTC(), time.Second)...)
	streamCtx, endStream := context.WithCancel(ctx)
	admitted := make(chan struct{})
	go func() { in.Admit(streamCtx); close(admitted) }()
	select {
	case <-admitted:
		t.Fatal("admitted with the buffer more than half full")
	case <-time.After(10 * 20 * time.Millisecond): // ten flush intervals
	}
	endStream()
	<-admitted // a stream that ends is let go

	admitted2 := make(chan struct{})
	go func() { in.Admit(ctx); close(admitted2) }()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	testenv.WaitFor(t, "a receiver let go once a flush made room", 20*time.Second, func() bool {
		select {
		case <-admitted2:
			return true
		default:
			return false
		}
	})
	testenv.WaitFor(t, "every entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 6 })
	if d := testutil.ToFloat64(m.Dropped.WithLabelValues("buffer_full")); d != 0 {
		t.Fatalf("%v entries dropped", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAdmitHoldsBackWhileTheSpoolIsLate: a receiver is held back (and the
// wait counted) while entries wait for a late spool flush, not when the
// spool is on time; held-back entries are still stored.
func TestAdmitHoldsBackWhileTheSpoolIsLate(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: filepath.Join(dir, "spool"), FlushInterval: 40 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	in.Admit(ctx) // nothing pending
	if got := testutil.ToFloat64(m.Throttled); got != 0 {
		t.Fatalf("throttled %v s with nothing pending", got)
	}
	// The spool goroutine is not running yet: the entry's flush is late.
	in.Add(records(5, 1, time.Now().UTC(), time.Second)...)
	time.Sleep(30 * time.Millisecond)
	in.Admit(ctx)
	if got := testutil.ToFloat64(m.Throttled); got <= 0 {
		t.Fatalf("not throttled while the spool was late")
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	testenv.WaitFor(t, "the held-back entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestChainTamperEvidence: a keyed chain in DuckDB cannot be fooled by
// flagging batches pruned or by recomputing it (accesslogtest suite).
func TestChainTamperEvidence(t *testing.T) {
	n := 0
	accesslogtest.ChainTamperEvidence(t, func(t *testing.T) accesslog.Store {
		n++
		s := openStore(t, filepath.Join(t.TempDir(), "logs"+strconv.Itoa(n)+".duckdb"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestStoreFileIsOwnerOnly: the DuckDB file is 0600 whatever the umask
// (it holds client addresses, subjects and headers).
func TestStoreFileIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs.duckdb")
	s := openStore(t, path)
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode %04o, want 0600", fi.Mode().Perm())
	}
}

// TestFilterLanguageMatchesGo: prefix (value*), negation (!value) and
// status classes (4xx) select in DuckDB exactly the rows the Go reference
// matcher selects, in Query, Stats and Histogram alike.
func TestFilterLanguageMatchesGo(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := records(7, 1000, now.Add(-30*time.Minute), 30*time.Minute)
	r := startIngester(t, s, filepath.Join(dir, "spool"), 200)
	r.in.Add(slices.Clone(recs)...)
	testenv.WaitFor(t, "1000 stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 1000 })
	accesslogtest.CheckLanguage(t, s, recs, now)
}
