package ratelimit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const quotaYAML = `
domain: d
descriptors:
  - key: q1
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: q2
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: plain
    rate_limit: {unit: hour, requests_per_unit: 5}
`

func codes(resp *rlsv3.RateLimitResponse) string {
	s := []string{resp.GetOverallCode().String()}
	for _, st := range resp.GetStatuses() {
		s = append(s, st.GetCode().String())
	}
	return strings.Join(s, " ")
}

// TestQuotaModeHead: quota_mode as envoyproxy/ratelimit's HEAD: an
// over-limit quota descriptor is OVER_LIMIT; the request is OVER_LIMIT
// when every quota descriptor is over, or a plain limit is; a quota over
// beside a quota within is OK. QUOTA_MODE makes every descriptor quota.
func TestQuotaModeHead(t *testing.T) {
	s, _ := newTestService(t, quotaYAML, Options{})
	steps := []struct {
		r    *rlsv3.RateLimitRequest
		want string
	}{
		{req("d", desc("q1", "a")), "OK OK"},
		{req("d", desc("q1", "a")), "OVER_LIMIT OVER_LIMIT"},
		{req("d", desc("q1", "a"), desc("q2", "a")), "OK OVER_LIMIT OK"},
		{req("d", desc("q1", "a"), desc("plain", "a")), "OVER_LIMIT OVER_LIMIT OK"},
		{req("d", desc("q2", "b"), desc("q2", "b"), desc("q2", "b"), desc("q2", "b")), "OK OK OK OK OVER_LIMIT"},
	}
	for i, st := range steps {
		if got := codes(call(t, s, st.r)); got != st.want {
			t.Fatalf("step %d: got %q, want %q", i, got, st.want)
		}
	}
	// QUOTA_MODE: the plain limit is a quota too; one descriptor without a
	// limit beside it counts as a quota within.
	g, _ := newTestService(t, quotaYAML, Options{GlobalQuotaMode: true})
	for i := 0; i < 5; i++ {
		call(t, g, req("d", desc("plain", "x")))
	}
	if got := codes(call(t, g, req("d", desc("plain", "x")))); got != "OVER_LIMIT OVER_LIMIT" {
		t.Fatalf("global quota, all over: %s", got)
	}
	if got := codes(call(t, g, req("d", desc("plain", "x"), desc("none", "x")))); got != "OK OVER_LIMIT OK" {
		t.Fatalf("global quota, one within: %s", got)
	}
}

func headers(resp *rlsv3.RateLimitResponse) map[string]string {
	h := map[string]string{}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		h[hv.GetKey()] = hv.GetValue()
	}
	return h
}

// TestResponseHeadersUpstream: the limit header is the plain
// requests_per_unit; names are configurable (LIMIT_*_HEADER); an over
// limit descriptor wins over one with less remaining; a shadow limit over
// reports remaining 0.
func TestResponseHeadersUpstream(t *testing.T) {
	y := `
domain: d
descriptors:
  - key: small
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: big
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
`
	s, clk := newTestService(t, y, Options{ResponseHeaders: true, LimitHeader: "X-Limit", RemainingHeader: "X-Remaining", ResetHeader: "X-Reset"})
	clk.Advance(15e9) // 45 s left in the minute
	want := map[string]string{"X-Limit": "2", "X-Remaining": "1", "X-Reset": "45"}
	if got := headers(call(t, s, req("d", desc("big", "a"), desc("small", "a")))); !cmp.Equal(got, want) {
		t.Fatalf("closest: %v, want %v", got, want)
	}
	call(t, s, req("d", desc("small", "a")))
	// small is over now: it wins although it is listed first.
	want = map[string]string{"X-Limit": "2", "X-Remaining": "0", "X-Reset": "45"}
	if got := headers(call(t, s, req("d", desc("small", "a"), desc("big", "b")))); !cmp.Equal(got, want) {
		t.Fatalf("over: %v, want %v", got, want)
	}
	call(t, s, req("d", desc("shadow", "a")))
	resp := call(t, s, req("d", desc("shadow", "a")))
	want = map[string]string{"X-Limit": "1", "X-Remaining": "0", "X-Reset": "1"}
	if got := headers(resp); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || !cmp.Equal(got, want) {
		t.Fatalf("shadow over: %s %v, want %v", resp.GetOverallCode(), got, want)
	}
	d, _ := newTestService(t, y, Options{ResponseHeaders: true})
	if got := headers(call(t, d, req("d", desc("big", "a")))); got["RateLimit-Limit"] != "10" || got["RateLimit-Remaining"] != "9" {
		t.Fatalf("default names: %v", got)
	}
}

