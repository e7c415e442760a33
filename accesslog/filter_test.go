package accesslog

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

var filterCases = []struct {
	q       string
	wantErr string
	check   func(Filter) bool
}{
	{q: "", check: func(f Filter) bool { return f.Limit == DefaultLimit && f.Until.Sub(f.Since) == 24*time.Hour }},
	{q: "since=1h&status=403&decision=deny", check: func(f Filter) bool {
		return f.Status == 403 && f.Decision == "deny" && f.Until.Sub(f.Since) == time.Hour
	}},
	{q: "since=7d&route=petstore/list-pets", check: func(f Filter) bool { return f.Route == "petstore/list-pets" && f.Until.Sub(f.Since) == 7*24*time.Hour }},
	{q: "since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z", check: func(f Filter) bool { return f.Since.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }},
	{q: "since=1767225600&until=1767312000", check: func(f Filter) bool { return f.Since.Unix() == 1767225600 }},
	{q: "client_ip=2001:db8::1", check: func(f Filter) bool { return f.ClientIP == "2001:db8::1" }},
	{q: "client_ip=2001:DB8:0::1", check: func(f Filter) bool { return f.ClientIP == "2001:db8::1" }},
	{q: "denied=true&limit=10000", check: func(f Filter) bool { return f.Denied != nil && *f.Denied && f.Limit == 10000 }},
	{q: "path_prefix=/pets&method=GET", check: func(f Filter) bool { return f.PathPrefix == "/pets" && f.Method == "GET" }},
	{q: "status=abc", wantErr: "status"},
	{q: "status=600", wantErr: "status"},
	{q: "limit=0", wantErr: "limit"},
	{q: "limit=10001", wantErr: "limit"},
	{q: "since=soon", wantErr: "since"},
	{q: "since=1h&until=2h", wantErr: "before"},
	{q: "since=500d", wantErr: "maximum"},
	{q: "client_ip=10.0.0", wantErr: "client_ip"},
	{q: "decision=perhaps", wantErr: "decision"},
	{q: "path_prefix=pets", wantErr: "path_prefix"},
	{q: "method=get", wantErr: "method"},
	{q: "denied=maybe", wantErr: "denied"},
	{q: "cursor=@@", wantErr: "cursor"},
	{q: "route=a&route=b", wantErr: "once"},
	{q: "drop=table", wantErr: "unknown parameter"},
	// The value syntax: prefix, negation, status classes.
	{q: "route=petstore/*", check: func(f Filter) bool {
		return f.Route == "" && len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "route", Value: "petstore/", Prefix: true}
	}},
	{q: "subject=!car", check: func(f Filter) bool {
		return f.Subject == "" && len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "subject", Value: "car", Not: true}
	}},
	{q: "status=4xx", check: func(f Filter) bool {
		return f.Status == 0 && len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "status", Class: 4}
	}},
	{q: "status=!5XX", check: func(f Filter) bool {
		return len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "status", Class: 5, Not: true}
	}},
	{q: "status=!404", check: func(f Filter) bool {
		return f.Status == 0 && len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "status", Value: "404", Not: true}
	}},
	{q: "decision=!allow", check: func(f Filter) bool {
		return f.Decision == "" && len(f.Conds) == 1 && f.Conds[0] == Cond{Column: "decision", Value: "allow", Not: true}
	}},
	{q: "rule=deny-*&provider=corp&client_ip=10.1*", check: func(f Filter) bool { return len(f.Conds) == 3 }},
	{q: "client_ip=!10.0.0.1", check: func(f Filter) bool { return len(f.Conds) == 1 && f.Conds[0].Not }},
	{q: "status=6xx", wantErr: "class (1xx-5xx)"},
	{q: "status=4x", wantErr: "status"},
	{q: "route=!", wantErr: "route: \"!\" has no value"},
	{q: "route=*", wantErr: "has no value"},
	{q: "route=a*b", wantErr: "only allowed at the end"},
	{q: "client_ip=!nonsense", wantErr: "client_ip"},
	{q: "decision=!maybe", wantErr: "decision"},
	{q: "path=items*", wantErr: "path: \"items\" must start with /"},
	{q: "method=!get", wantErr: "method"},
}

func TestParseFilter(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range filterCases {
		v, err := url.ParseQuery(c.q)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseFilter(v, now)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one naming %q", c.q, err, c.wantErr)
			}
			continue
		}
		if err != nil || !c.check(f) {
			t.Errorf("%q: %+v %v", c.q, f, err)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []Cursor{{}, {TimeMS: 1767225600123, Batch: 42, Index: 9999}, {TimeMS: -5, Batch: 1 << 60, Index: 1<<32 - 1}} {
		got, err := ParseCursor(c.String())
		if err != nil || got != c {
			t.Fatalf("%+v -> %q -> %+v %v", c, c.String(), got, err)
		}
	}
	if _, err := ParseCursor(Cursor{Batch: 1}.String() + "AA"); err == nil {
		t.Fatal("trailing bytes accepted")
	}
}

func TestParseStats(t *testing.T) {
	now := time.Now()
	if _, err := ParseStats(url.Values{}, now); err == nil || !strings.Contains(err.Error(), "group_by") {
		t.Fatalf("missing group_by: %v", err)
	}
	q, err := ParseStats(url.Values{"group_by": {"subject"}, "limit": {"50"}, "denied": {"true"}}, now)
	if err != nil || q.GroupBy != "subject" || q.Limit != 50 || !*q.Denied {
		t.Fatalf("%+v %v", q, err)
	}
	if _, err := ParseStats(url.Values{"group_by": {"headers"}}, now); err == nil {
		t.Fatal("group_by headers accepted")
	}
}

// FuzzParseFilter: any query string either fails with an error or gives a
// filter that is inside the language's bounds.
func FuzzParseFilter(f *testing.F) {
	for _, c := range filterCases {
		f.Add(c.q)
	}
	f.Add("cursor=" + Cursor{TimeMS: 1, Batch: 2, Index: 3}.String())
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, err := ParseFilter(v, now)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if !fl.Since.Before(fl.Until) || fl.Until.Sub(fl.Since) > maxRange {
			t.Fatalf("bad range %v..%v from %q", fl.Since, fl.Until, raw)
		}
		if fl.Limit < 1 || fl.Limit > MaxLimit {
			t.Fatalf("limit %d from %q", fl.Limit, raw)
		}
		if fl.Status != 0 && (fl.Status < 100 || fl.Status > 599) {
			t.Fatalf("status %d from %q", fl.Status, raw)
		}
		if fl.PathPrefix != "" && fl.PathPrefix[0] != '/' {
			t.Fatalf("path_prefix %q", fl.PathPrefix)
		}
		if fl.After != nil {
			if back, err := ParseCursor(fl.After.String()); err != nil || back != *fl.After {
				t.Fatalf("cursor does not round-trip: %+v", fl.After)
			}
		}
		if _, err := ParseStats(v, now); err != nil && err.Error() == "" {
			t.Fatal("empty stats error")
		}
	})
}
