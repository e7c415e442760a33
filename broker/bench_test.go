package broker_test

import (
	"flag"
	"fmt"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEmbeddedPipeline provisions EdgeRoutes end to end through the
// embedded pipeline: OSB PUT over HTTP -> SQLite store + outbox -> SQLite
// queue -> worker (validate, host check, write at a new revision) ->
// control plane double (reads the change feed, validates, reports
// published) -> worker marks succeeded -> the client's last_operation poll
// sees "succeeded". It reports provisions/s and the PUT->succeeded latency
// (p50, p99) as the client sees it (polling every 2ms).
func BenchmarkEmbeddedPipeline(b *testing.B) {
	benchPipeline(b, newPipeline(b, pipelineOpts{workers: 32}))
}

// BenchmarkEmulatorPipeline is the same pipeline on DynamoDB (dynalite)
// and SQS (goaws, in-process): a functional baseline for the scale-out
// backends, bound by the emulators, not a prediction for AWS.
func BenchmarkEmulatorPipeline(b *testing.B) {
	d := testenv.StartDynalite(b)
	g := testenv.StartGoAWS(b)
	q, _ := sqsQueue(b, g, 5*time.Second)
	benchPipeline(b, newPipeline(b, pipelineOpts{workers: 32, store: dynamoStore(b, d), queue: q}))
}

func benchPipeline(b *testing.B, p *pipeline) {
	b.ReportAllocs()
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(max(1, *benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := n.Add(1)
			name := fmt.Sprintf("bench-%d", i)
			t0 := time.Now()
			r := p.do(b, "PUT", "/v2/service_instances/"+name+"?accepts_incomplete=true", provisionBody(edgeRoute(name)))
			if r.Code != 202 {
				b.Errorf("PUT %s: %d %s", name, r.Code, r.Raw)
				return
			}
			for {
				lo := p.do(b, "GET", "/v2/service_instances/"+name+"/last_operation?operation="+r.str("operation"), nil)
				if s := lo.str("state"); s == "succeeded" {
					break
				} else if s != "in progress" {
					b.Errorf("%s: %s", name, lo.Raw)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "provisions/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// benchClients is how many clients provision at once: many for
// throughput, few for unloaded latency.
var benchClients = flag.Int("broker.clients", 32, "BenchmarkEmbeddedPipeline: concurrent OSB clients")
