package controlplane

import (
	"context"
	"net"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// countingRelease is a memRelease whose release counts (and takes cost)
// and which always finds plenty to return.
func countingRelease(t *testing.T, quiet time.Duration, cost time.Duration) (*memRelease, *atomic.Int64) {
	t.Helper()
	r := newMemRelease(quiet, prometheus.NewRegistry())
	var n atomic.Int64
	r.minGap = 0
	r.release = func() { n.Add(1); time.Sleep(cost) }
	r.free = func() uint64 { return 1 << 30 }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, &n
}

// waitCount waits up to 10 s for n to reach want.
func waitCount(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d releases after 10 s, want %d", n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemReleaseAfterConnectBurst: nodes connecting over mutual TLS to a
// real gRPC server on the release's listener (touchListener, as Serve
// wires it) lead to exactly one release once they stop, and none more
// while nothing happens.
func TestMemReleaseAfterConnectBurst(t *testing.T) {
	const quiet = 200 * time.Millisecond
	r, n := countingRelease(t, quiet, 0)
	pki := testenv.NewPKI(t)
	stc, err := pki.ServerTLS(t, "xds").Config("xds")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveXDS(t, limitHandshakes(credentials.NewTLS(stc), 0, 0), func(l net.Listener) net.Listener { return touchListener{Listener: l, r: r} })
	ctc, err := pki.NodeTLS(t, "node", "group-a").Config("--xds")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ctc.Clone())))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Load(); got != 0 {
		t.Logf("%d releases while the nodes connected (a pause of %s between two of them)", got, quiet)
	}
	waitCount(t, n, 1)
	before := n.Load()
	time.Sleep(5 * quiet)
	if got := n.Load(); got != before {
		t.Errorf("%d releases with nothing happening after the one that followed the burst, want 0", got-before)
	}
	if got := testutil.ToFloat64(r.m.releases); got != float64(n.Load()) {
		t.Errorf("gatehouse_controlplane_memory_releases_total = %v, want %d", got, n.Load())
	}
}

// TestMemReleaseWaitsForQuiet: while events keep coming (a trickle of
// connections, rebuilds) nothing is released; once they stop, once.
func TestMemReleaseWaitsForQuiet(t *testing.T) {
	// Events twenty times as often as the quiet period, so that only a
	// stall of this goroutine of almost a second on a loaded machine
	// could make a gap as long as quiet.
	const quiet = time.Second
	r, n := countingRelease(t, quiet, 0)
	for end := time.Now().Add(3 * quiet); time.Now().Before(end); {
		r.touch()
		time.Sleep(quiet / 20)
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("%d releases while events came every %s (quiet %s), want 0", got, quiet/20, quiet)
	}
	waitCount(t, n, 1)
}

// TestMemReleaseCostBound: a release comes no sooner than releaseCostShare
// times the last one's cost (× GOMAXPROCS) after it, however often
// bursts end.
func TestMemReleaseCostBound(t *testing.T) {
	const quiet, cost = 20 * time.Millisecond, 10 * time.Millisecond
	r, n := countingRelease(t, quiet, cost)
	r.touch()
	waitCount(t, n, 1)
	first := time.Now()
	gap := releaseCostShare * time.Duration(runtime.GOMAXPROCS(0)) * cost
	for time.Since(first) < gap/2 {
		r.touch()
		time.Sleep(2 * quiet)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("%d releases within %s of a release that took %s, want none before %s", got-1, gap/2, cost, gap)
	}
	waitCount(t, n, 2) // the burst still pending is released once the gap has passed
}

// TestMemReleaseReturnsFreeHeap: the real release (debug.FreeOSMemory)
// after a burst of garbage returns it to the OS; with little to return,
// nothing is done.
func TestMemReleaseReturnsFreeHeap(t *testing.T) {
	r := newMemRelease(50*time.Millisecond, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// As in the control plane (--gogc 400, a live heap of its own): the
	// runtime keeps free heap under five times the live heap and does not
	// return it by itself. With Go's default target and a small live heap
	// its own scavenger may return the burst before the release runs.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	live := make([][]byte, 32) // 32 MiB live: a goal of 160 MiB
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	defer runtime.KeepAlive(live)
	var keep [][]byte
	for i := 0; i < 64; i++ { // 64 MiB, garbage once dropped
		keep = append(keep, make([]byte, 1<<20))
	}
	keep[0][0] = 1
	keep = nil
	runtime.GC() // the burst's garbage is now free heap
	if got := reclaimableHeap(); got < 32<<20 {
		t.Fatalf("reclaimable heap %d MiB after dropping 64 MiB, want at least 32", got>>20)
	}
	r.touch()
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(r.m.releases) < 1; {
		if time.Now().After(deadline) {
			t.Fatal("no release 10 s after a burst that left 64 MiB free")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(r.m.bytes); got < 32<<20 {
		t.Errorf("released %v bytes, want at least 32 MiB", got)
	}
	if got := reclaimableHeap(); got >= releaseMinFree {
		t.Errorf("reclaimable heap %d MiB after the release, want under %d", got>>20, releaseMinFree>>20)
	}
}

// TestMemReleaseSkipsLittle: a burst that left less than releaseMinFree
// to return costs no collection.
func TestMemReleaseSkipsLittle(t *testing.T) {
	const quiet = 20 * time.Millisecond
	r, n := countingRelease(t, quiet, 0)
	r.free = func() uint64 { return releaseMinFree - 1 }
	r.touch()
	for deadline := time.Now().Add(10 * time.Second); r.busy.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the burst was never looked at")
		}
		time.Sleep(quiet)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d releases with %d bytes to return, want 0", got, releaseMinFree-1)
	}
}

// TestMemReleaseAfterRebuild: a rebuild is a burst too (compiling a
// revision allocates far more than stays live): once it is done and
// nothing else happens, the heap is released once.
func TestMemReleaseAfterRebuild(t *testing.T) {
	src := source.Func(func(ctx context.Context, fn func(source.Revision)) error {
		fn(source.Revision{ID: "r1", Specs: []source.Spec{endpointSpec(1)}})
		<-ctx.Done()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := New(ctx, Config{Source: src, Registry: prometheus.NewRegistry(), HoldOff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, n := countingRelease(t, 50*time.Millisecond, 0)
	cp.release = r // as Serve sets it, before Run
	done := make(chan struct{})
	go func() { defer close(done); _ = cp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitCount(t, n, 1)
	if cp.State().Revision != "r1" {
		t.Fatalf("released before the rebuild was done (revision %q)", cp.State().Revision)
	}
	time.Sleep(250 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Errorf("%d releases after one rebuild, want 1", got)
	}
}
