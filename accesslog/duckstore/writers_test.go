package duckstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// hookedStore is the real store as an OrderedStore with a hook between a
// batch's rows going in and its commit: beforePrev runs before the batch
// waits for the one before it, afterPrev once that one is committed (an
// error from it rolls the batch back). commits lists the batches in the
// order they went on to commit.
type hookedStore struct {
	*duckstore.Store
	beforePrev, afterPrev func(ctx context.Context, seq uint64) error
	mu                    sync.Mutex
	commits               []uint64
}

func (h *hookedStore) WriteBatchAfter(ctx context.Context, b *accesslog.Batch, prev func(context.Context) error) error {
	return h.Store.WriteBatchAfter(ctx, b, func(ctx context.Context) error {
		if h.beforePrev != nil {
			if err := h.beforePrev(ctx, b.Seq); err != nil {
				return err
			}
		}
		if prev != nil {
			if err := prev(ctx); err != nil {
				return err
			}
		}
		if h.afterPrev != nil {
			if err := h.afterPrev(ctx, b.Seq); err != nil {
				return err
			}
		}
		h.mu.Lock()
		h.commits = append(h.commits, b.Seq)
		h.mu.Unlock()
		return nil
	})
}

// startPipeline runs an ingester on s whose store batches are two frames
// of 1,000 records, written by two store writers.
func startPipeline(t *testing.T, s accesslog.Store, spool string) (*accesslog.Ingester, *accesslog.Metrics, func() error) {
	t.Helper()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: spool, BatchSize: 1000, StoreBatch: 2000,
		StoreWriters: 2, StoreDelay: 50 * time.Millisecond, SegmentBytes: 1 << 10, FlushInterval: 20 * time.Millisecond,
		Metrics: m, RetryMax: 100 * time.Millisecond, StopGrace: 500 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return in, m, stop
}

// storedOnce checks that the store holds every record of want exactly
// once (by request id) and that the chain verifies.
func storedOnce(t *testing.T, s *duckstore.Store, want []accesslog.Record) {
	t.Helper()
	ctx := context.Background()
	var got []string
	rows, err := s.DB().QueryContext(ctx, "SELECT request_id FROM logs")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	rows.Close()
	var ids []string
	for i := range want {
		ids = append(ids, want[i].RequestID)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("stored %d rows, want the %d added, each once", len(got), len(ids))
	}
	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK {
		t.Errorf("verify: %+v %v", res, err)
	}
}

