package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/ratelimit/replay"
)

// t0 is the start of a UTC hour, so windows line up predictably.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func mustRules(t testing.TB, yaml string, m *Metrics) *Rules {
	t.Helper()
	d, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	r, err := NewRules([]*config.Domain{d}, m)
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return r
}

func newTestService(t testing.TB, yaml string, o Options) (*Service, *fakeClock) {
	t.Helper()
	clk := newFakeClock(t0)
	if o.Backend == nil {
		o.Backend = NewMemory()
	}
	o.Clock = clk
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(mustRules(t, yaml, o.Metrics))
	return s, clk
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func req(domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
}

func call(t testing.TB, s *Service, r *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := s.ShouldRateLimit(context.Background(), r)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

const algoYAML = `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: sliding
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: token-bucket, burst: 4}
  - key: thirty
    rate_limit: {unit: 30s, requests_per_unit: 2}
`

func TestReplayScript(t *testing.T) {
	domains, err := config.LoadDir("testdata/replay/config")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := NewRules(domains, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/replay/script.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps, err := replay.Parse(f, "1")
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) < 30 {
		t.Fatalf("script has %d steps; expected the full scripted sequence", len(steps))
	}
	s, err := New(Options{Backend: NewMemory(), Clock: newFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(rules)
	mism, err := replay.Run(context.Background(), steps, s.ShouldRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mism {
		t.Error(m)
	}
}

func TestFixedWindowResponse(t *testing.T) {
	s, clk := newTestService(t, algoYAML, Options{})
	clk.Advance(15 * time.Second)
	for i := 1; i <= 4; i++ {
		resp := call(t, s, req("d", desc("fixed", "a")))
		st := resp.Statuses[0]
		wantCode := rlsv3.RateLimitResponse_OK
		wantRemaining := uint32(3 - i)
		if i == 4 {
			wantCode, wantRemaining = rlsv3.RateLimitResponse_OVER_LIMIT, 0
		}
		if resp.OverallCode != wantCode || st.Code != wantCode || st.LimitRemaining != wantRemaining {
			t.Fatalf("hit %d: overall %s status %s remaining %d; want %s remaining %d", i, resp.OverallCode, st.Code, st.LimitRemaining, wantCode, wantRemaining)
		}
		if st.CurrentLimit.GetRequestsPerUnit() != 3 || st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE {
			t.Fatalf("current_limit = %v", st.CurrentLimit)
		}
		if got := st.DurationUntilReset.AsDuration(); got != 45*time.Second {
			t.Fatalf("duration_until_reset = %s, want 45s", got)
		}
	}
	clk.Advance(45 * time.Second)
	if resp := call(t, s, req("d", desc("fixed", "a"))); resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 2 {
		t.Fatalf("new window: %v", resp)
	}
}

func TestArbitraryWindow(t *testing.T) {
	s, clk := newTestService(t, algoYAML, Options{})
	codes := func() string {
		return call(t, s, req("d", desc("thirty", "x"))).OverallCode.String()
	}
	got := []string{codes(), codes(), codes()}
	if strings.Join(got, ",") != "OK,OK,OVER_LIMIT" {
		t.Fatalf("30s window: %v", got)
	}
	resp := call(t, s, req("d", desc("thirty", "x")))
	if u := resp.Statuses[0].CurrentLimit.GetUnit(); u != rlsv3.RateLimitResponse_RateLimit_UNKNOWN {
		t.Fatalf("unit for 30s = %s, want UNKNOWN", u)
	}
	if r := resp.Statuses[0].DurationUntilReset.AsDuration(); r != 30*time.Second {
		t.Fatalf("reset = %s", r)
	}
	clk.Advance(30 * time.Second)
	if c := codes(); c != "OK" {
		t.Fatalf("after 30s: %s", c)
	}
}

func TestSlidingWindow(t *testing.T) {
	s, clk := newTestService(t, algoYAML, Options{})
	hit := func() rlsv3.RateLimitResponse_Code { return call(t, s, req("d", desc("sliding", "k"))).OverallCode }
	for i := 0; i < 10; i++ {
		if c := hit(); c != rlsv3.RateLimitResponse_OK {
			t.Fatalf("hit %d: %s", i, c)
		}
	}
	if c := hit(); c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("11th hit: %s", c)
	}
	// 30s into the next window, the previous 10 count half: 5 weighted, so 5 more fit.
	clk.Advance(90 * time.Second)
	ok := 0
	for i := 0; i < 10; i++ {
		if hit() == rlsv3.RateLimitResponse_OK {
			ok++
		}
	}
	if ok != 5 {
		t.Fatalf("at 50%% of the next window: %d allowed, want 5", ok)
	}
	// Two windows later nothing of the past remains.
	clk.Advance(2 * time.Minute)
	ok = 0
	for i := 0; i < 12; i++ {
		if hit() == rlsv3.RateLimitResponse_OK {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("fresh window: %d allowed, want 10", ok)
	}
}

func TestTokenBucket(t *testing.T) {
	s, clk := newTestService(t, algoYAML, Options{})
	hit := func() *rlsv3.RateLimitResponse { return call(t, s, req("d", desc("bucket", "k"))) }
	// Burst 4 at once.
	for i := 0; i < 4; i++ {
		r := hit()
		if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].LimitRemaining != uint32(3-i) {
			t.Fatalf("burst hit %d: %s remaining %d", i, r.OverallCode, r.Statuses[0].LimitRemaining)
		}
	}
	r := hit()
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("5th: %s", r.OverallCode)
	}
	if d := r.Statuses[0].DurationUntilReset.AsDuration(); d != 500*time.Millisecond {
		t.Fatalf("next token in %s, want 500ms", d)
	}
	// 2 per second refill: after 500ms exactly one more.
	clk.Advance(500 * time.Millisecond)
	if c := hit().OverallCode; c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("after refill: %s", c)
	}
	if c := hit().OverallCode; c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("refill gave more than one token: %s", c)
	}
	// After 10s the bucket is full again, but never above burst.
	clk.Advance(10 * time.Second)
	ok := 0
	for i := 0; i < 8; i++ {
		if hit().OverallCode == rlsv3.RateLimitResponse_OK {
			ok++
		}
	}
	if ok != 4 {
		t.Fatalf("full bucket gave %d, want burst 4", ok)
	}
}

func TestHitsAddendAndPeek(t *testing.T) {
	s, _ := newTestService(t, algoYAML, Options{})
	r := req("d", desc("fixed", "p"))
	r.HitsAddend = 2
	if resp := call(t, s, r); resp.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("request hits_addend 2: remaining %d", resp.Statuses[0].LimitRemaining)
	}
	peek := desc("fixed", "p")
	peek.HitsAddend = wrapperspb.UInt64(0)
	for i := 0; i < 3; i++ {
		resp := call(t, s, req("d", peek))
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 1 {
			t.Fatalf("peek %d: %s remaining %d", i, resp.OverallCode, resp.Statuses[0].LimitRemaining)
		}
	}
	two := desc("fixed", "p")
	two.HitsAddend = wrapperspb.UInt64(2)
	// Per-descriptor addend wins over the request's.
	r2 := req("d", two, desc("fixed", "q"))
	r2.HitsAddend = 1
	resp := call(t, s, r2)
	if resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK || resp.Statuses[1].LimitRemaining != 2 {
		t.Fatalf("mixed addends: %v", resp)
	}
	// Peeks at a fresh key create nothing.
	m := s.backend.(*Memory)
	before := m.Len()
	p2 := desc("fixed", "never")
	p2.HitsAddend = wrapperspb.UInt64(0)
	call(t, s, req("d", p2))
	if m.Len() != before {
		t.Fatalf("a peek created a counter")
	}
}

