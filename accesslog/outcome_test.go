package accesslog_test

import (
	"testing"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// TestOutcomesCountPerGroupVersionRoute: each record counts once under its
// (node group, config version, route), in the right outcome classes;
// records without a version count nothing; keys beyond the bound are
// dropped and counted; Take starts over.
func TestOutcomesCountPerGroupVersionRoute(t *testing.T) {
	o := accesslog.NewOutcomes(3)
	rec := func(group, version, route string, status uint32, flags string) *accesslog.Record {
		return &accesslog.Record{Kind: "http", NodeGroup: group, ConfigVersion: version, Route: route, Status: status, ResponseFlags: flags}
	}
	for _, r := range []*accesslog.Record{
		rec("canary", "v2", "a/r", 200, ""),
		rec("canary", "v2", "a/r", 503, "UF"),
		rec("canary", "v2", "a/r", 503, "UH"),
		rec("canary", "v2", "a/r", 504, "UT"),
		rec("canary", "v2", "a/r", 503, "URX"),
		rec("canary", "v2", "a/r", 401, "UAEX"),
		rec("canary", "v2", "a/r", 403, ""),
		rec("canary", "v2", "a/r", 429, "RL"),
		rec("canary", "v2", "a/r", 200, "RL"),
		rec("fleet", "v1", "a/r", 200, ""),
		rec("fleet", "", "a/r", 500, ""), // no version: not counted
		rec("fleet", "v1", "", 500, ""),  // no route: not counted
		rec("canary", "v2", "b/r", 200, ""),
		rec("canary", "v2", "c/r", 200, ""), // a fourth key: dropped
	} {
		o.Add(r)
	}
	got, dropped := o.Take()
	want := []accesslog.Outcome{
		{accesslog.OutcomeKey{NodeGroup: "canary", Version: "v2", Route: "a/r"}, accesslog.OutcomeCounts{Requests: 9, Status5xx: 4, UpstreamFailures: 4, AuthDenied: 2, RateLimited: 2}},
		{accesslog.OutcomeKey{NodeGroup: "canary", Version: "v2", Route: "b/r"}, accesslog.OutcomeCounts{Requests: 1}},
		{accesslog.OutcomeKey{NodeGroup: "fleet", Version: "v1", Route: "a/r"}, accesslog.OutcomeCounts{Requests: 1}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("outcome %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if dropped != 1 {
		t.Fatalf("dropped = %d, want 1", dropped)
	}
	if again, d := o.Take(); len(again) != 0 || d != 0 {
		t.Fatalf("Take did not start over: %v %d", again, d)
	}
}

// TestOutcomeKeysAreBounded: a config version or route longer than any the
// control plane makes (an ALS peer's custom tag, say) is not counted, so
// 4,096 keys cannot hold megabytes each.
func TestOutcomeKeysAreBounded(t *testing.T) {
	o := accesslog.NewOutcomes(0)
	long := string(make([]byte, accesslog.MaxOutcomeVersionLen+1))
	o.Add(&accesslog.Record{Kind: "http", NodeGroup: "g", ConfigVersion: long, Route: "a/r", Status: 200})
	o.Add(&accesslog.Record{Kind: "http", NodeGroup: "g", ConfigVersion: "v1", Route: string(make([]byte, accesslog.MaxOutcomeRouteLen+1)), Status: 200})
	o.Add(&accesslog.Record{Kind: "http", NodeGroup: "g", ConfigVersion: "0123456789abcdef", Route: "a/r", Status: 200})
	got, _ := o.Take()
	if len(got) != 1 || got[0].Version != "0123456789abcdef" {
		t.Fatalf("outcomes %+v: want only the record with a version of the control plane's size", got)
	}
}
