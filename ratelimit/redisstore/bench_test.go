package redisstore

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

const benchYAML = `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
  - key: sliding
    rate_limit: {unit: minute, requests_per_unit: 1000000000, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 1000000000, algorithm: token-bucket}
`

// BenchmarkRedisDecision is ShouldRateLimit on the Redis backend, 10k
// keys, 64 concurrent callers (RunParallel with parallelism 32 on 2
// cores), for each algorithm: the batching path.
func BenchmarkRedisDecision(b *testing.B) {
	r := testenv.StartRedis(b)
	for _, alg := range []string{"fixed", "sliding", "bucket"} {
		reqs := make([]*rlsv3.RateLimitRequest, 10000)
		for i := range reqs {
			reqs[i] = &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
				Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: alg, Value: "user-" + strconv.Itoa(i)}}}}}
		}
		b.Run(alg+"/parallel", func(b *testing.B) {
			m, err := ratelimit.NewMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			st := newStore(b, Options{URL: "redis://" + r.Addr, Metrics: m})
			svc, err := ratelimit.New(ratelimit.Options{Backend: st, BackendName: "redis", Metrics: m})
			if err != nil {
				b.Fatal(err)
			}
			svc.SetRules(rules(b, benchYAML))
			var seq, failed atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(7919))
				for pb.Next() {
					i++
					if _, err := svc.ShouldRateLimit(context.Background(), reqs[i%len(reqs)]); err != nil {
						failed.Add(1)
					}
				}
			})
			if failed.Load() > 0 {
				b.Fatalf("%d calls failed", failed.Load())
			}
		})
	}
}