func TestLimitOverride(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestService(t, algoYAML, Options{Metrics: m})
	d := desc("anything", "x")
	d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR}
	if resp := call(t, s, req("d", d)); resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR {
		t.Fatalf("override first: %v", resp)
	}
	if resp := call(t, s, req("d", d)); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("override second: %v", resp)
	}
	if v := testutil.ToFloat64(m.totalHits.WithLabelValues("d", "override")); v != 2 {
		t.Fatalf("override total_hits = %v, want 2", v)
	}
}

func TestNoMatchIsOK(t *testing.T) {
	s, _ := newTestService(t, algoYAML, Options{})
	for _, r := range []*rlsv3.RateLimitRequest{req("unknown-domain", desc("fixed", "a")), req("d", desc("nope", "a")), req("d", desc("fixed", "a", "deeper", "b"))} {
		for i := 0; i < 5; i++ {
			resp := call(t, s, r)
			if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit != nil {
				t.Fatalf("%v: %v", r, resp)
			}
		}
	}
}

func TestInvalidRequests(t *testing.T) {
	s, _ := newTestService(t, algoYAML, Options{})
	many := make([]*ratelimitv3.RateLimitDescriptor, MaxDescriptors+1)
	for i := range many {
		many[i] = desc("fixed", "a")
	}
	// Keys come from the configuration and are bounded; values come from
	// clients and are not (see TestLongValueDoesNotVoidLimits).
	long := desc(strings.Repeat("k", MaxEntryBytes+1), "v")
	huge := desc("fixed", "a")
	huge.HitsAddend = wrapperspb.UInt64(math.MaxUint64)
	cases := map[string]*rlsv3.RateLimitRequest{
		"nil":           nil,
		"empty domain":  req("", desc("a", "b")),
		"no descriptor": req("d"),
		"empty entries": req("d", &ratelimitv3.RateLimitDescriptor{}),
		"empty key":     req("d", desc("", "v")),
		"too many":      req("d", many...),
		"long key":      req("d", long),
		"huge addend":   req("d", huge),
		"nil entry":     req("d", &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{nil}}),
	}
	for name, r := range cases {
		_, err := s.ShouldRateLimit(context.Background(), r)
		var ie *InvalidRequestError
		if !errors.As(err, &ie) {
			t.Errorf("%s: err = %v, want InvalidRequestError", name, err)
		}
	}
}

