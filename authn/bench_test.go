package authn

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func benchJWT(b *testing.B, cache *TokenCache) {
	keys()
	clk := newClock(t0)
	p := staticProvider(b, clk, cache, authntest.JWKS(rsaKey, ec))
	tok := rsaKey.Sign(claims(nil), nil)
	ctx := context.Background()
	if _, err := p.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Authenticate(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkJWTVerifyRS256(b *testing.B) { benchJWT(b, nil) }

func BenchmarkJWTCached(b *testing.B) { benchJWT(b, NewTokenCache(1000, time.Hour, nil)) }

func BenchmarkJWTRefusedAlgNone(b *testing.B) {
	keys()
	p := staticProvider(b, newClock(t0), nil, authntest.JWKS(rsaKey))
	tok := authntest.Unsigned(map[string]any{"alg": "none"}, claims(nil), nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Authenticate(context.Background(), tok); err == nil {
				b.Error("alg none accepted")
				return
			}
		}
	})
}

func BenchmarkAPIKey(b *testing.B) {
	p, err := NewAPIKeys(APIKeyConfig{Name: "p", Header: "x-api-key", Keys: []APIKey{{ID: "a", SHA256: authntest.HashKey("key-a")}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Authenticate("key-a"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// freshTokens is a pool of distinct RS256 tokens (a unique jti each),
// signed once per test binary so no benchmark times the signing.
var (
	freshOnce sync.Once
	freshPool []string
)

const freshPoolSize = 4096

func freshTokenPool() []string {
	freshOnce.Do(func() {
		keys()
		freshPool = make([]string, freshPoolSize)
		var wg sync.WaitGroup
		workers := max(1, runtime.GOMAXPROCS(0))
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < freshPoolSize; i += workers {
					freshPool[i] = rsaKey.Sign(claims(func(c map[string]any) {
						c["jti"] = "fresh-" + strconv.Itoa(i)
						c["sub"] = "user-" + strconv.Itoa(i%1000)
						c["tenant"] = "t-" + strconv.Itoa(i%50)
					}), nil)
				}
			}()
		}
		wg.Wait()
	})
	return freshPool
}

// BenchmarkJWTFresh: every Authenticate carries a token the provider has
// not seen (cache miss, RS256 verification, claims, cache insert), one
// goroutine, so ns/op is the CPU of one fresh check. The pool is cycled
// in order through a cache smaller than it, so a token is always evicted
// before it comes round again; the run fails on any cache hit.
func BenchmarkJWTFresh(b *testing.B) {
	toks := freshTokenPool()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	p := staticProvider(b, newClock(t0), NewTokenCache(freshPoolSize/4, time.Hour, m), authntest.JWKS(rsaKey, ec))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime()
	for i := range b.N {
		if _, err := p.Authenticate(ctx, toks[i%len(toks)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if hits := testutil.ToFloat64(m.cacheHit); hits != 0 {
		b.Fatalf("%v token-cache hits; every token must be new", hits)
	}
}
