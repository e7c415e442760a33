package duckstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// sizedStore records the size of every batch written.
type sizedStore struct {
	accesslog.Store
	mu    sync.Mutex
	sizes []int
}

func (s *sizedStore) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(b.Records))
	s.mu.Unlock()
	return s.Store.WriteBatch(ctx, b)
}

func (s *sizedStore) batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func lingerIngester(t *testing.T, s accesslog.Store, spool string, flush, linger time.Duration) (*accesslog.Ingester, *accesslog.Metrics) {
	t.Helper()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: spool, BatchSize: 100, StoreBatch: 2000,
		FlushInterval: flush, StoreLinger: linger, Metrics: m, StopGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingester: %v", err)
		}
	})
	return in, m
}

// TestStoreWriterFillsBatchesWhileEntriesKeepComing: while spool frames
// keep coming, the store writer waits for a full StoreBatch (rows
// compressed once, straight into row groups) instead of writing whatever
// is spooled whenever it is free; every entry is stored exactly once and
// the chain verifies.
func TestStoreWriterFillsBatchesWhileEntriesKeepComing(t *testing.T) {
	dir := t.TempDir()
	base := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer base.Close()
	s := &sizedStore{Store: base}
	// FlushInterval 500ms: the stream counts as paused only after half a
	// second without a frame; entries come every 5 ms.
	in, m := lingerIngester(t, s, filepath.Join(dir, "spool"), 500*time.Millisecond, time.Minute)
	const n = 6000
	recs := records(11, n, time.Now().UTC().Truncate(24*time.Hour).Add(time.Hour), time.Hour)
	for i := 0; i < n; i += 100 {
		in.Add(recs[i : i+100]...)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "every entry stored", func() bool { return testutil.ToFloat64(m.Stored) == n })
	sizes := s.batches()
	// 2,000 per batch; two more allow for the periodic catch-up from the
	// spool taking a frame early and a stall of the box longer than
	// the pause threshold. Writing whenever the writer is free gives one
	// batch per spool flush (tens).
	if len(sizes) > n/2000+2 {
		t.Fatalf("store batches %v: the writer did not wait for full batches of 2000", sizes)
	}
	var rows, distinct int
	if err := base.DB().QueryRow("SELECT count(*), count(DISTINCT request_id) FROM logs").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Fatalf("%d rows, %d distinct request ids; want %d each", rows, distinct, n)
	}
	if res, err := accesslog.Verify(context.Background(), base, accesslog.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	t.Logf("store batches: %v", sizes)
}

// TestStoreWriterDoesNotWaitOnAPause: entries followed by a pause are
// stored once no frame has come for FlushInterval, not after StoreLinger
// (an hour here).
func TestStoreWriterDoesNotWaitOnAPause(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	in, m := lingerIngester(t, s, filepath.Join(dir, "spool"), 20*time.Millisecond, time.Hour)
	recs := records(12, 300, time.Now().UTC().Truncate(24*time.Hour).Add(time.Hour), time.Hour)
	in.Add(recs...)
	waitFor(t, "the entries stored", func() bool { return testutil.ToFloat64(m.Stored) == 300 })
}