func TestUnlimitedShadowReplacesHeaders(t *testing.T) {
	const y = `
domain: d
descriptors:
  - key: free
    rate_limit: {unlimited: true}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: a
    rate_limit: {unit: minute, requests_per_unit: 10, name: a}
  - key: b
    rate_limit: {unit: minute, requests_per_unit: 5, replaces: [{name: a}]}
`
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestService(t, y, Options{ResponseHeaders: true, Metrics: m})
	resp := call(t, s, req("d", desc("free", "x")))
	if resp.Statuses[0].LimitRemaining != math.MaxUint32 || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("unlimited: %v", resp.Statuses[0])
	}
	call(t, s, req("d", desc("shadow", "x")))
	resp = call(t, s, req("d", desc("shadow", "x")))
	if resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("shadow: %v", resp)
	}
	if v := testutil.ToFloat64(m.shadowMode.WithLabelValues("d", "d.shadow")); v != 1 {
		t.Fatalf("shadow_mode metric = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.overLimit.WithLabelValues("d", "d.shadow")); v != 1 {
		t.Fatalf("over_limit metric = %v, want 1", v)
	}
	resp = call(t, s, req("d", desc("a", "1"), desc("b", "1")))
	if resp.Statuses[0].CurrentLimit != nil || resp.Statuses[1].CurrentLimit.GetRequestsPerUnit() != 5 {
		t.Fatalf("replaces: %v", resp.Statuses)
	}
	h := map[string]string{}
	for _, hv := range resp.ResponseHeadersToAdd {
		h[hv.Key] = hv.Value
	}
	if h["RateLimit-Limit"] != "5" || h["RateLimit-Remaining"] != "4" || h["RateLimit-Reset"] != "60" {
		t.Fatalf("headers: %v", h)
	}

	g, _ := newTestService(t, y, Options{GlobalShadowMode: true})
	call(t, g, req("d", desc("b", "z")))
	for i := 0; i < 10; i++ {
		if c := call(t, g, req("d", desc("b", "z"))).OverallCode; c != rlsv3.RateLimitResponse_OK {
			t.Fatalf("global shadow: %s", c)
		}
	}
	if st := call(t, g, req("d", desc("b", "z"))).Statuses[0]; st.Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("global shadow must still report the descriptor as over: %v", st)
	}
}