// TestWritersCommitInOrder: with two store writers, batch 2 is written
// while batch 1 is still in flight (batch 1 is held until batch 2's rows
// are in), yet batch 1 commits first; every entry is stored once and the
// chain verifies.
func TestWritersCommitInOrder(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	if s.Writers() != 2 {
		t.Fatalf("store has %d writing connections, want the default 2", s.Writers())
	}
	secondIn := make(chan struct{})
	hs := &hookedStore{Store: s}
	hs.beforePrev = func(ctx context.Context, seq uint64) error {
		switch seq {
		case 1:
			select { // batch 2 finishes writing its rows first
			case <-secondIn:
			case <-time.After(10 * time.Second):
				t.Error("batch 2 was not written while batch 1 was in flight")
			}
		case 2:
			close(secondIn)
		}
		return nil
	}
	in, m, stop := startPipeline(t, hs, filepath.Join(dir, "spool"))
	recs := oneDayRecords(21, 4000)
	in.Add(recs...)
	testenv.WaitFor(t, "every entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == float64(len(recs)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hs.mu.Lock()
	commits := slices.Clone(hs.commits)
	hs.mu.Unlock()
	if !slices.Equal(commits, []uint64{1, 2}) {
		t.Errorf("batches committed in the order %v, want [1 2]", commits)
	}
	storedOnce(t, s, recs)
}

// oneDayRecords are n records of one UTC day (so no frame is split at
// midnight), an hour into today.
func oneDayRecords(seed uint64, n int) []accesslog.Record {
	day := time.Now().UTC().Truncate(24 * time.Hour)
	recs := records(seed, n, day.Add(time.Hour), time.Hour)
	for i := range recs {
		recs[i].Time = day.Add(time.Hour + time.Duration(i)*time.Millisecond)
	}
	return recs
}

// TestCrashBetweenCommitsReplaysOnce: the process stops after batch 1
// committed and before batch 2 did (batch 2's rows were in, its commit
// never came). Batch 2's frames are still in the spool (released only up
// to what is committed, though every frame has a segment of its own); the
// next start stores them, and every entry is stored exactly once with the
// chain intact.
func TestCrashBetweenCommitsReplaysOnce(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	spool := filepath.Join(dir, "spool")
	firstCommitted := make(chan struct{})
	hs := &hookedStore{Store: s}
	hs.afterPrev = func(ctx context.Context, seq uint64) error {
		if seq == 1 {
			return nil
		}
		if seq == 2 {
			close(firstCommitted)
		}
		<-ctx.Done() // the crash: no commit after batch 1's
		return errors.New("crashed before commit")
	}
	in, _, stop := startPipeline(t, hs, spool)
	recs := oneDayRecords(22, 4000)
	in.Add(recs...)
	select {
	case <-firstCommitted:
	case <-time.After(20 * time.Second):
		t.Fatal("batch 2 never reached its commit")
	}
	_ = stop() // ends the ingester; batch 2 rolls back
	if h, err := s.Head(context.Background(), 0); err != nil || h.Seq != 1 || h.Count != 2000 {
		t.Fatalf("after the crash the head is %+v (%v), want batch 1 of 2,000 entries", h, err)
	}

	_, m, stop2 := startPipeline(t, s, spool)
	testenv.WaitFor(t, "batch 2 replayed", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) >= 2000 })
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Stored); got != 2000 {
		t.Errorf("the restart stored %v entries, want batch 2's 2,000", got)
	}
	storedOnce(t, s, recs)
}

