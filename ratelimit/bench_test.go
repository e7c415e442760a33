package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
)

const benchYAML = `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: sliding
    rate_limit: {unit: minute, requests_per_unit: 1000000000, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 1000000000, algorithm: token-bucket}
`

// benchRequests builds n distinct one-descriptor requests (10k keys).
func benchRequests(key string, n int) []*rlsv3.RateLimitRequest {
	out := make([]*rlsv3.RateLimitRequest, n)
	for i := range out {
		out[i] = &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: "user-" + strconv.Itoa(i)}}}}}
	}
	return out
}

func benchService(b *testing.B, withMetrics bool) *Service {
	var m *Metrics
	if withMetrics {
		var err error
		if m, err = NewMetrics(prometheus.NewRegistry()); err != nil {
			b.Fatal(err)
		}
	}
	s, err := New(Options{Backend: NewMemory(), Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	s.SetRules(mustRules(b, benchYAML, m))
	return s
}

// BenchmarkMemoryDecision is the whole ShouldRateLimit path on the memory
// backend (lookup, key, count, response, metrics), 10k keys.
func BenchmarkMemoryDecision(b *testing.B) {
	for _, alg := range []string{"fixed", "sliding", "bucket"} {
		reqs := benchRequests(alg, 10000)
		b.Run(alg, func(b *testing.B) {
			s := benchService(b, true)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/parallel", func(b *testing.B) {
			s := benchService(b, true)
			ctx := context.Background()
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(7919))
				for pb.Next() {
					i++
					if _, err := s.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkMemoryBackend is the backend alone: one counter step.
func BenchmarkMemoryBackend(b *testing.B) {
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket} {
		l := &Limit{Requests: 1 << 30, Window: time.Minute, Algorithm: alg}
		hits := make([][]Hit, 10000)
		for i := range hits {
			hits[i] = []Hit{{Key: "d_user_" + strconv.Itoa(i) + "_", Limit: l, Addend: 1}}
		}
		b.Run(alg.String()+"/parallel", func(b *testing.B) {
			m := NewMemory()
			now := time.Now()
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				out := make([]Result, 1)
				i := int(seq.Add(7919))
				for pb.Next() {
					i++
					_ = m.Decide(context.Background(), now, hits[i%len(hits)], out)
				}
			})
		})
	}
}

// BenchmarkLookup is descriptor matching alone (nested tree, wildcard).
func BenchmarkLookup(b *testing.B) {
	r := mustRules(b, `
domain: d
descriptors:
  - key: route
    value: petstore/list
    descriptors:
      - key: limit
        value: per-user
        descriptors:
          - key: identity.subject
            rate_limit: {unit: minute, requests_per_unit: 10}
  - key: tenant
    value: acme-*
    rate_limit: {unit: minute, requests_per_unit: 10}
`, nil)
	d := &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
		{Key: "route", Value: "petstore/list"}, {Key: "limit", Value: "per-user"}, {Key: "identity.subject", Value: "alice"}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.Lookup("d", d) == nil {
				b.Fatal("no match")
			}
		}
	})
}
