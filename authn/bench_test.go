package authn

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
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
