package accesslogtest

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// Match is the filter language applied in Go, the reference the stores'
// SQL is tested against (time, cursor and limit are not looked at).
func Match(f accesslog.Filter, r *accesslog.Record) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if !eq(f.Route, r.Route) || !eq(f.Subject, r.Subject) || !eq(f.ClientIP, r.ClientIP) || !eq(f.Decision, r.Decision) ||
		!eq(f.Method, r.Method) || !eq(f.Node, r.Node) || !eq(f.RequestID, r.RequestID) || !eq(f.APIKeyID, r.APIKeyID) {
		return false
	}
	if f.PathPrefix != "" && !strings.HasPrefix(r.Path, f.PathPrefix) {
		return false
	}
	if f.Status != 0 && r.Status != f.Status {
		return false
	}
	if f.Denied != nil && *f.Denied != r.Denied() {
		return false
	}
	for _, c := range f.Conds {
		var ok bool
		switch {
		case c.Column == "status" && c.Class != 0:
			ok = r.Status/100 == c.Class
		case c.Column == "status":
			ok = strconv.FormatUint(uint64(r.Status), 10) == c.Value
		case c.Prefix:
			ok = strings.HasPrefix(column(r, c.Column), c.Value)
		default:
			ok = column(r, c.Column) == c.Value
		}
		if ok == c.Not {
			return false
		}
	}
	return true
}

func column(r *accesslog.Record, col string) string {
	switch col {
	case "route":
		return r.Route
	case "subject":
		return r.Subject
	case "client_ip":
		return r.ClientIP
	case "node":
		return r.Node
	case "node_group":
		return r.NodeGroup
	case "request_id":
		return r.RequestID
	case "apikey_id":
		return r.APIKeyID
	case "method":
		return r.Method
	case "authority":
		return r.Authority
	case "provider":
		return r.Provider
	case "auth_kind":
		return r.AuthKind
	case "rule":
		return r.Rule
	case "response_flags":
		return r.ResponseFlags
	case "upstream_cluster":
		return r.UpstreamCluster
	case "user_agent":
		return r.UserAgent
	case "path":
		return r.Path
	case "decision":
		return r.Decision
	}
	panic("accesslogtest: no column " + col)
}

// LanguageQueries are filter-language queries (beyond the time range)
// that together use prefix, negation and status classes on every kind of
// column; the store tests compare each against Match.
var LanguageQueries = []string{
	"route=svc1/*",
	"route=!svc1/*",
	"status=4xx",
	"status=!2xx",
	"status=!200",
	"decision=!allow",
	"subject=!user-7",
	"subject=user-1*",
	"client_ip=10.1*&status=4xx",
	"route=svc2/*&decision=!deny&method=!GET",
	"path=/items/1*&status=2xx",
	"authority=petstore*&subject=!user-1*",
}

// CheckLanguage runs LanguageQueries against s, which holds recs (all
// within the half hour before now), and compares Query, Stats and
// Histogram with Match.
func CheckLanguage(t testing.TB, s accesslog.Store, recs []accesslog.Record, now time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, q := range LanguageQueries {
		v, err := url.ParseQuery(q + "&since=1h&limit=10000")
		if err != nil {
			t.Fatal(err)
		}
		f, err := accesslog.ParseFilter(v, now.Add(time.Second))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		want, limited := 0, int64(0)
		for i := range recs {
			if Match(f, &recs[i]) {
				want++
				if recs[i].Status == 429 {
					limited++
				}
			}
		}
		if want == 0 || want == len(recs) {
			t.Fatalf("%s: the test data match %d of %d rows; pick a query that separates", q, want, len(recs))
		}
		got, err := s.Query(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if len(got) != want {
			t.Errorf("%s: query gives %d rows, Go gives %d", q, len(got), want)
		}
		for i := range got {
			if !Match(f, &got[i]) {
				t.Errorf("%s: row %s does not match", q, got[i].RequestID)
				break
			}
		}
		groups, err := s.Stats(ctx, accesslog.StatsQuery{Filter: f, GroupBy: "decision"})
		if err != nil {
			t.Fatalf("%s stats: %v", q, err)
		}
		var n int64
		for _, g := range groups {
			n += g.Count
		}
		if n != int64(want) {
			t.Errorf("%s: stats count %d, want %d", q, n, want)
		}
		hist, err := s.Histogram(ctx, f, time.Minute)
		if err != nil {
			t.Fatalf("%s histogram: %v", q, err)
		}
		n = 0
		var l int64
		for _, b := range hist {
			n += b.Count
			l += b.Limited
		}
		if n != int64(want) || l != limited {
			t.Errorf("%s: histogram count %d (limited %d), want %d (limited %d)", q, n, l, want, limited)
		}
	}
}
