package controlplane

import (
	"context"
	"net"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultReleaseAfter is how long the control plane waits after a burst
// (a fleet connecting, a rebuild) before it returns the free heap the
// burst left to the OS (Config.ReleaseAfter).
const DefaultReleaseAfter = 2 * time.Second

// releaseMinFree: a release is skipped when less heap than this could be
// returned (not worth a collection).
const releaseMinFree = 16 << 20

// releaseMinGap and releaseCostShare bound what releasing costs: a
// release comes at least releaseMinGap after the previous one, and at
// least releaseCostShare times the previous one's cost (its wall time
// times GOMAXPROCS, an upper bound of its CPU), so releasing takes at
// most 1/releaseCostShare of the process's CPU.
const (
	releaseMinGap    = 5 * time.Second
	releaseCostShare = 50
)

// memRelease gives back to the OS the heap a burst grew and then left
// free. Under the control plane's GC target (--gogc 400) the runtime
// keeps free heap up to five times the live heap and returns none of it,
// so a fleet connecting at once (each TLS handshake ~60 KB of garbage) or
// a rebuild leaves the process's resident memory at its high-water mark
// while the fleet sits idle. Once no burst has happened for quiet, one
// debug.FreeOSMemory (a collection, then the free pages returned) brings
// the resident set back to what is live; the next burst grows it again.
// It runs on its own goroutine: nothing waits for it.
type memRelease struct {
	quiet time.Duration
	// minGap is releaseMinGap (shorter in tests).
	minGap time.Duration
	// release and free are debug.FreeOSMemory and reclaimableHeap,
	// replaced in tests.
	release func()
	free    func() uint64

	busy atomic.Int64 // UnixNano of the last burst event; 0: none pending
	m    releaseMetrics
}

type releaseMetrics struct {
	releases prometheus.Counter
	seconds  prometheus.Counter
	bytes    prometheus.Counter
}

func newMemRelease(quiet time.Duration, reg prometheus.Registerer) *memRelease {
	r := &memRelease{quiet: quiet, minGap: releaseMinGap, release: debug.FreeOSMemory, free: reclaimableHeap}
	r.m.releases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_memory_releases_total", Help: "Times the free heap left by a burst (nodes connecting, a rebuild) was returned to the OS (--release-memory-after).",
	})
	r.m.seconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_memory_release_seconds_total", Help: "Wall time spent returning free heap to the OS (a collection and the release).",
	})
	r.m.bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_memory_released_bytes_total", Help: "Free heap returned to the OS after bursts.",
	})
	reg.MustRegister(r.m.releases, r.m.seconds, r.m.bytes)
	return r
}

// touch records a burst event (a connection accepted, a rebuild done).
// Safe on a nil *memRelease.
func (r *memRelease) touch() {
	if r != nil {
		r.busy.Store(time.Now().UnixNano())
	}
}

// run releases after each burst until ctx ends.
func (r *memRelease) run(ctx context.Context) {
	tick := time.NewTicker(max(r.quiet/4, 10*time.Millisecond))
	defer tick.Stop()
	var next time.Time // no release before this (the cost bound)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			last := r.busy.Load()
			if last == 0 || now.Sub(time.Unix(0, last)) < r.quiet || now.Before(next) {
				continue
			}
			// Another event may have come since the Load: it is dropped
			// only if it is the one just seen.
			if !r.busy.CompareAndSwap(last, 0) {
				continue
			}
			free := r.free()
			if free < releaseMinFree {
				continue
			}
			start := time.Now()
			r.release()
			took := time.Since(start)
			next = time.Now().Add(max(r.minGap, releaseCostShare*time.Duration(runtime.GOMAXPROCS(0))*took))
			r.m.releases.Inc()
			r.m.seconds.Add(took.Seconds())
			r.m.bytes.Add(float64(free))
		}
	}
}

// reclaimableHeap is what a release could return at most: the heap the
// runtime holds free and has not returned to the OS, plus what the heap's
// objects grew by since the last collection (garbage, until collected).
func reclaimableHeap() uint64 {
	s := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	rtmetrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
	}
	free, objects, live := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	if objects > live {
		free += objects - live
	}
	return free
}

// touchListener records every accepted connection as a burst event.
type touchListener struct {
	net.Listener
	r *memRelease
}

func (l touchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.touch()
	}
	return c, err
}
