package accesslog_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
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

// holdStore passes writes to the store until hold is set, then holds
// every write until its context ends (as if the process died first).
type holdStore struct {
	accesslog.Store
	hold atomic.Bool
}

func (s *holdStore) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	if s.hold.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.WriteBatch(ctx, b)
}

func openDuck(t *testing.T, path string) *duckstore.Store {
	t.Helper()
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: path, MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type runningIngester struct {
	in   *accesslog.Ingester
	m    *accesslog.Metrics
	reg  *prometheus.Registry
	stop func()
}

func runIngester(t *testing.T, cfg accesslog.IngesterConfig) *runningIngester {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = accesslog.NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingester: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningIngester{in: in, m: cfg.Metrics, reg: reg, stop: stop}
}

// TestReplayAfterKillInRecycledSegment: with small spool segments the
// stored ones are recycled; the process dies while the active segment is
// a recycled one, filled to its middle (the frames of its previous life
// behind the new ones) and its entries not stored yet; after the restart
// every entry is stored exactly once and the chain verifies.
func TestReplayAfterKillInRecycledSegment(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	hs := &holdStore{Store: db}
	const segBytes = 256 << 10
	cfg := accesslog.IngesterConfig{Store: hs, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, SegmentBytes: segBytes, StoreDelay: time.Millisecond,
		RetryMax: 50 * time.Millisecond, StopGrace: 300 * time.Millisecond}
	r := runIngester(t, cfg)
	recs := accesslogtest.RandomRecords(7, 40000, time.Now().UTC().Add(-time.Hour), time.Minute)
	added := 0
	add := func(n int) {
		for ; n > 0 && added < len(recs); n -= 50 {
			r.in.Add(recs[added : added+50]...)
			added += 50
			r.in.Admit(context.Background())
		}
	}
	// Until the spool writes into a recycled segment, with room for more.
	for {
		add(50)
		testenv.WaitFor(t, "what was added stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == float64(added) })
		if _, _, _, size, _, recycled := accesslog.SpoolActive(r.in); recycled && size < segBytes/4 {
			break
		}
		if added >= len(recs)-1000 {
			t.Fatalf("no recycled segment after %d entries", added)
		}
	}
	stored := added
	// The store stops taking batches; 200 more entries are spooled only.
	hs.hold.Store(true)
	add(200)
	testenv.WaitFor(t, "everything spooled", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Spooled) == float64(added) })
	path, first, last, size, fileSize, recycled := accesslog.SpoolActive(r.in)
	if !recycled || size > segBytes/2 || fileSize != segBytes {
		t.Fatalf("at the kill the active segment %s (frames %d-%d, %d of %d bytes, recycled %v) is not a recycled one filled to its middle", path, first, last, size, fileSize, recycled)
	}
	r.stop() // the process dies: its store writes never happened
	if got := testutil.ToFloat64(r.m.Stored); got != float64(stored) {
		t.Fatalf("%v stored before the kill, want %d (the rest only in the spool)", got, stored)
	}

	hs.hold.Store(false)
	r2 := runIngester(t, cfg)
	testenv.WaitFor(t, "the spooled entries replayed", 20*time.Second, func() bool { return testutil.ToFloat64(r2.m.Stored) == float64(added-stored) })
	r2.stop()
	accesslogtest.StoredOnce(t, db, added)
}

