package redisstore

import "sync"

// overCache remembers fixed-window keys already over their limit until
// their window ends (the key names the window, so an entry can never
// outlive it). Bounded: when full, expired entries are swept; if it is
// still full, new keys are not cached.
type overCache struct {
	mu  sync.RWMutex
	m   map[string]int64 // key -> window end, unix ms
	max int
}

func newOverCache(max int) *overCache { return &overCache{m: map[string]int64{}, max: max} }

func (c *overCache) over(key string, nowMs int64) bool {
	c.mu.RLock()
	end, ok := c.m[key]
	c.mu.RUnlock()
	return ok && nowMs < end
}

func (c *overCache) add(key string, endMs, nowMs int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if e <= nowMs {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			return
		}
	}
	c.m[key] = endMs
}
