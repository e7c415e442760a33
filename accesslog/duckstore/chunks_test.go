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
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestRecycledChunksStoreEveryEntryIntact: the ingester's pending chunks
// are filled again once the store writer has copied them; with small
// frames and store batches (many chunks recycled) and four concurrent
// senders, every entry is stored once with exactly the content it was
// added with, and the chain verifies. Run with -race: a chunk recycled
// while the spool or the store writer still reads it is a data race.
func TestRecycledChunksStoreEveryEntryIntact(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "logs.duckdb"))
	defer s.Close()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, SpoolDir: filepath.Join(dir, "spool"),
		BatchSize: 50, StoreBatch: 200, FlushInterval: 5 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	const n = 8000
	recs := records(21, n, time.Now().UTC().Truncate(24*time.Hour).Add(time.Hour), time.Hour)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(part []accesslog.Record) {
			defer wg.Done()
			for i := 0; i < len(part); i += 20 {
				in.Admit(ctx)
				batch := append([]accesslog.Record(nil), part[i:min(i+20, len(part))]...)
				in.Add(batch...)
				clear(batch) // the ingester keeps its own copy
			}
		}(recs[g*n/4 : (g+1)*n/4])
	}
	wg.Wait()
	testenv.WaitFor(t, "every entry stored", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := make(map[string]accesslog.Record, n)
	for _, r := range recs {
		r.Time = r.Time.Truncate(time.Microsecond)
		want[r.RequestID] = r
	}
	got := 0
	err = s.Export(context.Background(), accesslog.Filter{}, func(r *accesslog.Record) error {
		got++
		w, ok := want[r.RequestID]
		if !ok {
			t.Fatalf("stored entry %q was never added, or is stored twice", r.RequestID)
		}
		delete(want, r.RequestID)
		c := *r
		c.Batch, c.Index = 0, 0
		if c != w {
			t.Fatalf("entry %q stored as\n%+v\nadded as\n%+v", r.RequestID, c, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != n || len(want) != 0 {
		t.Fatalf("%d entries stored, %d added and not stored; want %d", got, len(want), n)
	}
	if res, err := accesslog.Verify(context.Background(), s, accesslog.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}
