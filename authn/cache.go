package authn

import (
	"crypto/sha256"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// TokenCache remembers verified tokens so a repeated token costs no
// signature check. Entries are keyed by the SHA-256 of the provider's
// fingerprint and the token (the token itself is not stored), live until
// the earlier of the token's exp and the TTL, and are ignored once the
// provider's key set changes (key rotation). The cache is bounded (LRU).
type TokenCache struct {
	lru     *lru.Cache[cacheKey, *cacheEntry]
	ttl     time.Duration
	metrics *Metrics
}

type cacheEntry struct {
	id     *Identity
	until  time.Time
	keyGen uint64
}

// NewTokenCache returns a cache of at most size tokens (default 10,000)
// kept at most ttl (default 5m).
func NewTokenCache(size int, ttl time.Duration, m *Metrics) *TokenCache {
	if size <= 0 {
		size = 10000
	}
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	c, _ := lru.New[cacheKey, *cacheEntry](size) // only fails for size <= 0
	return &TokenCache{lru: c, ttl: ttl, metrics: m}
}

// Len is the number of cached tokens.
func (c *TokenCache) Len() int { return c.lru.Len() }

// cacheKey is the provider's configuration fingerprint and the token hash.
type cacheKey struct {
	provider string
	token    [32]byte
}

func newCacheKey(fingerprint, token string) cacheKey {
	// Hash the token's bytes in place: sha256 only reads them.
	return cacheKey{provider: fingerprint, token: sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))}
}

func (c *TokenCache) get(key cacheKey, now time.Time, keyGen uint64) *Identity {
	e, ok := c.lru.Get(key)
	if ok && (!now.Before(e.until) || e.keyGen != keyGen) {
		c.lru.Remove(key)
		ok = false
	}
	c.metrics.cacheResult(ok)
	if !ok {
		return nil
	}
	return e.id
}

func (c *TokenCache) put(key cacheKey, id *Identity, now time.Time, keyGen uint64) {
	until := now.Add(c.ttl)
	if id.ExpiresAt.Before(until) {
		until = id.ExpiresAt
	}
	c.lru.Add(key, &cacheEntry{id: id, until: until, keyGen: keyGen})
}
