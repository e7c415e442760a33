package duckstore_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// heldStore holds WriteBatch until release is closed and records the size
// of every batch written.
type heldStore struct {
	accesslog.Store
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (h *heldStore) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.mu.Lock()
	h.sizes = append(h.sizes, len(b.Records))
	h.mu.Unlock()
	return h.Store.WriteBatch(ctx, b)
}

// TestDefaultStoreBatchFillsRowGroups: with the default settings, spool
// frames that wait for the store are written as one batch of more than
// DuckDB's row group (122,880 rows), so DuckDB writes full row groups
// compressed to the file rather than through the WAL (the ingest CPU
// figure in docs/PERFORMANCE.md rests on it).
func TestDefaultStoreBatchFillsRowGroups(t *testing.T) {
	if accesslog.DefaultStoreBatch <= 122880 {
		t.Fatalf("DefaultStoreBatch %d is not above DuckDB's row group of 122,880 rows", accesslog.DefaultStoreBatch)
	}
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	hs := &heldStore{Store: s, release: make(chan struct{})}
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: hs, SpoolDir: filepath.Join(dir, "spool"), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	// Enough that what waits behind the first batch (written after
	// StoreDelay, whatever it holds by then) is more than a row group.
	const n = 300000
	recs := accesslogtest.RandomRecords(3, n, time.Now().UTC().Truncate(24*time.Hour).Add(time.Hour), time.Hour)
	for i := 0; i < n; i += 5000 {
		in.Admit(ctx) // as a receiver does: no drop when the spool is behind
		in.Add(recs[i : i+5000]...)
	}
	// The waits are generous: under -race on a loaded two-core box,
	// spooling and storing 300,000 rows has taken over 10 s each.
	testenv.WaitFor(t, "every entry spooled", 90*time.Second, func() bool { return testutil.ToFloat64(m.Spooled) == n })
	close(hs.release)
	testenv.WaitFor(t, "every entry stored", 90*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if slices.Max(hs.sizes) <= 122880 {
		t.Fatalf("store batches %v: none above DuckDB's row group of 122,880 rows", hs.sizes)
	}
	t.Logf("store batches: %v", hs.sizes)
}
