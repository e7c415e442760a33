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
	refused *lru.Cache[cacheKey, *cacheEntry] // separate, so refusals never evict valid tokens
	ttl     time.Duration
	metrics *Metrics
}

type cacheEntry struct {
	id     *Identity
	err    *Error
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
	r, _ := lru.New[cacheKey, *cacheEntry](max(size/4, 1))
	return &TokenCache{lru: c, refused: r, ttl: ttl, metrics: m}
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

// get returns the cached identity, or the cached refusal, or neither.
func (c *TokenCache) get(key cacheKey, now time.Time, keyGen uint64) (*Identity, *Error) {
	if e, ok := c.lookup(c.lru, key, now, keyGen); ok {
		c.metrics.cacheResult("hit")
		return e.id, nil
	}
	if e, ok := c.lookup(c.refused, key, now, keyGen); ok {
		c.metrics.cacheResult("refusal_hit")
		return nil, e.err
	}
	c.metrics.cacheResult("miss")
	return nil, nil
}

func (c *TokenCache) lookup(l *lru.Cache[cacheKey, *cacheEntry], key cacheKey, now time.Time, keyGen uint64) (*cacheEntry, bool) {
	e, ok := l.Get(key)
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) || e.keyGen != keyGen {
		l.Remove(key)
		return nil, false
	}
	return e, true
}

func (c *TokenCache) put(key cacheKey, id *Identity, now time.Time, keyGen uint64) {
	until := now.Add(c.ttl)
	if id.ExpiresAt.Before(until) {
		until = id.ExpiresAt
	}
	c.lru.Add(key, &cacheEntry{id: id, until: until, keyGen: keyGen})
}

func (c *TokenCache) putRefusal(key cacheKey, err *Error, now time.Time, keyGen uint64) {
	c.refused.Add(key, &cacheEntry{err: err, until: now.Add(c.ttl), keyGen: keyGen})
}
