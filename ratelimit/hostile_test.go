package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
)

// hostileRules are two limits of one spec route, as the control plane
// compiles them: per client address (2/minute) and per path (2/minute).
func hostileRules(t testing.TB, perIPOnFailure string) []*SpecRules {
	t.Helper()
	return []*SpecRules{{Spec: "s", Limits: []SpecLimit{
		{Route: "s/r", Name: "per-ip", Descriptor: []DescriptorEntry{{Key: "route", Value: "s/r"}, {Key: "limit", Value: "per-ip"}, {Key: "remote_address"}},
			Requests: 2, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "shared", OnFailure: perIPOnFailure},
		{Route: "s/r", Name: "per-path", Descriptor: []DescriptorEntry{{Key: "route", Value: "s/r"}, {Key: "limit", Value: "per-path"}, {Key: "request.path"}},
			Requests: 2, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "shared"},
	}}}
}

func hostileService(t testing.TB, o Options, perIPOnFailure string) *Service {
	t.Helper()
	d, err := Domain(hostileRules(t, perIPOnFailure))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRules([]*config.Domain{d}, o.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if o.Backend == nil {
		o.Backend = NewMemory()
	}
	if o.Clock == nil {
		o.Clock = newFakeClock(t0)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(r)
	return s
}

// envoyRequest is what Envoy sends for one request on route s/r.
func envoyRequest(ip, path string) *rlsv3.RateLimitRequest {
	return req("gatehouse",
		desc("route", "s/r", "limit", "per-ip", "remote_address", ip),
		desc("route", "s/r", "limit", "per-path", "request.path", path))
}

// TestLongValueDoesNotVoidLimits: a descriptor value far over the old
// 4,096-byte bound (a 5 KB query string) is counted under its hash; it
// neither fails the call (which made Envoy fail open, skipping every limit
// of the route) nor frees the client from its other, exhausted limit.
func TestLongValueDoesNotVoidLimits(t *testing.T) {
	var keys []string
	var mu sync.Mutex
	mem := NewMemory()
	rec := BackendFunc(func(ctx context.Context, now time.Time, h []Hit, out []Result) error {
		mu.Lock()
		for _, x := range h {
			keys = append(keys, strings.Clone(x.Key))
		}
		mu.Unlock()
		return mem.Decide(ctx, now, h, out)
	})
	s := hostileService(t, Options{Backend: rec}, "")
	pad := "/search?pad=" + strings.Repeat("A", 5000)
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp, err := s.ShouldRateLimit(context.Background(), envoyRequest("198.51.100.7", "/other-"+strconv.Itoa(i)))
		if err != nil || resp.OverallCode != want {
			t.Fatalf("short request %d: %v %v, want %s", i, resp.GetOverallCode(), err, want)
		}
	}
	resp, err := s.ShouldRateLimit(context.Background(), envoyRequest("198.51.100.7", pad))
	if err != nil {
		t.Fatalf("a 5 KB descriptor value failed the call (Envoy would fail open): %v", err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("5 KB value with the per-ip limit exhausted: %v", resp)
	}
	// Another client with the same long value is counted, and no key
	// holds the value itself.
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp := call(t, s, envoyRequest("198.51.100."+strconv.Itoa(20+i), pad))
		if resp.Statuses[1].Code != want {
			t.Fatalf("long path, request %d: per-path %s, want %s", i, resp.Statuses[1].Code, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if len(k) > 200 || strings.Contains(k, "AAAA") {
			t.Fatalf("key holds the long value (%d bytes): %.80s...", len(k), k)
		}
	}
}

// TestRequestPathWithoutQuery: in domain gatehouse a request.path value
// is counted without its query string, so "?x=<random>" does not give a
// client a fresh per-path counter.
func TestRequestPathWithoutQuery(t *testing.T) {
	s := hostileService(t, Options{}, "")
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp := call(t, s, req("gatehouse", desc("route", "s/r", "limit", "per-path", "request.path", "/export?x="+strconv.Itoa(i))))
		if resp.OverallCode != want {
			t.Fatalf("/export?x=%d: %s, want %s", i, resp.OverallCode, want)
		}
	}
	if resp := call(t, s, req("gatehouse", desc("route", "s/r", "limit", "per-path", "request.path", "/other?x=1"))); resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("another path shares the counter: %v", resp)
	}
}

func TestHashedValue(t *testing.T) {
	long := strings.Repeat("v", MaxKeyValueBytes+1)
	for _, c := range []struct {
		in     string
		hashed bool
	}{
		{"", false}, {"198.51.100.7", false}, {strings.Repeat("v", MaxKeyValueBytes), false},
		{long, true}, {HashedValue(long), true}, {hashMark + "x", true},
	} {
		got := HashedValue(c.in)
		if (got != c.in) != c.hashed {
			t.Errorf("HashedValue(%.20q...) = %.30q, hashed want %v", c.in, got, c.hashed)
		}
		if c.hashed && (len(got) != len(hashMark)+32 || !strings.HasPrefix(got, hashMark)) {
			t.Errorf("HashedValue(%.20q...) = %q", c.in, got)
		}
	}
	// Deterministic, and distinct for distinct values; a plain value can
	// never equal a hashed one.
	if HashedValue(long) != HashedValue(strings.Clone(long)) || HashedValue(long) == HashedValue(long+"w") {
		t.Error("hash is not a function of the value")
	}
	if h := HashedValue(long); HashedValue(h) == h {
		t.Error("a client can send a hashed value and share its counter")
	}
}

// TestMemoryCapped: the memory backend never holds more than its cap; a
// hit needing a new counter when full gets the limit's failure mode and is
// counted in gatehouse_ratelimit_memory_full_total, while existing
// counters keep counting; expired counters make room again.
func TestMemoryCapped(t *testing.T) {
	const capN = 100
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	mem := NewBoundedMemory(capN)
	clk := newFakeClock(t0)
	s := hostileService(t, Options{Backend: mem, Metrics: m, Clock: clk}, "deny")
	perIP := func(ip string) *rlsv3.RateLimitResponse {
		return call(t, s, req("gatehouse", desc("route", "s/r", "limit", "per-ip", "remote_address", ip)))
	}
	perPath := func(p string) *rlsv3.RateLimitResponse {
		return call(t, s, req("gatehouse", desc("route", "s/r", "limit", "per-path", "request.path", p)))
	}
	// A client over its limit before the flood.
	for i := 0; i < 3; i++ {
		perIP("203.0.113.1")
	}
	for i := 0; i < 2*capN; i++ {
		perPath("/p" + strconv.Itoa(i))
	}
	if n := mem.Len(); n > capN {
		t.Fatalf("Len() = %d, over the cap %d", n, capN)
	}
	// Full: a new per-path counter fails open (service default allow), a
	// new per-ip counter fails closed (onFailure: deny), the existing
	// over-limit client stays over.
	if resp := perPath("/new"); resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("full, allow limit: %v", resp)
	}
	if resp := perIP("203.0.113.99"); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("full, onFailure deny limit: %v", resp)
	}
	if resp := perIP("203.0.113.1"); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("full: a client over its limit got out of it: %v", resp)
	}
	if v := testutil.ToFloat64(m.memoryFull.WithLabelValues("allow")); v < capN {
		t.Errorf("memory_full_total{mode=allow} = %v, want >= %d", v, capN)
	}
	if v := testutil.ToFloat64(m.memoryFull.WithLabelValues("deny")); v != 1 {
		t.Errorf("memory_full_total{mode=deny} = %v, want 1", v)
	}
	// The window ends: expired counters are swept and new ones fit.
	clk.Advance(2 * time.Minute)
	if resp := perIP("203.0.113.99"); resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("after expiry: %v", resp)
	}
	if n := mem.Len(); n > capN || n == 0 {
		t.Fatalf("after expiry Len() = %d", n)
	}
}

