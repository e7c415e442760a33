package redisstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
)

// TestParseURLErrorHidesPassword: a URL that does not parse is reported
// without its password (a *url.Error prints the whole URL).
func TestParseURLErrorHidesPassword(t *testing.T) {
	for _, raw := range []string{"redis://:p@ss w@h", "redis://u:p@ss%zz@h:6379", "redis://:p@ss\x7f@h"} {
		_, err := ParseURL(raw)
		if err == nil {
			t.Errorf("%q accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), "p@ss") || strings.Contains(err.Error(), "%zz") {
			t.Errorf("%q: error leaks the password: %v", raw, err)
		}
		if !strings.Contains(err.Error(), "redis url") {
			t.Errorf("%q: error does not say what failed: %v", raw, err)
		}
	}
	if _, err := New(Options{URL: "redis://:p@ss w@h"}); err == nil || strings.Contains(err.Error(), "p@ss") {
		t.Errorf("New: %v", err)
	}
}

// TestFullQueueAppliesLimitFailureMode: with a real redis-server paused
// (CLIENT PAUSE), the one worker stuck and the queue full, the next
// request is decided by each limit's failure mode at once: the limit with
// onFailure deny answers OVER_LIMIT, the other follows the service's
// failure mode (allow).
func TestFullQueueAppliesLimitFailureMode(t *testing.T) {
	r := testenv.StartRedis(t)
	st := newStore(t, Options{URL: "redis://" + r.Addr, Timeout: 3 * time.Second, Workers: 1, QueueSize: 1, CacheSize: -1})
	d, err := ratelimit.Domain([]*ratelimit.SpecRules{{Spec: "s", Limits: []ratelimit.SpecLimit{
		{Route: "s/login", Name: "strict", Descriptor: []ratelimit.DescriptorEntry{{Key: "route", Value: "s/login"}, {Key: "limit", Value: "strict"}},
			Requests: 100, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "shared", OnFailure: "deny"},
		{Route: "s/login", Name: "lax", Descriptor: []ratelimit.DescriptorEntry{{Key: "route", Value: "s/login"}, {Key: "limit", Value: "lax"}},
			Requests: 100, WindowSeconds: 60, Algorithm: "fixed-window", Scope: "shared"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err := ratelimit.NewRules([]*config.Domain{d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ratelimit.New(ratelimit.Options{Backend: st, BackendName: "redis", FailureMode: ratelimit.FailAllow})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetRules(rr)
	request := &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		desc("route", "s/login", "limit", "strict"), desc("route", "s/login", "limit", "lax")}}
	// Warm up: the script is loaded and a connection is open.
	if resp, err := svc.ShouldRateLimit(context.Background(), request); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("warm-up: %v %v", resp, err)
	}
	admin := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "2000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 2)
	go func() { _, err := svc.ShouldRateLimit(ctx, request); done <- err }() // the worker takes it and waits on Redis
	testenv.WaitFor(t, "an empty queue", 5*time.Second, func() bool { return len(st.queue) == 0 })
	time.Sleep(50 * time.Millisecond)
	go func() { _, err := svc.ShouldRateLimit(ctx, request); done <- err }() // it waits in the queue
	testenv.WaitFor(t, "one queued item", 5*time.Second, func() bool { return len(st.queue) == 1 })

	out := make([]ratelimit.Result, 1)
	lim := &ratelimit.Limit{Requests: 1, Window: time.Minute}
	if err := st.Decide(ctx, time.Now(), []ratelimit.Hit{{Key: "probe", Limit: lim, Addend: 1}}, out); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("queue not full: %v", err)
	}
	resp, err := svc.ShouldRateLimit(ctx, request)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK ||
		resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("full queue: %v; want strict OVER_LIMIT (onFailure deny), lax OK (service allow)", resp)
	}
	for i := 0; i < 2; i++ {
		<-done
	}
}