// TestResponseDynamicMetadata: with RESPONSE_DYNAMIC_METADATA the answer
// carries the domain, the descriptors, the hits addend and the merged
// metadata of the limits that were not over; off, none.
func TestResponseDynamicMetadata(t *testing.T) {
	y := `
domain: d
descriptors:
  - key: k1
    metadata: {name: one, team: {owner: a}}
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: k2
    metadata: {team: {pager: b}, name: two}
    rate_limit: {unit: minute, requests_per_unit: 1}
`
	off, _ := newTestService(t, y, Options{})
	if md := call(t, off, req("d", desc("k1", "x"))).GetDynamicMetadata(); md != nil {
		t.Fatalf("metadata without the option: %v", md)
	}
	s, _ := newTestService(t, y, Options{ResponseDynamicMetadata: true})
	d2 := desc("k2", "y")
	d2.HitsAddend = wrapperspb.UInt64(1)
	r := req("d", desc("k1", "x"), d2)
	r.HitsAddend = 1
	got := compactJSON(t, call(t, s, r).GetDynamicMetadata())
	want := `{"descriptors":[{"entries":["k1=x"]},{"entries":["k2=y"],"hitsAddend":1}],"domain":"d","hitsAddend":1,` +
		`"metadata":{"name":"one","team":{"owner":"a","pager":"b"}}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// k2 is over now: only k1's metadata.
	got = compactJSON(t, call(t, s, r).GetDynamicMetadata())
	if !strings.Contains(got, `"metadata":{"name":"one","team":{"owner":"a"}}`) {
		t.Fatalf("over-limit metadata merged: %s", got)
	}
	// The config's metadata is not changed by merging.
	got = compactJSON(t, call(t, s, req("d", desc("k2", "z"))).GetDynamicMetadata())
	if !strings.Contains(got, `"metadata":{"name":"two","team":{"pager":"b"}}`) {
		t.Fatalf("config metadata changed: %s", got)
	}
}

// compactJSON is m as JSON without the spaces protojson adds at random.
func compactJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestDetailedMetricNames: detailed_metric and value_to_metric limits are
// counted under envoyproxy's stat names (request values in them, the
// wildcard kept for share_threshold), at most MaxDetailedSeries of them;
// BoundedMetricLabels keeps the config path.
func TestDetailedMetricNames(t *testing.T) {
	y := `
domain: d
descriptors:
  - key: key7
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 70}
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - key: endpoint
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 80}
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 60}
`
	for _, tc := range []struct {
		name    string
		o       Options
		names   []string
		overrun float64
	}{
		{name: "upstream", o: Options{}, names: []string{"d.key7_unspecified_value", "d.service_svc/*.endpoint_get", "d.route_api/v1.method"}},
		{name: "bounded", o: Options{BoundedMetricLabels: true}, names: []string{"d.key7", "d.service_svc/*.endpoint", "d.route.method"}},
		{name: "capped", o: Options{MaxDetailedSeries: 1}, names: []string{"d.key7_unspecified_value", "d.service_svc/*.endpoint", "d.route.method"}, overrun: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			tc.o.Metrics = m
			s, _ := newTestService(t, y, tc.o)
			call(t, s, req("d", desc("key7", "unspecified_value")))
			call(t, s, req("d", desc("service", "svc/user", "endpoint", "get")))
			call(t, s, req("d", desc("route", "api/v1", "method", "GET")))
			for _, n := range tc.names {
				if v := testutil.ToFloat64(m.totalHits.WithLabelValues("d", n)); v != 1 {
					t.Errorf("total_hits{rule=%q} = %v, want 1", n, v)
				}
			}
			if v := testutil.ToFloat64(m.detailedOverflow); v != tc.overrun {
				t.Errorf("overflow = %v, want %v", v, tc.overrun)
			}
		})
	}
	// A long value is named by its hash, as in counter keys.
	l := mustRules(t, y, nil).Lookup("d", desc("key7", strings.Repeat("v", 500)))
	if n := l.MetricName("d", desc("key7", strings.Repeat("v", 500)), nil); n != "d.key7_"+HashedValue(strings.Repeat("v", 500)) {
		t.Fatalf("long value: %s", n)
	}
}
