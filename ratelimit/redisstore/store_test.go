package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/ratelimit/replay"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const rulesYAML = `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: minute, requests_per_unit: 7}
  - key: sliding
    rate_limit: {unit: minute, requests_per_unit: 9, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: hour, requests_per_unit: 60, algorithm: token-bucket, burst: 5}
  - key: odd
    rate_limit: {unit: 90s, requests_per_unit: 4}
`

func rules(t testing.TB, y string) *ratelimit.Rules {
	t.Helper()
	d, err := config.Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ratelimit.NewRules([]*config.Domain{d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// counter counts round trips (single commands and pipelines) to Redis.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}

func TestMain(m *testing.M) {
	// go-redis logs dial failures through a package-level logger; the
	// kill/restart test makes many on purpose.
	redis.SetLogger(quietLogger{})
	// Store.Close must stop every worker it started.
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func newStore(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newService(t testing.TB, b ratelimit.Backend, clk ratelimit.Clock, y string, mode ratelimit.FailureMode) *ratelimit.Service {
	t.Helper()
	s, err := ratelimit.New(ratelimit.Options{Backend: b, Clock: clk, FailureMode: mode, BackendName: "redis"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(rules(t, y))
	return s
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// TestSameAnswersAsMemory drives the memory backend and Redis with the
// same random sequence (all algorithms, addends 0..3, time jumps) and
// requires identical responses: the Lua script is the Go arithmetic.
func TestSameAnswersAsMemory(t *testing.T) {
	r := testenv.StartRedis(t)
	sameAnswers(t, "redis://"+r.Addr, 1500)
}

func sameAnswers(t *testing.T, url string, steps int) *Store {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	mem := newService(t, ratelimit.NewMemory(), clk, rulesYAML, ratelimit.FailAllow)
	st := newStore(t, Options{URL: url, Timeout: 2 * time.Second, CacheSize: -1})
	red := newService(t, st, clk, rulesYAML, ratelimit.FailAllow)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"fixed", "sliding", "bucket", "odd"}
	for i := 0; i < steps; i++ {
		var ds []*ratelimitv3.RateLimitDescriptor
		for n := 1 + rng.IntN(3); n > 0; n-- {
			d := desc(keys[rng.IntN(len(keys))], strconv.Itoa(rng.IntN(3)))
			if rng.IntN(4) == 0 {
				d.HitsAddend = wrapperspb.UInt64(uint64(rng.IntN(4)))
			}
			ds = append(ds, d)
		}
		req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: ds}
		a, err := mem.ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := red.ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, b, protocmp.Transform()); diff != "" {
			t.Fatalf("step %d at %s: memory vs redis (-memory +redis)\n%s", i, clk.Now().Format(time.RFC3339Nano), diff)
		}
		clk.Advance(time.Duration(rng.IntN(4000)) * time.Millisecond)
	}
	return st
}

// TestScriptLoadedAtStart: a new Store loads the decision script before
// any decision, so the first one does not pay a SCRIPT LOAD (a second
// round trip, and on TLS a fresh handshake) inside its budget and fall to
// the failure mode.
func TestScriptLoadedAtStart(t *testing.T) {
	r := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { client.Close() })
	if err := client.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	st := newStore(t, Options{Client: client, Timeout: time.Second})
	select {
	case <-st.warmed:
	case <-time.After(30 * time.Second):
		t.Fatal("the start-up script load did not finish within 30s")
	}
	ok, err := client.ScriptExists(context.Background(), decideScript.Hash()).Result()
	if err != nil || len(ok) != 1 || !ok[0] {
		t.Fatalf("decision script not loaded at start: %v %v", ok, err)
	}
}

// TestEnvoyproxyKeyFormat: fixed-window counters are the keys, values and
// TTLs envoyproxy/ratelimit uses, so both can share a Redis.
func TestEnvoyproxyKeyFormat(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := &fakeClock{t: time.Now()}
	st := newStore(t, Options{URL: "redis://" + r.Addr, Timeout: time.Second})
	svc := newService(t, st, clk, rulesYAML, ratelimit.FailAllow)
	for i := 0; i < 3; i++ {
		if _, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("fixed", "alice")}}); err != nil {
			t.Fatal(err)
		}
	}
	now := clk.Now().Unix()
	key := fmt.Sprintf("d_fixed_alice_%d", now/60*60)
	ctx := context.Background()
	if v, err := st.Client().Get(ctx, key).Int(); err != nil || v != 3 {
		t.Fatalf("GET %s = %d, %v; want 3", key, v, err)
	}
	if ttl, err := st.Client().TTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL %s = %s, %v", key, ttl, err)
	}
	// A count envoyproxy/ratelimit left there is honoured.
	key2 := fmt.Sprintf("d_fixed_bob_%d", now/60*60)
	st.Client().Set(ctx, key2, 7, time.Minute)
	resp, err := svc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("fixed", "bob")}})
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("shared counter not honoured: %v %v", resp, err)
	}
}

// TestOneRoundTripPerRequest: a request with several descriptors and
// algorithms is one EVALSHA; over-limit fixed keys skip Redis entirely.
func TestOneRoundTripPerRequest(t *testing.T) {
	r := testenv.StartRedis(t)
	c := &counter{}
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	client.AddHook(c)
	t.Cleanup(func() { client.Close() })
	if err := decideScript.Load(context.Background(), client).Err(); err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Now()}
	st := newStore(t, Options{Client: client, Timeout: time.Second})
	<-st.warmed // its start-up SCRIPT LOAD is not a request's round trip
	svc := newService(t, st, clk, rulesYAML, ratelimit.FailAllow)
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("fixed", "a"), desc("sliding", "a"), desc("bucket", "a"), desc("none", "x")}}
	base := c.n.Load()
	for i := 1; i <= 7; i++ {
		if _, err := svc.ShouldRateLimit(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if got := c.n.Load() - base; got != int64(i) {
			t.Fatalf("after %d requests: %d round trips", i, got)
		}
	}
	only := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("fixed", "a")}}
	resp, _ := svc.ShouldRateLimit(context.Background(), only) // 8th: over, cached
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("8th: %s", resp.OverallCode)
	}
	before := c.n.Load()
	for i := 0; i < 20; i++ {
		resp, _ := svc.ShouldRateLimit(context.Background(), only)
		if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("cached: %s", resp.OverallCode)
		}
	}
	if c.n.Load() != before {
		t.Fatalf("over-limit keys went to Redis %d times", c.n.Load()-before)
	}
	// The next window is decided by Redis again.
	clk.Advance(time.Minute)
	if resp, _ := svc.ShouldRateLimit(context.Background(), only); resp.OverallCode != rlsv3.RateLimitResponse_OK || c.n.Load() != before+1 {
		t.Fatalf("next window: %s, %d round trips", resp.OverallCode, c.n.Load()-before)
	}
}

// TestBatchingExactUnderConcurrency: 32 goroutines share a few keys; the
// requests are batched into fewer script calls than requests and exactly
// the limit passes.
func TestBatchingExactUnderConcurrency(t *testing.T) {
	r := testenv.StartRedis(t)
	c := &counter{}
	client := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 8})
	client.AddHook(c)
	t.Cleanup(func() { client.Close() })
	clk := &fakeClock{t: time.Now()}
	y := `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: hour, requests_per_unit: 300}
  - key: sliding
    rate_limit: {unit: hour, requests_per_unit: 300, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: hour, requests_per_unit: 5, algorithm: token-bucket, burst: 300}
