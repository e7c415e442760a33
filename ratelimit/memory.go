package ratelimit

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const memoryShards = 256

// DefaultMaxCounters is the cap on live counters of NewMemory.
const DefaultMaxCounters = 1_000_000

// Memory is the in-process backend: counters in sharded maps, each decision
// under its shard's lock, so it is exact under any concurrency. Expired
// counters are swept lazily as new ones are added. The zero value is not
// usable; call NewMemory.
//
// The number of live counters is capped: clients choose descriptor values
// (addresses, paths, headers), so without a cap they choose the sidecar's
// memory. When a new counter would go over the cap, expired counters are
// swept (at most once a second), and if there is still no room the hit is
// not counted: its Result says Unstored and the service answers it with
// the limit's failure mode. Existing counters keep counting, so nobody
// already over a limit gets out of it by flooding new keys.
type Memory struct {
	seed   maphash.Seed
	max    int64
	live   atomic.Int64
	swept  atomic.Int64 // unix ms of the last sweep of every shard
	shards [memoryShards]memShard
}

type memShard struct {
	mu      sync.Mutex
	m       map[string]*memEntry
	inserts int
	_       [40]byte // keep shards on separate cache lines
}

type memEntry struct {
	expireMs int64
	count    uint64 // fixed window
	sliding  slidingState
	tat      float64 // token bucket, µs
}

// NewMemory returns an empty memory backend holding at most
// DefaultMaxCounters counters.
func NewMemory() *Memory { return NewBoundedMemory(DefaultMaxCounters) }

// NewBoundedMemory returns an empty memory backend holding at most
// maxCounters live counters (DefaultMaxCounters when maxCounters <= 0).
func NewBoundedMemory(maxCounters int) *Memory {
	if maxCounters <= 0 {
		maxCounters = DefaultMaxCounters
	}
	m := &Memory{seed: maphash.MakeSeed(), max: int64(maxCounters)}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memEntry)
	}
	return m
}

// Decide implements Backend; it never fails.
func (m *Memory) Decide(_ context.Context, now time.Time, hits []Hit, out []Result) error {
	nowMs := now.UnixMilli()
	nowUs := float64(now.UnixMicro())
	for i := range hits {
		out[i] = m.decide(nowMs, nowUs, &hits[i])
	}
	return nil
}

func (m *Memory) decide(nowMs int64, nowUs float64, h *Hit) Result {
	return m.decideOnce(nowMs, nowUs, h, true)
}

func (m *Memory) decideOnce(nowMs int64, nowUs float64, h *Hit, mayRetry bool) Result {
	sh := &m.shards[maphash.String(m.seed, h.Key)%memoryShards]
	sh.mu.Lock()
	e := sh.m[h.Key]
	if e != nil && e.expireMs <= nowMs {
		*e = memEntry{}
	}
	if e == nil {
		if h.Addend == 0 {
			// A peek at a counter that does not exist creates nothing.
			sh.mu.Unlock()
			return peekEmpty(h.Limit, nowMs)
		}
		if !m.reserve() {
			// Full. Sweep every shard (at most once a second, outside
			// this shard's lock: two shard locks are never held at once)
			// and try once more; otherwise the hit is not counted.
			sh.mu.Unlock()
			if mayRetry && m.sweepAll(nowMs) {
				return m.decideOnce(nowMs, nowUs, h, false)
			}
			return Result{Unstored: true}
		}
		// Sweep before the insert: the new counter has no expiry yet and
		// would be swept with the expired ones.
		sh.inserts++
		if sh.inserts >= 1024 && sh.inserts >= len(sh.m)/2 {
			m.live.Add(-int64(sh.sweep(nowMs)))
		}
		e = &memEntry{}
		sh.m[strings.Clone(h.Key)] = e
	}
	return m.step(sh, e, nowMs, nowUs, h)
}

// reserve takes room for one new counter; false when at the cap.
func (m *Memory) reserve() bool {
	if m.live.Add(1) > m.max {
		m.live.Add(-1)
		return false
	}
	return true
}

// sweepAll removes expired counters from every shard, at most once a
// second; it reports whether it ran. The caller holds no shard lock.
func (m *Memory) sweepAll(nowMs int64) bool {
	last := m.swept.Load()
	if nowMs-last < 1000 || !m.swept.CompareAndSwap(last, nowMs) {
		return false
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		m.live.Add(-int64(sh.sweep(nowMs)))
		sh.mu.Unlock()
	}
	return true
}

// step runs the limit's algorithm on e and unlocks sh.
func (m *Memory) step(sh *memShard, e *memEntry, nowMs int64, nowUs float64, h *Hit) Result {
	l := h.Limit
	winMs := l.WindowMillis()
	var r Result
	switch l.Algorithm {
	case FixedWindow:
		e.count, r.Over = stepFixed(e.count, h.Addend, uint64(l.Requests))
		r.Used, r.ResetMillis = e.count, fixedReset(nowMs, winMs)
		if e.expireMs == 0 {
			e.expireMs = nowMs + r.ResetMillis
		}
	case SlidingWindow:
		r.Used, r.Over, r.ResetMillis = stepSliding(&e.sliding, nowMs, winMs, h.Addend, uint64(l.Requests))
		e.expireMs = e.sliding.start + 2*winMs
	case TokenBucket:
		var resetUs float64
		r.Used, r.Over, resetUs = stepToken(&e.tat, nowUs, float64(winMs)*1000, uint64(l.Requests), l.Capacity(), h.Addend)
		r.ResetMillis = int64(resetUs+999) / 1000
		e.expireMs = int64(e.tat/1000) + 1
	}
	sh.mu.Unlock()
	return r
}

// peekEmpty is the answer for a look at a counter nobody has hit.
func peekEmpty(l *Limit, nowMs int64) Result {
	winMs := l.WindowMillis()
	switch l.Algorithm {
	case SlidingWindow:
		return Result{ResetMillis: winMs - nowMs%winMs}
	case TokenBucket:
		return Result{}
	}
	return Result{ResetMillis: fixedReset(nowMs, winMs)}
}

// sweep removes the shard's expired counters and returns how many.
func (sh *memShard) sweep(nowMs int64) int {
	n := 0
	for k, e := range sh.m {
		if e.expireMs <= nowMs {
			delete(sh.m, k)
			n++
		}
	}
	sh.inserts = 0
	return n
}

// Live is the number of live counters as the cap counts them (expired
// counters not yet swept included), without locking: for a gauge.
func (m *Memory) Live() int { return int(m.live.Load()) }

// MaxCounters is the cap on live counters.
func (m *Memory) MaxCounters() int { return int(m.max) }

// Len is the number of live counters, for tests and debugging.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
