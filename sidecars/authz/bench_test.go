package authzsidecar

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// In-process Check (CheckRequest → Decision → CheckResponse, no network)
// for a cached JWT, an uncached RS256 JWT, an API key and a CEL rule.
func BenchmarkCheckInProcess(b *testing.B) {
	jwt := map[string]string{"authorization": "Bearer " + token("petstore", nil)}
	for _, bc := range []struct {
		name    string
		opts    authz.Options
		headers map[string]string
		rule    string
	}{
		{name: "cached-jwt", opts: authz.Options{}, headers: jwt, rule: "rules[0]"},
		{name: "uncached-rs256", opts: authz.Options{TokenCacheSize: -1}, headers: jwt, rule: "rules[0]"},
		{name: "api-key-cel", opts: authz.Options{}, headers: map[string]string{"x-api-key": "acme-key"}, rule: "rules[1]"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := authz.NewEngine(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if err := e.Update([]*authz.SpecPolicy{compileSpec(b, "petstore")}); err != nil {
				b.Fatal(err)
			}
			s := NewServer(e)
			req := checkRequest("petstore/read", bc.headers, "")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, _ := s.Check(ctx, req)
					if resp.GetOkResponse() == nil || resp.GetDynamicMetadata().GetFields()["rule"].GetStringValue() != bc.rule {
						b.Errorf("not allowed by %s: %v", bc.rule, resp)
						return
					}
				}
			})
		})
	}
}

// Check over a real gRPC connection on loopback, cached JWT.
func BenchmarkCheckGRPC(b *testing.B) {
	c := startCheckServer(b, newEngine(b, compileSpec(b, "petstore")))
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")
	benchGRPC(b, c, req)
}

// The floor: the same gRPC path to a server that answers OK doing nothing.
func BenchmarkCheckGRPCNoop(b *testing.B) {
	c := startCheckServerFor(b, noop{})
	req := checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, "")
	benchGRPC(b, c, req)
}

func benchGRPC(b *testing.B, c authv3.AuthorizationClient, req *authv3.CheckRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Check(ctx, req)
			if err != nil || resp.GetOkResponse() == nil {
				b.Errorf("check: %v %v", resp, err)
				return
			}
		}
	})
}

// The mixed workload of `make bench-authz` over gRPC: 1,000 users, 20 %
// invalid tokens (expired, foreign signature, wrong audience, garbage).
func BenchmarkCheckGRPCMixed(b *testing.B) {
	c := startCheckServer(b, newEngine(b, compileSpec(b, "petstore")))
	valid := make([]*authv3.CheckRequest, 1000)
	for i := range valid {
		u := strconv.Itoa(i)
		valid[i] = checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", func(m map[string]any) { m["sub"] = "user-" + u })}, "")
	}
	foreign := authntest.NewRSA("k1", 2048)
	invalid := []*authv3.CheckRequest{
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + foreign.Sign(map[string]any{"iss": issuer, "aud": "petstore", "exp": time.Now().Add(time.Hour).Unix()}, nil)}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("other", nil)}, ""),
		checkRequest("petstore/read", map[string]string{"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.x.!!"}, ""),
	}
	var seq atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			req, bad := valid[i%1000], i%5 == 0
			if bad {
				req = invalid[(i/5)%4]
			}
			resp, err := c.Check(ctx, req)
			if err != nil || (resp.GetOkResponse() != nil) == bad {
				b.Errorf("check %d: %v %v", i, resp, err)
				return
			}
		}
	})
}

// freshRequests are CheckRequests whose tokens are each distinct (a
// unique jti), signed once per test binary so no benchmark times signing.
var (
	freshOnce sync.Once
	freshReqs []*authv3.CheckRequest
)

const freshPoolSize = 4096

func freshRequests() []*authv3.CheckRequest {
	freshOnce.Do(func() {
		key()
		freshReqs = make([]*authv3.CheckRequest, freshPoolSize)
		var wg sync.WaitGroup
		workers := max(1, runtime.GOMAXPROCS(0))
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < freshPoolSize; i += workers {
					tok := token("petstore", func(m map[string]any) {
						m["jti"] = "fresh-" + strconv.Itoa(i)
						m["sub"] = "user-" + strconv.Itoa(i%1000)
						m["tenant"] = "t-" + strconv.Itoa(i%50)
					})
					freshReqs[i] = checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + tok}, "")
				}
			}()
		}
		wg.Wait()
	})
	return freshReqs
}

