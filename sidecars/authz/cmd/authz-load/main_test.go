package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/authz"
)

func client(t *testing.T, addr string) authv3.AuthorizationClient {
	t.Helper()
	return authv3.NewAuthorizationClient(testenv.Dial(t, addr))
}

type addrs struct{ grpc, admin string }

// startSidecar runs the authz sidecar on dir's specs (no polling) on
// 127.0.0.1:0; it stops at s.Stop or cleanup.
func startSidecar(t *testing.T, dir string) (*testenv.Served, addrs) {
	t.Helper()
	ready := make(chan addrs, 1)
	cfg := authzsidecar.Config{SpecDir: dir, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		SpecPoll: -1, Ready: func(g, a net.Addr) { ready <- addrs{g.String(), a.String()} }}
	s := testenv.Serve(t, "sidecar", 15*time.Second, func(ctx context.Context) error { return authzsidecar.Run(ctx, cfg) })
	return s, testenv.AwaitReady(t, s, ready, 10*time.Second)
}

// The load generator's workload is answered as it expects by the real
// sidecar (valid → allowed, invalid → 401), and it counts what it sends.
func TestLoadAgainstTheSidecarAndTheFloor(t *testing.T) {
	dir := t.TempDir()
	w, err := newWorkload(dir, 40, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, a := startSidecar(t, dir)
	sidecar := a.grpc
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := telemetry.NewGRPCServer(slog.New(slog.DiscardHandler), authzsidecar.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs.Server, noop{})
	noopDone := make(chan error, 1)
	go func() { noopDone <- gs.Serve(ctx, l, time.Second) }()

	c := config{concurrency: 4, maxRequests: 400}
	res, err := load(c, w, []authv3.AuthorizationClient{client(t, sidecar)}, 5*time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests < 400 || res.requests > 400+int64(c.concurrency) {
		t.Fatalf("requests = %d, want 400 (bounded by -max-requests)", res.requests)
	}
	if res.wrong != 0 || res.allowed == 0 || res.denied == 0 || res.denied401 != res.denied {
		t.Fatalf("sidecar answers: %+v", res)
	}
	res, err = load(c, w, []authv3.AuthorizationClient{client(t, l.Addr().String())}, 5*time.Second, false)
	if err != nil || res.allowed != res.requests {
		t.Fatalf("floor: %+v %v", res, err)
	}
	s.Stop()
	cancel()
	<-noopDone
}

// The fresh-token workload: every token is distinct and sent once, the
// pool is used up exactly, the real sidecar answers each as expected, and
// its token cache, read from its /metrics as the bench reads it, never
// answers one of them (no hit, no refusal hit): each Check verified or
// refused a token it had not seen.
func TestFreshTokensAreNewToTheSidecar(t *testing.T) {
	dir := t.TempDir()
	w, err := newWorkload(dir, 40, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	s, a := startSidecar(t, dir)
	cl := []authv3.AuthorizationClient{client(t, a.grpc)}
	scrape := func() cacheLookups {
		t.Helper()
		l, err := scrapeCacheLookups("http://" + a.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	c := config{concurrency: 4, maxRequests: 1_000_000}
	// The reused workload first: its repeats are cache hits, so the
	// scrape sees hits when there are some.
	if _, err := load(config{concurrency: 4, maxRequests: 1000}, w, cl, 5*time.Second, true); err != nil {
		t.Fatal(err)
	}
	before := scrape()
	if before.hit == 0 {
		t.Fatalf("the reused workload made no cache hit: %+v", before)
	}

	const n = 120
	pools := []*freshPool{w.freshPool(n, 0), w.freshPool(n, 1)}
	seen := map[string]bool{}
	bad := 0
	for _, p := range pools {
		for i, r := range p.reqs {
			tok := r.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]
			if seen[tok] {
				t.Fatalf("request %d repeats a token", i)
			}
			seen[tok] = true
			if p.bad[i] {
				bad++
			}
		}
	}
	for _, r := range append(w.valid, w.invalid...) {
		if seen[r.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]] {
			t.Fatal("a fresh token is one of the reused workload's")
		}
	}
	if bad == 0 || bad == 2*n {
		t.Fatalf("%d of %d fresh tokens invalid, want about 20%%", bad, 2*n)
	}

	res, err := load(c, pools[0], cl, 30*time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != n || res.wrong != 0 || res.denied == 0 || res.allowed == 0 || res.denied401 != res.denied {
		t.Fatalf("fresh pool of %d: %+v", n, res)
	}
	after := scrape()
	if after.hit != before.hit || after.refusalHit != before.refusalHit {
		t.Fatalf("fresh tokens hit the token cache: before %+v, after %+v", before, after)
	}
	if after.miss-before.miss < n*3/4 {
		t.Fatalf("%d cache misses for %d fresh tokens: they did not reach verification", after.miss-before.miss, n)
	}
	// A used-up pool sends nothing more.
	if res, err := load(c, pools[0], cl, 5*time.Second, true); err == nil || res.requests != 0 {
		t.Fatalf("used-up pool: %+v, %v; want no request", res, err)
	}
	s.Stop()
}

func TestCombineTakesMedians(t *testing.T) {
	r := combine([]result{
		{requests: 10, elapsed: time.Second, cpu: 10 * time.Millisecond, p50: 1 * time.Millisecond, p99: 9 * time.Millisecond},
		{requests: 30, elapsed: time.Second, cpu: 30 * time.Millisecond, p50: 3 * time.Millisecond, p99: 7 * time.Millisecond},
		{requests: 20, elapsed: time.Second, cpu: 20 * time.Millisecond, p50: 2 * time.Millisecond, p99: 8 * time.Millisecond},
	})
	if r.requests != 60 || r.p50 != 2*time.Millisecond || r.p99 != 8*time.Millisecond || r.cpuPerCheck() != 1000 || r.rps() != 20 {
		t.Fatalf("combined: %+v cpu/check %v rps %v", r, r.cpuPerCheck(), r.rps())
	}
}