// TestAdmitHoldsBackUntilTheSpoolCatchesUp: while an entry not yet
// spooled has waited more than FlushInterval/2, a receiver is held until
// a flush has taken it (up to ten FlushIntervals; not for one and then let
// go to add more), and let go by the flush that takes it.
func TestAdmitHoldsBackUntilTheSpoolCatchesUp(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	const fi = 20 * time.Millisecond
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), FlushInterval: fi, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// The spool goroutine is not running: the entry's flush is late.
	in.Add(accesslogtest.RandomRecords(3, 1, time.Now().UTC(), time.Second)...)
	time.Sleep(fi)
	admitted := make(chan struct{})
	go func() { in.Admit(ctx); close(admitted) }()
	select {
	case <-admitted:
		t.Fatal("a receiver was let go while the spool was still late")
	case <-time.After(5 * fi):
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	testenv.WaitFor(t, "the receiver let go once the late entry was spooled", 20*time.Second, func() bool {
		select {
		case <-admitted:
			return true
		default:
			return false
		}
	})
	if got := testutil.ToFloat64(m.Throttled); got < (5 * fi).Seconds() {
		t.Fatalf("throttled %v s, want at least the %v held", got, 5*fi)
	}
	testenv.WaitFor(t, "the entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBackpressureLosesNothing: receivers that add and Admit as fast as
// they can, against a spool that is often late, are slowed but never
// stuck, nothing is dropped and everything is stored once; every flush
// reports its wait, write and fsync, which add up to its sync lag.
func TestBackpressureLosesNothing(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	r := runIngester(t, accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 500,
		FlushInterval: 4 * time.Millisecond, BufferEntries: 4000, StoreDelay: 10 * time.Millisecond})
	const receivers, msgs, per = 6, 40, 100
	recs := accesslogtest.RandomRecords(11, receivers*msgs*per, time.Now().UTC().Add(-time.Hour), time.Minute)
	var wg sync.WaitGroup
	for k := 0; k < receivers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := 0; i < msgs; i++ {
				off := (k*msgs + i) * per
				r.in.Add(recs[off : off+per]...)
				r.in.Admit(ctx)
				if ctx.Err() != nil {
					t.Errorf("receiver %d stuck in Admit", k)
					return
				}
			}
		}(k)
	}
	wg.Wait()
	total := float64(len(recs))
	testenv.WaitFor(t, "everything stored", 30*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == total })
	if d := testutil.ToFloat64(r.m.Dropped.WithLabelValues("buffer_full")); d != 0 {
		t.Fatalf("%v entries dropped", d)
	}
	r.stop()
	got, err := db.Query(context.Background(), accesslog.Filter{Limit: 100000})
	if err != nil || len(got) != len(recs) {
		t.Fatalf("%d rows stored, want %d: %v", len(got), len(recs), err)
	}
	lagN, lags := hist(t, r.reg, "gatehouse_accesslog_spool_sync_lag_hist_seconds")
	var parts float64
	for _, part := range []string{"flush_wait", "flush_write", "fsync"} {
		n, sum := hist(t, r.reg, "gatehouse_accesslog_spool_"+part+"_seconds")
		if n != lagN || n == 0 {
			t.Fatalf("%d observations of %s, %d fsyncs", n, part, lagN)
		}
		parts += sum
	}
	if parts > lags+1e-3 || parts < 0.9*lags {
		t.Fatalf("the parts add up to %v s, the sync lags to %v s", parts, lags)
	}
}

// hist returns the count and sum of the histogram name in reg.
func hist(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0, 0
}

// TestSpoolMovedAwayKeepsStoring: after the spool directory is moved away
// (as the start-up error about missing frames tells an operator to do)
// the new spool numbers its frames on from the store's head, so new
// entries are stored, not skipped as already stored.
func TestSpoolMovedAwayKeepsStoring(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	cfg := accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, StoreDelay: time.Millisecond, StopGrace: 300 * time.Millisecond}
	recs := accesslogtest.RandomRecords(5, 2000, time.Now().UTC().Add(-time.Hour), time.Minute)
	r := runIngester(t, cfg)
	for i := 0; i < 1000; i += 50 {
		r.in.Add(recs[i : i+50]...)
		r.in.Admit(context.Background())
	}
	testenv.WaitFor(t, "1000 stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 1000 })
	r.stop()
	if err := os.Rename(cfg.SpoolDir, cfg.SpoolDir+".old"); err != nil {
		t.Fatal(err)
	}
	r2 := runIngester(t, cfg)
	for i := 1000; i < 2000; i += 50 {
		r2.in.Add(recs[i : i+50]...)
		r2.in.Admit(context.Background())
	}
	testenv.WaitFor(t, "the next 1000 stored", 20*time.Second, func() bool { return testutil.ToFloat64(r2.m.Stored) == 1000 })
	r2.stop()
	res, err := accesslog.Verify(context.Background(), db, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 2000 {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// TestBufferedGaugeCountsWhatWasAdded: gatehouse_accesslog_buffered_entries
// rises by what Add took and falls by what reached the spool, so it is
// back at zero once everything is stored (it went negative when Add
// counted the records it had already moved into chunks: none).
func TestBufferedGaugeCountsWhatWasAdded(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	r := runIngester(t, accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, StoreDelay: time.Millisecond, StopGrace: time.Second})
	recs := accesslogtest.RandomRecords(11, 300, time.Now().UTC().Add(-time.Hour), time.Minute)
	for i := 0; i < len(recs); i += 30 {
		r.in.Add(recs[i : i+30]...)
	}
	testenv.WaitFor(t, "every entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == float64(len(recs)) })
	if got := testutil.ToFloat64(r.m.Buffered); got != 0 {
		t.Fatalf("buffered entries gauge %v once all %d entries are stored, want 0", got, len(recs))
	}
}
