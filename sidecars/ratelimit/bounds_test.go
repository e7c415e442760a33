package ratelimitsidecar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

const boundsSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: t}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  routes:
    - name: login
      match: {path: /login}
      upstream: api
      rateLimits:
        - {name: per-user, by: [header.x-user], limit: 5/minute, onFailure: deny}
        - {name: per-path, by: [request.path], limit: 5/minute}
`

// TestMaxCountersAndOnFailure runs the sidecar with --max-counters 4 and
// a spec whose per-user limit says onFailure: deny: once four counters
// live, a new user is refused (fail closed) while a new path passes (the
// sidecar's --failure-mode allow), both counted on /metrics; a 5 KB value
// is answered, not refused.
func TestMaxCountersAndOnFailure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop.yaml"), []byte(boundsSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, Config{SpecDir: dir, MaxCounters: 4, FailureMode: "allow"})
	user := func(u string) rlsv3.RateLimitResponse_Code {
		return r.call(t, "gatehouse", "route", "shop/login", "limit", "per-user", "header.x-user", u).OverallCode
	}
	path := func(p string) rlsv3.RateLimitResponse_Code {
		return r.call(t, "gatehouse", "route", "shop/login", "limit", "per-path", "request.path", p).OverallCode
	}
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		if c := user(u); c != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%s: %s", u, c)
		}
	}
	if c := user("u5"); c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("a new user with the memory full and onFailure deny: %s", c)
	}
	if c := path("/login?x=" + strings.Repeat("y", 5000)); c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("a new path with the memory full and failure mode allow: %s", c)
	}
	if c := user("u1"); c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("an existing counter stopped counting: %s", c)
	}
	_, metrics := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics")
	for _, want := range []string{`gatehouse_ratelimit_memory_full_total{mode="deny"} 1`, `gatehouse_ratelimit_memory_full_total{mode="allow"} 1`, "gatehouse_ratelimit_memory_counters 4"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestMaxCountersRejectsNegative(t *testing.T) {
	if _, err := New(Config{SpecDir: t.TempDir(), MaxCounters: -1}); err == nil || !strings.Contains(err.Error(), "--max-counters") {
		t.Fatalf("New with --max-counters -1: %v", err)
	}
}
