package ratelimit

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

const memoryShards = 256

// Memory is the in-process backend: counters in sharded maps, each decision
// under its shard's lock, so it is exact under any concurrency. Expired
// counters are swept lazily as new ones are added. The zero value is not
// usable; call NewMemory.
type Memory struct {
	seed   maphash.Seed
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

// NewMemory returns an empty memory backend.
func NewMemory() *Memory {
	m := &Memory{seed: maphash.MakeSeed()}
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
	l := h.Limit
	winMs := l.WindowMillis()
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
			return peekEmpty(l, nowMs)
		}
		e = &memEntry{}
		sh.m[strings.Clone(h.Key)] = e
		sh.inserts++
		if sh.inserts >= 1024 && sh.inserts >= len(sh.m)/2 {
			sh.sweep(nowMs)
		}
	}
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

func (sh *memShard) sweep(nowMs int64) {
	for k, e := range sh.m {
		if e.expireMs <= nowMs {
			delete(sh.m, k)
		}
	}
	sh.inserts = 0
}

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