// TestConcurrentWritesKeepWriteThreads: DuckDB's threads setting is
// global; while one batch is still being written after another finished,
// it stays at the write setting (1), and goes back to the query setting
// (2) when the last write ends.
func TestConcurrentWritesKeepWriteThreads(t *testing.T) {
	ctx := context.Background()
	s, err := duckstore.Open(ctx, duckstore.Config{Path: filepath.Join(t.TempDir(), "t.duckdb"), MemoryLimit: "256MB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	threads := func() string {
		var v string
		if err := s.DB().QueryRowContext(ctx, "SELECT current_setting('threads')").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	recs := oneDayRecords(23, 2000)
	b1 := &accesslog.Batch{Records: recs[:1000]}
	b1.Seq, b1.SpoolSeq, b1.Count = 1, 1, 1000
	b2 := &accesslog.Batch{Records: recs[1000:]}
	b2.Seq, b2.SpoolSeq, b2.Count = 2, 2, 1000
	for _, b := range []*accesslog.Batch{b1, b2} {
		for i := range b.Records {
			b.Records[i].Batch, b.Records[i].Index = b.Seq, uint32(i)
		}
		b.MinTime, b.MaxTime = b.Records[0].Time, b.Records[len(b.Records)-1].Time
	}
	if b1.Hash, err = accesslog.ChainHash("", 1, b1.Records); err != nil {
		t.Fatal(err)
	}
	b2.PrevHash = b1.Hash
	if b2.Hash, err = accesslog.ChainHash(b1.Hash, 2, b2.Records); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	var during string
	err = s.WriteBatchAfter(ctx, b1, func(context.Context) error {
		// Batch 1's rows are in; batch 2 is written and stored meanwhile
		// (its order is not what this test is about).
		go func() { second <- s.WriteBatch(ctx, b2) }()
		if err := <-second; err != nil {
			return err
		}
		during = threads()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if during != "1" {
		t.Errorf("threads while batch 1 was still being written = %s, want the write setting 1", during)
	}
	if got := threads(); got != "2" {
		t.Errorf("threads after both writes = %s, want the query setting 2", got)
	}
	if res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{}); err != nil || !res.OK || res.Records != 2000 {
		t.Errorf("verify: %+v %v", res, err)
	}
}

// TestStoreDelayFillsBatches: frames spooled 100 ms apart wait for their
// store batch to fill (StoreDelay 1s, StoreBatch 10,000): the three go in
// as one batch, not one each; and a batch that never fills is written
// once its first frame has waited StoreDelay.
func TestStoreDelayFillsBatches(t *testing.T) {
	threeFramesOneBatch(t, time.Second, func(time.Time) time.Duration { return 20 * time.Second })
}

// TestStoreWritesSoonAfterInputPauses: frames 100 ms apart fill one
// store batch, and when they stop the batch is written StoreDelay/4 after
// the last one, not when StoreDelay runs out (8 s here).
func TestStoreWritesSoonAfterInputPauses(t *testing.T) {
	const storeDelay = 8 * time.Second
	threeFramesOneBatch(t, storeDelay, func(start time.Time) time.Duration { return storeDelay - time.Since(start) - time.Second })
}

// threeFramesOneBatch adds three frames of 1,000 entries 100 ms apart to
// an ingester with storeDelay (StoreBatch 10,000), waits until all are
// stored (for at most within(start of the first frame)), and checks they
// went in as one store batch, each entry once.
func threeFramesOneBatch(t *testing.T, storeDelay time.Duration, within func(start time.Time) time.Duration) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 1000,
		StoreBatch: 10000, StoreDelay: storeDelay, FlushInterval: 20 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	recs := oneDayRecords(24, 3000)
	start := time.Now()
	for i := 0; i < len(recs); i += 1000 {
		in.Add(recs[i : i+1000]...)
		testenv.WaitFor(t, "frame spooled", 10*time.Second, func() bool { return testutil.ToFloat64(m.Spooled) == float64(i+1000) })
		time.Sleep(100 * time.Millisecond)
	}
	testenv.WaitFor(t, "the batch stored", within(start), func() bool { return testutil.ToFloat64(m.Stored) == 3000 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hs, err := s.Headers(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []uint32
	for _, h := range hs {
		sizes = append(sizes, h.Count)
	}
	if !slices.Equal(sizes, []uint32{3000}) {
		t.Errorf("store batches %v, want one of 3000", sizes)
	}
	storedOnce(t, s, recs)
}

// TestWriterRetryKeepsOrder: batch 1's commit fails twice (a store
// outage as its writer sees it: rolled back, retried with backoff) while
// batch 2 is written on the other connection; batch 2 waits for batch 1's
// retry instead of committing first, and every entry is stored once.
func TestWriterRetryKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	secondIn := make(chan struct{})
	var failures int
	hs := &hookedStore{Store: s}
	hs.beforePrev = func(ctx context.Context, seq uint64) error {
		if seq == 2 {
			select {
			case <-secondIn:
			default:
				close(secondIn)
			}
		}
		return nil
	}
	hs.afterPrev = func(ctx context.Context, seq uint64) error {
		if seq != 1 {
			return nil
		}
		select { // batch 2 is written and waiting before batch 1 fails
		case <-secondIn:
		case <-time.After(10 * time.Second):
			t.Error("batch 2 was not written while batch 1 was in flight")
		}
		hs.mu.Lock()
		defer hs.mu.Unlock()
		if failures < 2 {
			failures++
			return errors.New("injected outage")
		}
		return nil
	}
	in, m, stop := startPipeline(t, hs, filepath.Join(dir, "spool"))
	recs := oneDayRecords(25, 4000)
	in.Add(recs...)
	testenv.WaitFor(t, "every entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == float64(len(recs)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hs.mu.Lock()
	commits, failed := slices.Clone(hs.commits), failures
	hs.mu.Unlock()
	if failed != 2 || !slices.Equal(commits, []uint64{1, 2}) {
		t.Errorf("%d injected failures, batches committed in the order %v; want 2 and [1 2]", failed, commits)
	}
	if got := testutil.ToFloat64(m.StoreErrors); got != 2 {
		t.Errorf("store errors counted: %v, want 2", got)
	}
	storedOnce(t, s, recs)
}
