package authz

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

func benchDecide(b *testing.B, opts Options, req func(i int) Request, wantAllow bool) {
	// Real time: tokens are minted against time.Now in the benches.
	opts.Clock = time.Now
	e, _ := newEngine(b, opts, compile(b, string(authntest.JWKS(key()))))
	ctx := context.Background()
	if d := e.Decide(ctx, req(0)); d.Allow != wantAllow {
		b.Fatalf("warm-up decision: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if d := e.Decide(ctx, req(i)); d.Allow != wantAllow {
				b.Errorf("decision changed: %+v", d)
				return
			}
			i++
		}
	})
}

func liveToken(mod func(map[string]any)) string {
	return token(func(c map[string]any) {
		c["exp"] = time.Now().Add(time.Hour).Unix()
		if mod != nil {
			mod(c)
		}
	})
}

// A repeated JWT on a route without rules: cache hit, no signature check.
func BenchmarkDecideCachedJWT(b *testing.B) {
	h := bearer(liveToken(nil))
	benchDecide(b, Options{}, func(int) Request { return Request{RouteID: "petstore/open", Headers: h} }, true)
}

// A repeated JWT on a route whose first rule is CEL (request.ip) and the
// second a scope rule: the "cached JWT + CEL rule" target.
func BenchmarkDecideCachedJWTCEL(b *testing.B) {
	h := bearer(liveToken(nil))
	benchDecide(b, Options{}, func(int) Request {
		return Request{RouteID: "petstore/read", Method: "GET", Path: "/pets/1", SourceIP: "10.0.0.9", Headers: h}
	}, true)
}

// A CEL allow rule reading identity and request headers.
func BenchmarkDecideCEL(b *testing.B) {
	h := map[string]string{"x-api-key": "acme-key"}
	benchDecide(b, Options{}, func(int) Request {
		return Request{RouteID: "petstore/read", SourceIP: "10.0.0.9", Headers: h}
	}, true)
}

// Every decision verifies an RS256 signature (cache disabled).
func BenchmarkDecideUncachedRS256(b *testing.B) {
	h := bearer(liveToken(nil))
	benchDecide(b, Options{TokenCacheSize: -1}, func(int) Request { return Request{RouteID: "petstore/open", Headers: h} }, true)
}

func BenchmarkDecideAPIKey(b *testing.B) {
	h := map[string]string{"x-api-key": "old-key"}
	benchDecide(b, Options{}, func(int) Request { return Request{RouteID: "petstore/open", Query: "api_key=old-key", Headers: h} }, true)
}

func BenchmarkDecideUnknownRoute(b *testing.B) {
	benchDecide(b, Options{}, func(int) Request { return Request{RouteID: "petstore/nope"} }, false)
}