// TestMemoryCapConcurrent: many goroutines inserting distinct keys never
// push the live count over the cap.
func TestMemoryCapConcurrent(t *testing.T) {
	const capN = 1000
	mem := NewBoundedMemory(capN)
	lim := &Limit{Requests: 5, Window: time.Hour}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]Result, 1)
			for i := 0; i < capN; i++ {
				_ = mem.Decide(context.Background(), t0, []Hit{{Key: strconv.Itoa(g) + "-" + strconv.Itoa(i), Limit: lim, Addend: 1}}, out)
			}
		}()
	}
	wg.Wait()
	if n := mem.Len(); n != capN {
		t.Fatalf("Len() = %d, want exactly the cap %d", n, capN)
	}
}

// TestPerLimitFailureMode: with the backend down, a limit marked
// onFailure: deny answers OVER_LIMIT while the others follow the service's
// failure mode (allow), and onFailure: allow wins over a deny service.
func TestPerLimitFailureMode(t *testing.T) {
	broken := BackendFunc(func(context.Context, time.Time, []Hit, []Result) error { return errors.New("redis down") })
	s := hostileService(t, Options{Backend: broken, FailureMode: FailAllow}, "deny")
	resp := call(t, s, envoyRequest("198.51.100.7", "/a"))
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("allow service, deny limit: %v", resp)
	}
	s = hostileService(t, Options{Backend: broken, FailureMode: FailDeny}, "allow")
	resp = call(t, s, envoyRequest("198.51.100.7", "/a"))
	if resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("deny service, allow limit: %v", resp)
	}
}

// BenchmarkHashedKey is a decision whose descriptor value is over
// MaxKeyValueBytes (hashed into the key), next to a short one.
func BenchmarkHashedKey(b *testing.B) {
	s := hostileService(b, Options{}, "")
	for _, n := range []int{16, 5000} {
		reqs := make([]*rlsv3.RateLimitRequest, 1024)
		for i := range reqs {
			v := strconv.Itoa(i) + strings.Repeat("p", n)
			reqs[i] = &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{
				desc("route", "s/r", "limit", "per-ip", "remote_address", v)}}
		}
		b.Run("value="+strconv.Itoa(n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := s.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func TestMaskedRemoteAddress(t *testing.T) {
	for in, want := range map[string]string{
		"2001:db8:1:2:aaaa:bbbb:cccc:dddd": "2001:db8:1:2::/64",
		"2001:db8:1:2::99":                 "2001:db8:1:2::/64",
		"198.51.100.7":                     "198.51.100.7/32",
		"::ffff:198.51.100.7":              "198.51.100.7/32",
		"not-an-ip":                        "",
	} {
		if got := MaskedRemoteAddress(in, 32, 64); got != want {
			t.Errorf("MaskedRemoteAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSweepKeepsNewCounter: the lazy sweep that runs every ~1024 inserts
// never drops the counter being inserted (it has no expiry yet).
func TestSweepKeepsNewCounter(t *testing.T) {
	mem := NewMemory()
	lim := &Limit{Requests: 1, Window: time.Hour}
	out := make([]Result, 1)
	for i := 0; i < 300_000; i++ {
		k := "k" + strconv.Itoa(i)
		_ = mem.Decide(context.Background(), t0, []Hit{{Key: k, Limit: lim, Addend: 1}}, out)
		_ = mem.Decide(context.Background(), t0, []Hit{{Key: k, Limit: lim, Addend: 0}}, out)
		if out[0].Used != 1 {
			t.Fatalf("counter %s lost right after its first hit (used %d)", k, out[0].Used)
		}
	}
}
