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
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// heldFsync holds the spool's first fsync until release (a slow disk);
// the others go through.
type heldFsync struct {
	calls   atomic.Int32
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (h *heldFsync) fsync(f *os.File, real func(*os.File) error) error {
	if h.calls.Add(1) == 1 {
		close(h.entered)
		<-h.gate
	}
	return real(f)
}

// release lets the held fsync return (once; later calls do nothing).
func (h *heldFsync) release() { h.once.Do(func() { close(h.gate) }) }

// runHeld runs in with its first fsync held; done receives Run's
// result. The fsync is released when the test ends, at the latest.
func runHeld(t *testing.T, ctx context.Context, in *accesslog.Ingester) (held *heldFsync, done <-chan error) {
	held = &heldFsync{entered: make(chan struct{}), gate: make(chan struct{})}
	accesslog.SetSpoolFsync(in, held.fsync)
	d := make(chan error, 1)
	go func() { d <- in.Run(ctx) }()
	t.Cleanup(held.release)
	return held, d
}

// copyDir copies the regular files of dir (the spool as the kernel holds
// it: what survives kill -9) to a new directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestFlushWritesWhileTheLastFsyncRuns: while one flush's fsync is slow
// the next flush's frames are written (its encoding and write(2) overlap
// the fsync instead of waiting for it), but the later flush is not
// reported durable before the earlier one's fsync has returned, and a
// third flush waits: at most two flushes are between their write and
// their fsync. A kill -9 at that moment (the spool files copied as they
// are) loses nothing written: a new ingester on the copy stores every
// entry once.
func TestFlushWritesWhileTheLastFsyncRuns(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	// The store is held, so everything below is in the spool only.
	hs := &holdStore{Store: db}
	hs.hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	m := accesslog.NewMetrics(reg)
	spoolDir := filepath.Join(dir, "spool")
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: hs, SpoolDir: spoolDir, BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, StoreDelay: time.Millisecond, StopGrace: 100 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	held, done := runHeld(t, ctx, in)
	recs := accesslogtest.RandomRecords(21, 150, time.Now().UTC().Add(-time.Hour), time.Minute)

	in.Add(recs[:50]...) // flush 1: frame 1, its fsync held
	select {
	case <-held.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the first flush never reached its fsync")
	}
	// nextSeq reads the spool's next seq, failing (not hanging) if the
	// spool is locked while the fsync is held.
	nextSeq := func() uint64 {
		got := make(chan uint64, 1)
		go func() { got <- accesslog.SpoolNextSeq(in) }()
		select {
		case n := <-got:
			return n
		case <-time.After(5 * time.Second):
			held.release()
			t.Fatal("the spool is locked while an fsync runs")
			return 0
		}
	}
	in.Add(recs[50:100]...) // flush 2: frame 2, written during that fsync
	testenv.WaitFor(t, "the second flush's frame written while the first fsync runs", 10*time.Second, func() bool {
		return nextSeq() == 3
	})
	in.Add(recs[100:]...) // flush 3 waits: two flushes are in flight
	time.Sleep(10 * 20 * time.Millisecond)
	if got := nextSeq(); got != 3 {
		t.Fatalf("next seq %d while the first fsync is held: a third flush was written, want at most two in flight", got)
	}
	if got := testutil.ToFloat64(m.Spooled); got != 0 {
		t.Fatalf("%v entries reported spooled before the first fsync returned", got)
	}
	// kill -9 now: the written frames are in the files.
	crashed := copyDir(t, spoolDir)

	held.release()
	testenv.WaitFor(t, "all three flushes fsynced", 20*time.Second, func() bool { return testutil.ToFloat64(m.Spooled) == 150 })
	if n, _ := hist(t, reg, "gatehouse_accesslog_spool_fsync_seconds"); n != 3 {
		t.Fatalf("%d flushes observed an fsync, want 3", n)
	}
	// The second flush's fsync part began before the held fsync returned.
	if _, sum := hist(t, reg, "gatehouse_accesslog_spool_fsync_seconds"); sum < 0.2 {
		t.Fatalf("fsync parts sum to %v s, want the held fsync's wait in the first two", sum)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The crashed copy: a new process replays frames 1 and 2 into an
	// empty store, each entry once.
	db2 := openDuck(t, filepath.Join(dir, "replayed.duckdb"))
	r := runIngester(t, accesslog.IngesterConfig{Store: db2, SpoolDir: crashed, BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, StoreDelay: time.Millisecond})
	testenv.WaitFor(t, "the crashed spool replayed", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 100 })
	r.stop()
	ids := accesslogtest.StoredOnce(t, db2, 100)
	for _, rec := range recs[:100] {
		if !ids[rec.RequestID] {
			t.Fatalf("entry %s written before the kill is not stored after the replay", rec.RequestID)
		}
	}
}

// TestAdmitHoldsWhileAFlushWaitsForItsFsync: entries a flush has taken
// are not durable until its fsync returns; while the oldest of them has
// waited more than FlushInterval/2 (a slow disk), a receiver is held
// although nothing is pending, and let go when the fsync returns.
func TestAdmitHoldsWhileAFlushWaitsForItsFsync(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	const fi = 20 * time.Millisecond
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50,
		FlushInterval: fi, StoreDelay: time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	held, done := runHeld(t, ctx, in)
	in.Add(accesslogtest.RandomRecords(5, 50, time.Now().UTC(), time.Second)...)
	select {
	case <-held.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the flush never reached its fsync")
	}
	time.Sleep(fi) // its entries are late now, and nothing is pending
	admitted := make(chan struct{})
	go func() { in.Admit(ctx); close(admitted) }()
	select {
	case <-admitted:
		t.Fatal("a receiver was let go while the entries of a flush waited late for their fsync")
	case <-time.After(5 * fi):
	}
	held.release()
	testenv.WaitFor(t, "the receiver let go once the fsync returned", 20*time.Second, func() bool {
		select {
		case <-admitted:
			return true
		default:
			return false
		}
	})
	if got := testutil.ToFloat64(m.Spooled); got != 50 {
		t.Fatalf("%v spooled, want 50", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFramesReachTheStoreBeforeTheirFsync: a flush hands its frames to
// the store writer from memory as soon as they are written, so the store
// loop does not read them back from disk while their fsync runs (and they
// are not counted spooled before it returns). If the power then goes
// before the frame reached the disk, the restart finds the store ahead of
// the spool: nothing is replayed twice, new entries are stored after it
// and the chain verifies.
func TestFramesReachTheStoreBeforeTheirFsync(t *testing.T) {
	dir := t.TempDir()
	db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	cfg := accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50, StoreBatch: 50,
		FlushInterval: 20 * time.Millisecond, StoreDelay: time.Millisecond, StopGrace: time.Second}
	c := cfg
	c.Metrics = m
	in, err := accesslog.NewIngester(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	held, done := runHeld(t, ctx, in)
	recs := accesslogtest.RandomRecords(9, 150, time.Now().UTC().Add(-time.Hour), time.Minute)
	in.Add(recs[:50]...)
	<-held.entered
	in.Add(recs[50:100]...) // the second flush in flight
	testenv.WaitFor(t, "both frames stored while the fsync is held", 20*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 100 })
	// Two catch-up ticks of the store loop.
	time.Sleep(600 * time.Millisecond)
	// A catch-up tick between a frame's write and its hand-over (a few
	// microseconds) may read that one frame: never both.
	if n := accesslog.SpoolFramesRead(in); n > 1 {
		t.Fatalf("%d frames read back from the spool while their fsync ran: not handed over from memory", n)
	}
	if got := testutil.ToFloat64(m.Spooled); got != 0 {
		t.Fatalf("%v entries counted spooled before their fsync returned", got)
	}
	held.release()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Power lost before the frames reached the disk: zeros.
	segs, _ := filepath.Glob(filepath.Join(cfg.SpoolDir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	f, err := os.OpenFile(segs[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64), 24); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := runIngester(t, cfg)
	r.in.Add(recs[100:]...)
	testenv.WaitFor(t, "the new entries stored", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Stored) == 50 })
	r.stop()
	accesslogtest.StoredOnce(t, db, 150)
}
