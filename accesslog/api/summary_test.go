package api_test

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// TestSummaryOneRoundTrip: /v1/summary answers the total, denied and
// rate-limited counts, the histogram and the top-N lists of one filter
// (prefix, class and negation included) in one request, and they agree
// with the filter applied in Go.
func TestSummaryOneRoundTrip(t *testing.T) {
	now := time.Now().UTC()
	recs := accesslogtest.RandomRecords(11, 2000, now.Add(-50*time.Minute), 40*time.Minute)
	base := serveAPI(t, storeWith(t, recs), telemetry.ServerLimits{})
	for _, q := range []string{"status=4xx", "route=svc1/*&decision=!deny", "status=!200"} {
		v, _ := url.ParseQuery(q + "&since=1h")
		f, err := accesslog.ParseFilter(v, now.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var want, denied, limited int64
		routes := map[string]int64{}
		for i := range recs {
			if accesslogtest.Match(f, &recs[i]) {
				want++
				routes[recs[i].Route]++
				if recs[i].Denied() {
					denied++
				}
				if recs[i].Status == 429 {
					limited++
				}
			}
		}
		if want == 0 || want == int64(len(recs)) {
			t.Fatalf("%s: %d of %d rows match; the query must separate", q, want, len(recs))
		}
		resp, err := get(t, base+"/v1/summary?"+q+"&since=1h&top=route,decision&top_limit=100")
		if err != nil {
			t.Fatal(err)
		}
		var s api.SummaryResponse
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", q, resp.StatusCode, err)
		}
		if s.Total != want || s.Denied != denied || s.Limited != limited {
			t.Errorf("%s: total/denied/limited %d/%d/%d, want %d/%d/%d", q, s.Total, s.Denied, s.Limited, want, denied, limited)
		}
		var inBuckets int64
		for _, b := range s.Buckets {
			inBuckets += b.Count
		}
		if inBuckets != want || len(s.Buckets) == 0 {
			t.Errorf("%s: %d buckets hold %d rows, want %d", q, len(s.Buckets), inBuckets, want)
		}
		if len(s.Top["route"]) != len(routes) {
			t.Errorf("%s: top routes %d, want %d", q, len(s.Top["route"]), len(routes))
		}
		for _, g := range s.Top["route"] {
			if routes[g.Key] != g.Count {
				t.Errorf("%s: route %s count %d, want %d", q, g.Key, g.Count, routes[g.Key])
			}
		}
		if _, ok := s.Top["decision"]; !ok || len(s.Top) != 2 {
			t.Errorf("%s: top lists %v", q, s.Top)
		}
	}
}

// TestSummaryRejectsBadParameters: each problem is named with its
// parameter; nothing is queried.
func TestSummaryRejectsBadParameters(t *testing.T) {
	recs := accesslogtest.RandomRecords(12, 10, time.Now().UTC().Add(-time.Hour), time.Minute)
	base := serveAPI(t, storeWith(t, recs), telemetry.ServerLimits{})
	for q, want := range map[string]string{
		"top=route,headers": `top[1]: \"headers\" is not one of`,
		"top_limit=0":       "top_limit",
		"limit=5":           "no limit or cursor",
		"status=4xy":        "status",
		"bucket=1ms":        "bucket",
	} {
		resp, err := get(t, base+"/v1/summary?"+q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s, want 400 naming %q", q, resp.StatusCode, b, want)
		}
	}
}