`
	svc := newService(t, newStore(t, Options{Client: client, Timeout: 5 * time.Second, CacheSize: -1, Workers: 2}), clk, y, ratelimit.FailDeny)
	for _, key := range []string{"fixed", "sliding", "bucket"} {
		var ok atomic.Int64
		var wg sync.WaitGroup
		base := c.n.Load()
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc(key, "k")}})
					if err != nil {
						t.Error(err)
						return
					}
					if resp.OverallCode == rlsv3.RateLimitResponse_OK {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 300 {
			t.Errorf("%s: %d of 800 allowed, want exactly 300", key, ok.Load())
		}
		trips := c.n.Load() - base
		t.Logf("%s: 800 requests in %d script calls", key, trips)
		if trips >= 800 {
			t.Errorf("%s: no batching: %d round trips for 800 requests", key, trips)
		}
	}
}

// TestRedisKilledAndRestarted kills redis-server under load: no call
// hangs, the failure mode answers while it is down, and decisions come
// from Redis again after it restarts.
func TestRedisKilledAndRestarted(t *testing.T) {
	for _, mode := range []ratelimit.FailureMode{ratelimit.FailAllow, ratelimit.FailDeny} {
		t.Run(mode.String(), func(t *testing.T) {
			r := testenv.StartRedis(t)
			// 200ms rather than the 50ms default: on a saturated test box a
			// healthy Redis can miss 50ms, which is the failure mode working,
			// not what this test is about.
			st := newStore(t, Options{URL: "redis://" + r.Addr, Timeout: 200 * time.Millisecond})
			clk := ratelimit.SystemClock{}
			svc := newService(t, st, clk, `