// In-process Check where every request carries a token the sidecar has
// not seen (token-cache miss, RS256 verification, claims, rules, cache
// insert), one goroutine; cpu-ns/op is the process's CPU (GC included)
// per Check. The pool is cycled in order through a token cache smaller
// than it, so a token is always evicted before it comes round again; the
// run fails on a cache hit.
func BenchmarkCheckFresh(b *testing.B) { benchCheckSequential(b, freshRequests(), 0) }

// The same, every request carrying the one token already in the cache:
// the cached path on the same footing (one goroutine, process CPU), to
// compare with BenchmarkCheckFresh.
func BenchmarkCheckCached(b *testing.B) {
	benchCheckSequential(b, freshRequests()[:1], 1)
}

// benchCheckSequential runs Check over reqs in order from one goroutine
// and fails unless the token cache was hit exactly wantHits per Check.
func benchCheckSequential(b *testing.B, reqs []*authv3.CheckRequest, wantHits int) {
	s, reg := newBenchServer(b)
	ctx := context.Background()
	if wantHits > 0 { // warm the cache
		if resp, _ := s.Check(ctx, reqs[0]); resp.GetOkResponse() == nil {
			b.Fatalf("warm-up not allowed: %v", resp)
		}
	}
	measureChecks(b, reg, wantHits, func(i int) {
		resp, _ := s.Check(ctx, reqs[i%len(reqs)])
		if resp.GetOkResponse() == nil {
			b.Fatalf("request %d not allowed: %v", i%len(reqs), resp)
		}
	})
}

// newBenchServer is a Server on an engine holding the petstore spec with a
// token cache of a quarter of the fresh pool, and the registry of the
// engine's metrics. The engine is closed at the end of the benchmark run.
func newBenchServer(b *testing.B) (*Server, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	e, err := authz.NewEngine(authz.Options{TokenCacheSize: freshPoolSize / 4, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	if err := e.Update([]*authz.SpecPolicy{compileSpec(b, "petstore")}); err != nil {
		b.Fatal(err)
	}
	return NewServer(e), reg
}

// measureChecks times check(i) for every i below b.N, reports the
// process's CPU per Check, and fails unless the token cache (read from
// reg) was hit exactly wantHits times per Check.
func measureChecks(b *testing.B, reg *prometheus.Registry, wantHits int, check func(i int)) {
	hits0 := cacheHits(b, reg)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime()
	for i := range b.N {
		check(i)
	}
	b.StopTimer()
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if hits := cacheHits(b, reg) - hits0; hits != float64(wantHits*b.N) {
		b.Fatalf("%v token-cache hits in %d Checks, want %d", hits, b.N, wantHits*b.N)
	}
}

// cacheHits reads gatehouse_authn_token_cache_lookups_total{result="hit"}.
func cacheHits(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gatehouse_authn_token_cache_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "hit" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no gatehouse_authn_token_cache_lookups_total{result=\"hit\"}")
	return 0
}

// The server's side of one fresh Check without the transport: the
// request's wire bytes decoded by the sidecar's codec, its Check handler
// (engine, response), the response encoded by the codec; one goroutine,
// cpu-ns/op as in BenchmarkCheckFresh. Closer to what `make bench-authz`
// measures than BenchmarkCheckFresh, which starts from a decoded request
// and ends at the response message.
func BenchmarkCheckFreshServer(b *testing.B) { benchCheckServer(b, freshRequests(), 0) }

// The same with the one cached token.
func BenchmarkCheckCachedServer(b *testing.B) { benchCheckServer(b, freshRequests()[:1], 1) }

// checkMethod is the Check handler and codec the sidecar serves with.
func checkMethod() (grpc.MethodHandler, encoding.CodecV2) {
	return serviceDesc.Methods[0].Handler, newCodec()
}

func benchCheckServer(b *testing.B, reqs []*authv3.CheckRequest, wantHits int) {
	s, reg := newBenchServer(b)
	handler, c := checkMethod()
	wires := make([][]byte, len(reqs))
	for i, r := range reqs {
		var err error
		if wires[i], err = proto.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	check := func(i int, verify bool) {
		data := mem.BufferSlice{mem.SliceBuffer(wires[i%len(wires)])}
		resp, err := handler(s, ctx, func(v any) error { return c.Unmarshal(data, v) }, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := c.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		if verify {
			var r authv3.CheckResponse
			if err := proto.Unmarshal(out.Materialize(), &r); err != nil || r.GetOkResponse() == nil {
				b.Fatalf("request %d not allowed: %v %v", i%len(wires), &r, err)
			}
		}
		out.Free()
	}
	if wantHits > 0 { // warm the cache
		check(0, true)
	}
	measureChecks(b, reg, wantHits, func(i int) { check(i, i%64 == 0) })
}