func TestFailureMode(t *testing.T) {
	broken := BackendFunc(func(context.Context, time.Time, []Hit, []Result) error { return errors.New("redis down") })
	for _, mode := range []FailureMode{FailAllow, FailDeny} {
		s, _ := newTestService(t, algoYAML+`
  - key: local
    rate_limit: {unit: hour, requests_per_unit: 1}
`, Options{Backend: broken, FailureMode: mode})
		resp := call(t, s, req("d", desc("fixed", "a")))
		want := rlsv3.RateLimitResponse_OK
		if mode == FailDeny {
			want = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp.OverallCode != want {
			t.Fatalf("mode %s: %s", mode, resp.OverallCode)
		}
	}
}

func TestLocalScopeNeverReachesBackend(t *testing.T) {
	var calls atomic.Int64
	shared := NewMemory()
	counting := BackendFunc(func(ctx context.Context, now time.Time, h []Hit, out []Result) error {
		calls.Add(1)
		return shared.Decide(ctx, now, h, out)
	})
	rules, err := Domain([]*SpecRules{{Spec: "s", Limits: []SpecLimit{{
		Route: "s/r", Name: "l", Descriptor: []DescriptorEntry{{Key: "route", Value: "s/r"}, {Key: "limit", Value: "l"}},
		Requests: 2, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "local",
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := NewRules([]*config.Domain{rules}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Backend: counting, Clock: newFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	s.SetRules(rr)
	var codes []string
	for i := 0; i < 3; i++ {
		codes = append(codes, call(t, s, req("gatehouse", desc("route", "s/r", "limit", "l"))).OverallCode.String())
	}
	if strings.Join(codes, ",") != "OK,OK,OVER_LIMIT" || calls.Load() != 0 {
		t.Fatalf("local: %v, backend calls %d", codes, calls.Load())
	}
}

// TestExactUnderConcurrency hammers one key per algorithm from many
// goroutines: exactly the allowed number of hits may pass.
func TestExactUnderConcurrency(t *testing.T) {
	s, _ := newTestService(t, `
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: hour, requests_per_unit: 500}
  - key: sliding
    rate_limit: {unit: hour, requests_per_unit: 500, algorithm: sliding-window}
  - key: bucket
    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: token-bucket, burst: 500}
`, Options{})
	for _, key := range []string{"fixed", "sliding", "bucket"} {
		var ok atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					resp, err := s.ShouldRateLimit(context.Background(), req("d", desc(key, "k")))
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
		if ok.Load() != 500 {
			t.Errorf("%s: %d of 1600 allowed, want exactly 500", key, ok.Load())
		}
	}
}

func TestKeyFormatMatchesEnvoyproxy(t *testing.T) {
	var got []string
	rec := BackendFunc(func(_ context.Context, _ time.Time, h []Hit, out []Result) error {
		for _, x := range h {
			got = append(got, x.Key)
		}
		return nil
	})
	s, clk := newTestService(t, `
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit: {unit: second, requests_per_unit: 500}
  - key: database
    rate_limit: {unit: minute, requests_per_unit: 500}
`, Options{Backend: rec})
	clk.Advance(90 * time.Second)
	call(t, s, req("mongo_cps", desc("database", "users"), desc("database", "default")))
	want := []string{
		fmt.Sprintf("mongo_cps_database_users_%d", t0.Unix()+90),
		fmt.Sprintf("mongo_cps_database_default_%d", t0.Unix()+60),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v, want %v", got, want)
	}
}

func wrapperspbUInt64(v uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(v) }

func asInvalid(err error, target **InvalidRequestError) bool { return errors.As(err, target) }

// TestLongUnitsKeys: week, month (30 days) and year (365 days) windows
// start where envoyproxy/ratelimit's UnitToDivider puts them.
func TestLongUnitsKeys(t *testing.T) {
	var got []string
	rec := BackendFunc(func(_ context.Context, _ time.Time, h []Hit, _ []Result) error {
		for _, x := range h {
			got = append(got, x.Key)
		}
		return nil
	})
	s, _ := newTestService(t, `
domain: d
descriptors:
  - key: w
    rate_limit: {unit: week, requests_per_unit: 1}
  - key: m
    rate_limit: {unit: MONTH, requests_per_unit: 1}
  - key: y
    rate_limit: {unit: year, requests_per_unit: 1}
`, Options{Backend: rec})
	resp := call(t, s, req("d", desc("w", "1"), desc("m", "1"), desc("y", "1")))
	now := t0.Unix()
	want := []string{
		fmt.Sprintf("d_w_1_%d", now/604800*604800),
		fmt.Sprintf("d_m_1_%d", now/2592000*2592000),
		fmt.Sprintf("d_y_1_%d", now/31536000*31536000),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v, want %v", got, want)
	}
	units := []rlsv3.RateLimitResponse_RateLimit_Unit{rlsv3.RateLimitResponse_RateLimit_WEEK, rlsv3.RateLimitResponse_RateLimit_MONTH, rlsv3.RateLimitResponse_RateLimit_YEAR}
	for i, u := range units {
		if resp.Statuses[i].CurrentLimit.GetUnit() != u {
			t.Errorf("status %d unit %s, want %s", i, resp.Statuses[i].CurrentLimit.GetUnit(), u)
		}
	}
}

// TestShareThreshold: values matched by a share_threshold wildcard count
// against one counter; without it each value has its own.
func TestShareThreshold(t *testing.T) {
	var keys []string
	mem := NewMemory()
	rec := BackendFunc(func(ctx context.Context, now time.Time, h []Hit, out []Result) error {
		for _, x := range h {
			keys = append(keys, x.Key)
		}
		return mem.Decide(ctx, now, h, out)
	})
	s, _ := newTestService(t, `
domain: d
descriptors:
  - key: file
    value: files*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: tenant
    value: t-*
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 1}
  - key: path
    value: /api/*
    rate_limit: {unit: hour, requests_per_unit: 1}
`, Options{Backend: rec})
	var codes []string
	for _, v := range []string{"files/a", "files/b", "files/c"} {
		codes = append(codes, call(t, s, req("d", desc("file", v))).OverallCode.String())
	}
	for _, v := range []string{"/api/a", "/api/b"} {
		codes = append(codes, call(t, s, req("d", desc("path", v))).OverallCode.String())
	}
	codes = append(codes, call(t, s, req("d", desc("tenant", "t-1", "user", "u"))).OverallCode.String())
	codes = append(codes, call(t, s, req("d", desc("tenant", "t-2", "user", "u"))).OverallCode.String())
	if got := strings.Join(codes, ","); got != "OK,OK,OVER_LIMIT,OK,OK,OK,OVER_LIMIT" {
		t.Fatalf("codes %s", got)
	}
	hour := t0.Unix() / 3600 * 3600
	for _, want := range []string{fmt.Sprintf("d_file_files*_%d", hour), fmt.Sprintf("d_path_/api/b_%d", hour), fmt.Sprintf("d_tenant_t-*_user_u_%d", hour)} {
		found := false
		for _, k := range keys {
			found = found || k == want
		}
		if !found {
			t.Errorf("no key %q among %v", want, keys)
		}
	}
}

// TestScratchReuse: a pooled call's share_threshold values never leak into
// the next call's keys (an override reuses the slot).
func TestScratchReuse(t *testing.T) {
	var keys []string
	rec := BackendFunc(func(_ context.Context, _ time.Time, h []Hit, _ []Result) error {
		for _, x := range h {
			keys = append(keys, x.Key)
		}
		return nil
	})
	s, _ := newTestService(t, `
domain: d
descriptors:
  - key: file
    value: files*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 2}
`, Options{Backend: rec})
	override := desc("file", "files/x")
	override.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5, Unit: typev3.RateLimitUnit_HOUR}
	for i := 0; i < 50; i++ {
		call(t, s, req("d", desc("file", "files/a")))
		call(t, s, req("d", override))
	}
	for i, k := range keys {
		if i%2 == 1 && !strings.HasPrefix(k, "d_file_files/x_") {
			t.Fatalf("override key %q took the shared pattern of an earlier call", k)
		}
	}
}