domain: d
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 1000000}
`, mode)
			type tally struct{ ok, over, slowest atomic.Int64 }
			var phase atomic.Int32 // 0 up, 1 down, 2 restarted
			var tallies [3]tally
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 200000; i++ {
						select {
						case <-stop:
							return
						default:
						}
						p := phase.Load()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						start := time.Now()
						resp, err := svc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", strconv.Itoa(i%50))}})
						cancel()
						if err != nil {
							t.Error(err)
							return
						}
						el := time.Since(start).Milliseconds()
						if phase.Load() != p {
							continue // straddled a kill or restart
						}
						tl := &tallies[p]
						for {
							old := tl.slowest.Load()
							if el <= old || tl.slowest.CompareAndSwap(old, el) {
								break
							}
						}
						if resp.OverallCode == rlsv3.RateLimitResponse_OK {
							tl.ok.Add(1)
						} else {
							tl.over.Add(1)
						}
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			phase.Store(1)
			r.Stop()
			time.Sleep(500 * time.Millisecond)
			r.Restart(t)
			phase.Store(2)
			// Wait until Redis counts again (bounded).
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				n, _ := st.Client().DBSize(context.Background()).Result()
				if n > 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			for p := range tallies {
				tl := &tallies[p]
				t.Logf("phase %d: ok %d over %d slowest %dms", p, tl.ok.Load(), tl.over.Load(), tl.slowest.Load())
				// Not a speed assertion: a hung call would sit at the 10s context.
				if tl.slowest.Load() > 5000 {
					t.Errorf("phase %d: a call took %dms: requests piled up", p, tl.slowest.Load())
				}
			}
			if tallies[0].ok.Load() == 0 || tallies[0].over.Load()*50 > tallies[0].ok.Load() {
				t.Errorf("before the kill: ok %d over %d", tallies[0].ok.Load(), tallies[0].over.Load())
			}
			if mode == ratelimit.FailDeny && tallies[1].over.Load() == 0 {
				t.Errorf("deny mode: nothing denied while Redis was down")
			}
			if mode == ratelimit.FailAllow && tallies[1].over.Load() != 0 {
				t.Errorf("allow mode: %d denied while Redis was down", tallies[1].over.Load())
			}
			if n, err := st.Client().DBSize(context.Background()).Result(); err != nil || n == 0 {
				t.Errorf("after restart Redis holds %d keys (%v): no recovery", n, err)
			}
			if tallies[2].ok.Load() == 0 {
				t.Errorf("no OK answer after the restart")
			}
		})
	}
}

// TestDeadlineOnSlowRedis: a server that accepts but never answers costs
// each call at most about the deadline, and the failure mode answers.
func TestDeadlineOnSlowRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	m, err := ratelimit.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, Options{URL: "redis://" + l.Addr().String(), Timeout: 50 * time.Millisecond, Metrics: m})
	svc, err := ratelimit.New(ratelimit.Options{Backend: st, BackendName: "redis", Metrics: m, FailureMode: ratelimit.FailDeny})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetRules(rules(t, rulesYAML))
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := svc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("fixed", "x")}})
		if ctx.Err() != nil {
			t.Fatalf("call %d hung until the test's 10s context", i)
		}
		cancel()
		if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("deny mode with a silent Redis: %v %v", resp, err)
		}
	}
	// The failures are visible: timeouts by reason, latency observed, and
	// descriptors decided by the failure mode.
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			labels := ""
			for _, lp := range mt.GetLabel() {
				labels += lp.GetName() + "=" + lp.GetValue() + ","
			}
			v := mt.GetCounter().GetValue()
			if h := mt.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			got[mf.GetName()+"{"+labels+"}"] += v
		}
	}
	for _, k := range []string{
		"gatehouse_ratelimit_backend_errors_total{backend=redis,reason=timeout,}",
		"gatehouse_ratelimit_failure_mode_total{mode=deny,}",
	} {
		if got[k] < 5 {
			t.Errorf("%s = %v, want >= 5 (all: %v)", k, got[k], got)
		}
	}
	// One latency sample per request.
	if got["gatehouse_ratelimit_backend_seconds{backend=redis,}"] < 5 {
		t.Errorf("backend latency not observed: %v", got)
	}
}

// TestLocalScopeStaysInMemory: a spec limit with scope local is counted in
// the sidecar's memory even though the backend is Redis.
func TestLocalScopeStaysInMemory(t *testing.T) {
	r := testenv.StartRedis(t)
	st := newStore(t, Options{URL: "redis://" + r.Addr, Timeout: time.Second})
	d, err := ratelimit.Domain([]*ratelimit.SpecRules{{Spec: "s", Limits: []ratelimit.SpecLimit{
		{Route: "s/r", Name: "local", Descriptor: []ratelimit.DescriptorEntry{{Key: "route", Value: "s/r"}, {Key: "limit", Value: "local"}},
			Requests: 2, WindowSeconds: 60, Algorithm: "token-bucket", Scope: "local"},
		{Route: "s/r", Name: "shared", Descriptor: []ratelimit.DescriptorEntry{{Key: "route", Value: "s/r"}, {Key: "limit", Value: "shared"}},
			Requests: 5, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "shared"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := ratelimit.NewRules([]*config.Domain{d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ratelimit.New(ratelimit.Options{Backend: st})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetRules(rr)
	var codes []string
	for i := 0; i < 3; i++ {
		resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{
			desc("route", "s/r", "limit", "local"), desc("route", "s/r", "limit", "shared")}})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.Statuses[0].Code.String()+"/"+resp.Statuses[1].Code.String())
	}
	if strings.Join(codes, " ") != "OK/OK OK/OK OVER_LIMIT/OK" {
		t.Fatalf("codes %v", codes)
	}
	keys, err := st.Client().Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.Contains(keys[0], "limit_shared_") {
		t.Fatalf("redis keys %v: only the shared limit may be in Redis", keys)
	}
}

func TestParseURL(t *testing.T) {
	cases := map[string]string{
		"redis://127.0.0.1:6379/2":                  "addrs=[127.0.0.1:6379] db=2 master= cluster=false",
		"redis://:secret@h":                         "addrs=[h:6379] db=0 master= cluster=false",
		"redis+sentinel://a:26379,b:26379/mymaster": "addrs=[a:26379 b:26379] db=0 master=mymaster cluster=false",
		"redis+cluster://a:7000,b:7001":             "addrs=[a:7000 b:7001] db=0 master= cluster=true",
	}
	for in, want := range cases {
		o, err := ParseURL(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got := fmt.Sprintf("addrs=%v db=%d master=%s cluster=%v", o.Addrs, o.DB, o.MasterName, o.IsClusterMode)
		if got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"http://x", "redis://a,b", "redis+sentinel://a", "redis://h/x", "redis+cluster://a/1"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if got := Redact("redis://user:secret@h:1"); strings.Contains(got, "secret") {
		t.Errorf("Redact leaks: %s", got)
	}
}

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]int{"123456789": 12739, "foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestReplayScriptOnRedis replays the scripted sequence (the one
// `make bench-ratelimit` also replays against envoyproxy/ratelimit) on the
// Redis backend, from the unchanged envoyproxy config directory.
func TestReplayScriptOnRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	domains, err := config.LoadDir("../testdata/replay/config")
	if err != nil {
		t.Fatal(err)
	}
	rr, err := ratelimit.NewRules(domains, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ratelimit.New(ratelimit.Options{Backend: newStore(t, Options{URL: "redis://" + r.Addr, Timeout: time.Second})})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetRules(rr)
	f, err := os.Open("../testdata/replay/script.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps, err := replay.Parse(f, "3")
	if err != nil {
		t.Fatal(err)
	}
	mism, err := replay.Run(context.Background(), steps, svc.ShouldRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mism {
		t.Error(m)
	}
}

func TestOverCacheBounded(t *testing.T) {
	c := newOverCache(2)
	c.add("a", 100, 0)
	c.add("b", 200, 0)
	c.add("c", 300, 0) // full, nothing expired: not cached
	if !c.over("a", 50) || !c.over("b", 50) || c.over("c", 50) {
		t.Fatal("bound not respected")
	}
	if c.over("a", 100) {
		t.Fatal("entry outlived its window")
	}
	c.add("c", 300, 150) // "a" expired at 100: swept, "c" fits
	if !c.over("c", 150) || c.over("a", 50) {
		t.Fatal("expired entries not swept")
	}
}

// TestQueueBounded: with Redis silent and the one worker stuck, callers
// beyond the queue are refused at once (ErrQueueFull) instead of piling
// up, and the ones queued give up after the deadline.
func TestQueueBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	st := newStore(t, Options{URL: "redis://" + l.Addr().String(), Timeout: 300 * time.Millisecond, Workers: 1, QueueSize: 1, CacheSize: -1})
	lim := &ratelimit.Limit{Requests: 10, Window: time.Minute}
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			out := make([]ratelimit.Result, 1)
			errs <- st.Decide(context.Background(), time.Now(), []ratelimit.Hit{{Key: "k" + strconv.Itoa(i), Limit: lim, Addend: 1}}, out)
		}()
		time.Sleep(5 * time.Millisecond)
	}
	full, deadline := 0, 0
	for i := 0; i < 10; i++ {
		select {
		case err := <-errs:
			switch {
			case errors.Is(err, ErrQueueFull):
				full++
			case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
				deadline++
			default:
				t.Errorf("unexpected result: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a caller hung")
		}
	}
	if full == 0 || deadline == 0 {
		t.Fatalf("queue full %d, deadline %d: want both", full, deadline)
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
