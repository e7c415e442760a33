// Command authz-load is the load generator behind `make bench-authz`. It
// starts two ext_authz gRPC servers as child processes on 127.0.0.1 — a
// do-nothing server that answers OK (the floor) and `gatehouse authz
// --spec-dir` with a generated spec — drives each with the same
// Envoy-shaped CheckRequests (1,000 distinct users, 20 % invalid tokens),
// and prints requests/s, p50/p99 latency and the server's CPU time per
// check, read from /proc/<pid>/stat, next to the floor. Gatehouse is
// measured twice: with the 1,250 tokens reused (its verified-token cache
// answers nearly every Check) and with fresh tokens, each signed for one
// request before the measurement starts and never sent before, so every
// Check verifies a signature; the sidecar's token-cache metrics are read
// around each measurement and the run fails if a fresh token hit the cache.
//
// The floor server uses the authz sidecar's gRPC server options, so only
// the work differs. Nothing may import this package.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/benchproc"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/sidecars/authz"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-noop" {
		if err := serveNoop(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "authz-load serve-noop:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "authz-load:", err)
		os.Exit(1)
	}
}

// noop answers every Check with OK and does nothing else.
type noop struct {
	authv3.UnimplementedAuthorizationServer
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

func serveNoop(args []string) error {
	fs := flag.NewFlagSet("serve-noop", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := telemetry.SignalContext(context.Background())
	defer stop()
	// The same server options as the authz sidecar, so only the work differs.
	gs := telemetry.NewGRPCServer(slog.New(slog.DiscardHandler), authzsidecar.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs.Server, noop{})
	return gs.ListenAndServe(ctx, *addr)
}

type config struct {
	gatehouse   string
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	conns       int
	users       int
	invalid     float64
	maxRequests int64
	rounds      int
	fresh       int
}

func run() error {
	var c config
	flag.StringVar(&c.gatehouse, "gatehouse", "bin/gatehouse", "path of the gatehouse binary")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured load per server and round")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	flag.IntVar(&c.concurrency, "concurrency", 32, "concurrent in-flight Checks")
	flag.IntVar(&c.conns, "conns", 4, "gRPC connections (Envoy uses a few per worker)")
	flag.IntVar(&c.users, "users", 1000, "distinct users (tokens)")
	flag.Float64Var(&c.invalid, "invalid", 0.2, "share of requests with an invalid token")
	flag.Int64Var(&c.maxRequests, "max-requests", 2_000_000, "stop a measurement after this many requests")
	flag.IntVar(&c.rounds, "rounds", 2, "measurement rounds (servers alternate each round)")
	flag.IntVar(&c.fresh, "fresh", 20000, "fresh tokens per round for the never-seen-token workload, signed before the measurements (0: skip it); its measurement ends when they are used up")
	flag.Parse()
	if c.duration <= 0 || c.duration > 10*time.Minute || c.concurrency < 1 || c.conns < 1 || c.users < 1 || c.invalid < 0 || c.invalid >= 1 || c.rounds < 1 || c.fresh < 0 || c.fresh > 1_000_000 {
		return errors.New("flags out of range")
	}

	dir, err := os.MkdirTemp("", "authz-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := newWorkload(dir, c.users, c.invalid)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	noopAddr, gateAddr, adminAddr := freeAddr(), freeAddr(), freeAddr()
	noopProc, err := start(self, "serve-noop", "-addr", noopAddr)
	if err != nil {
		return err
	}
	defer noopProc.stop()
	gateProc, err := start(c.gatehouse, "authz", "--grpc-addr", gateAddr, "--admin-addr", adminAddr,
		"--spec-dir", dir, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer gateProc.stop()
	for _, s := range []struct{ addr, svc string }{{noopAddr, ""}, {gateAddr, "envoy.service.auth.v3.Authorization"}} {
		if err := waitServing(s.addr, s.svc); err != nil {
			return err
		}
	}

	fmt.Printf("authz-load: %d users, %.0f%% invalid tokens, %d in flight over %d connections, %s per measurement, %d rounds\n",
		c.users, c.invalid*100, c.concurrency, c.conns, c.duration, c.rounds)
	// Fresh tokens are signed now, before any measurement, so the
	// generator's signing is in no measured window.
	var pools []*freshPool
	if c.fresh > 0 {
		t0 := time.Now()
		for r := 0; r < c.rounds; r++ {
			pools = append(pools, w.freshPool(c.fresh, r))
		}
		fmt.Printf("authz-load: signed %d fresh tokens (%d per round, each sent once) in %s\n",
			c.fresh*c.rounds, c.fresh, time.Since(t0).Round(time.Millisecond))
	}
	const (
		floorName  = "noop (floor)"
		cachedName = "gatehouse (cached tokens)"
		freshName  = "gatehouse (fresh tokens)"
	)
	scrape := func() (cacheLookups, error) { return scrapeCacheLookups("http://" + adminAddr + "/metrics") }
	results := map[string][]result{}
	for r := 0; r < c.rounds; r++ {
		type target struct {
			name string
			addr string
			p    *proc
			src  requestSource
		}
		order := []target{{floorName, noopAddr, noopProc, w}, {cachedName, gateAddr, gateProc, w}}
		if c.fresh > 0 {
			order = append(order, target{freshName, gateAddr, gateProc, pools[r]})
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			var lookups func() (cacheLookups, error)
			if s.addr == gateAddr {
				lookups = scrape
			}
			res, err := measure(c, w, s.src, s.addr, s.p, s.addr == gateAddr, lookups)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if s.name == freshName && res.cache.hit+res.cache.refusalHit > 0 {
				return fmt.Errorf("%s: %d token-cache hits; every token of this workload must be new to the sidecar", s.name, res.cache.hit+res.cache.refusalHit)
			}
			results[s.name] = append(results[s.name], res)
		}
	}
	floor := combine(results[floorName])
	rows := []string{floorName, cachedName}
	if c.fresh > 0 {
		rows = append(rows, freshName)
	}
	fmt.Printf("\n%-26s %10s %10s %9s %9s %14s %8s\n", "server", "requests", "req/s", "p50", "p99", "cpu µs/check", "vs floor")
	for _, name := range rows {
		r := combine(results[name])
		fmt.Printf("%-26s %10d %10.0f %9s %9s %14.1f %7.2fx\n", name, r.requests, r.rps(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.cpuPerCheck(), r.cpuPerCheck()/floor.cpuPerCheck())
	}
	wrong := int64(0)
	for _, name := range rows[1:] {
		g := combine(results[name])
		fmt.Printf("\n%s answers: %d allowed, %d denied (401: %d, 403: %d); wrong answers: %d; token cache: %d hits, %d refusal hits, %d misses",
			name, g.allowed, g.denied, g.denied401, g.denied403, g.wrong, g.cache.hit, g.cache.refusalHit, g.cache.miss)
		wrong += g.wrong
	}
	fmt.Println()
	if wrong > 0 {
		return fmt.Errorf("%d wrong answers", wrong)
	}
	return nil
}

// workload is the set of Envoy-shaped requests: valid tokens of distinct
// users and invalid ones of several kinds.
type workload struct {
	valid   []*authv3.CheckRequest
	invalid []*authv3.CheckRequest
	share   float64

	key, foreign *authntest.Key             // ours (in the spec's JWKS) and someone else's with our kid
	claims       func(u int) map[string]any // a valid token's claims for user u
	users        int
}

// requestSource hands the load loop its requests.
type requestSource interface {
	// next is a request and whether its token is invalid; ok is false
	// once the source is used up.
	next(rng *rand.Rand) (req *authv3.CheckRequest, bad, ok bool)
}

// next picks a random request of the reused tokens (never used up).
func (w *workload) next(rng *rand.Rand) (*authv3.CheckRequest, bool, bool) {
	if rng.Float64() < w.share {
		return w.invalid[rng.IntN(len(w.invalid))], true, true
	}
	return w.valid[rng.IntN(len(w.valid))], false, true
}

// freshPool is requests whose tokens were each signed for that request
// alone (a unique jti): every Check carries a token the sidecar has not
// seen, so it verifies a signature (or refuses a new bad token) each time.
// Each request is sent once, in order.
type freshPool struct {
	reqs []*authv3.CheckRequest
	bad  []bool
	pos  atomic.Int64
}

func (p *freshPool) next(*rand.Rand) (*authv3.CheckRequest, bool, bool) {
	i := p.pos.Add(1) - 1
	if i >= int64(len(p.reqs)) {
		return nil, false, false
	}
	return p.reqs[i], p.bad[i], true
}

// freshPool signs n new tokens (round tells rounds apart), the same share
// invalid as the reused workload and of the same kinds, on every CPU.
func (w *workload) freshPool(n, round int) *freshPool {
	p := &freshPool{reqs: make([]*authv3.CheckRequest, n), bad: make([]bool, n)}
	rng := rand.New(rand.NewPCG(uint64(round), 0x6672657368))
	for i := range p.bad {
		p.bad[i] = rng.Float64() < w.share
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				u := i % w.users
				c := w.claims(u)
				c["jti"] = fmt.Sprintf("r%d-%d", round, i)
				tok := ""
				switch {
				case !p.bad[i]:
					tok = w.key.Sign(c, nil)
				case i%4 == 0: // expired
					c["exp"] = time.Now().Add(-time.Hour).Unix()
					tok = w.key.Sign(c, nil)
				case i%4 == 1: // signed by someone else with our kid
					tok = w.foreign.Sign(c, nil)
				case i%4 == 2: // wrong audience
					c["aud"] = "other"
					tok = w.key.Sign(c, nil)
				default: // garbage
					tok = fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.r%d-%d.!!", round, i)
				}
				p.reqs[i] = envoyRequest(tok, u)
			}
		}()
	}
	wg.Wait()
	return p
}

const issuer = "https://idp.bench/"

func newWorkload(dir string, users int, invalidShare float64) (*workload, error) {
	k := authntest.NewRSA("bench-1", 2048)
	spec := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: bench, team: perf}
spec:
  hosts: [api.bench.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt:
      - name: corp
        issuer: ` + issuer + `
        audiences: [bench]
        jwks: '` + string(authntest.JWKS(k)) + `'
        algorithms: [RS256]
        forwardClaims: {sub: x-user-id}
  routes:
    - name: api
      match: {pathPrefix: /api}
      upstream: api
      auth:
        anyOf: [corp]
        rules:
          - {allow: false, when: 'request.ip.startsWith("203.0.113.")'}
          - {allow: true, scopes: ["api:read"]}
          - {allow: true, claims: {groups: admins}}
      rateLimits:
        - {name: per-tenant, by: [identity.claim.tenant], limit: 1000/second}
`
	if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(spec), 0o600); err != nil {
		return nil, err
	}
	exp := time.Now().Add(2 * time.Hour).Unix()
	claims := func(u int) map[string]any {
		return map[string]any{"iss": issuer, "aud": "bench", "sub": "user-" + strconv.Itoa(u), "exp": exp,
			"iat": time.Now().Add(-time.Minute).Unix(), "scope": "api:read profile", "tenant": "t-" + strconv.Itoa(u%50),
			"email": "user-" + strconv.Itoa(u) + "@bench.example.com"}
	}
	foreign := authntest.NewRSA("bench-1", 2048)
	w := &workload{share: invalidShare, key: k, foreign: foreign, claims: claims, users: users}
	for u := 0; u < users; u++ {
		w.valid = append(w.valid, envoyRequest(k.Sign(claims(u), nil), u))
	}
	nInvalid := users / 4
	if nInvalid < 4 {
		nInvalid = 4
	}
	for i := 0; i < nInvalid; i++ {
		c := claims(users + i)
		var tok string
		switch i % 4 {
		case 0: // expired
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			tok = k.Sign(c, nil)
		case 1: // signed by someone else with our kid
			tok = foreign.Sign(c, nil)
		case 2: // wrong audience
			c["aud"] = "other"
			tok = k.Sign(c, nil)
		case 3: // garbage
			tok = "eyJhbGciOiJSUzI1NiJ9." + strconv.Itoa(i) + ".!!"
		}
		w.invalid = append(w.invalid, envoyRequest(tok, users+i))
	}
	return w, nil
}

// envoyRequest is shaped like what Envoy's ext_authz filter sends.
func envoyRequest(tok string, u int) *authv3.CheckRequest {
	ip := fmt.Sprintf("10.%d.%d.%d", u/65536%256, u/256%256, u%256)
	path := "/api/orders/" + strconv.Itoa(u%97) + "?page=2"
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(30000 + u%30000)}}}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 443}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: strconv.Itoa(u), Method: "GET", Path: path, Host: "api.bench.example.com", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": "api.bench.example.com", ":method": "GET", ":path": path, ":scheme": "https",
				"authorization": "Bearer " + tok, "user-agent": "bench/1.0", "accept": "application/json",
				"x-request-id": fmt.Sprintf("%08x-bench", u), "x-forwarded-for": ip, "x-forwarded-proto": "https",
			},
		}},
		ContextExtensions: map[string]string{contract.ContextRoute: "bench/api", contract.ContextRevision: "r1"},
	}}
}

type result struct {
	requests                              int64
	elapsed                               time.Duration
	cpu                                   time.Duration
	p50, p99                              time.Duration
	allowed, denied, denied401, denied403 int64
	wrong                                 int64
	cache                                 cacheLookups // the sidecar's token-cache lookups in the window
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }
func (r result) cpuPerCheck() float64 {
	return float64(r.cpu.Microseconds()) / float64(r.requests)
}

func combine(rs []result) result {
	var out result
	var p50, p99 []time.Duration
	for _, r := range rs {
		out.requests += r.requests
		out.elapsed += r.elapsed
		out.cpu += r.cpu
		out.allowed += r.allowed
		out.denied += r.denied
		out.denied401 += r.denied401
		out.denied403 += r.denied403
		out.wrong += r.wrong
		out.cache.hit += r.cache.hit
		out.cache.refusalHit += r.cache.refusalHit
		out.cache.miss += r.cache.miss
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
	}
	slices.Sort(p50)
	slices.Sort(p99)
	out.p50, out.p99 = p50[len(p50)/2], p99[len(p99)/2]
	return out
}

// measure warms up with the reused workload w, then measures src. With
// lookups set, the server's token-cache lookups are read around the
// measured window.
func measure(c config, w *workload, src requestSource, addr string, p *proc, check bool, lookups func() (cacheLookups, error)) (result, error) {
	var clients []authv3.AuthorizationClient
	for i := 0; i < c.conns; i++ {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		defer conn.Close()
		clients = append(clients, authv3.NewAuthorizationClient(conn))
	}
	// Warm up: connections, caches, JIT-free but GC-sized heaps.
	if _, err := load(c, w, clients, c.warmup, false); err != nil {
		return result{}, err
	}
	var l0 cacheLookups
	if lookups != nil {
		var err error
		if l0, err = lookups(); err != nil {
			return result{}, err
		}
	}
	cpu0, err := p.CPU()
	if err != nil {
		return result{}, err
	}
	res, err := load(c, src, clients, c.duration, check)
	if err != nil {
		return result{}, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return result{}, err
	}
	res.cpu = cpu1 - cpu0
	if lookups != nil {
		l1, err := lookups()
		if err != nil {
			return result{}, err
		}
		res.cache = cacheLookups{hit: l1.hit - l0.hit, refusalHit: l1.refusalHit - l0.refusalHit, miss: l1.miss - l0.miss}
	}
	return res, nil
}

// cacheLookups are the authz sidecar's verified-token cache lookups
// (gatehouse_authn_token_cache_lookups_total) by result.
type cacheLookups struct{ hit, refusalHit, miss int64 }

// scrapeCacheLookups reads the token-cache counters from a Prometheus text
// endpoint; a missing counter is an error (the workload could not be
// checked).
func scrapeCacheLookups(url string) (cacheLookups, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cacheLookups{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cacheLookups{}, fmt.Errorf("reading the sidecar's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cacheLookups{}, fmt.Errorf("reading the sidecar's metrics: %s: %s", url, resp.Status)
	}
	var l cacheLookups
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case `gatehouse_authn_token_cache_lookups_total{result="hit"}`:
			dst = &l.hit
		case `gatehouse_authn_token_cache_lookups_total{result="refusal_hit"}`:
			dst = &l.refusalHit
		case `gatehouse_authn_token_cache_lookups_total{result="miss"}`:
			dst = &l.miss
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return cacheLookups{}, fmt.Errorf("reading the sidecar's metrics: %s: %q", name, value)
		}
		*dst = int64(v)
		found++
	}
	if err := sc.Err(); err != nil {
		return cacheLookups{}, fmt.Errorf("reading the sidecar's metrics: %w", err)
	}
	if found != 3 {
		return cacheLookups{}, fmt.Errorf("reading the sidecar's metrics: %s has %d of the 3 gatehouse_authn_token_cache_lookups_total series", url, found)
	}
	return l, nil
}

// load sends src's requests from c.concurrency goroutines until d passes,
// c.maxRequests were answered or src is used up.
func load(c config, src requestSource, clients []authv3.AuthorizationClient, d time.Duration, check bool) (result, error) {
	// Calls carry no deadline (a gRPC deadline racing the end of the run
	// would count as an error); the loop stops at the end time instead.
	ctx := context.Background()
	var stopping atomic.Bool
	stopTimer := time.AfterFunc(d, func() { stopping.Store(true) })
	defer stopTimer.Stop()
	var (
		n, allowed, d401, d403, wrong atomic.Int64
		mu                            sync.Mutex
		lat                           []time.Duration
		firstErr                      error
		wg                            sync.WaitGroup
	)
	start := time.Now()
	for g := 0; g < c.concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(start.UnixNano())))
			client := clients[g%len(clients)]
			local := make([]time.Duration, 0, 4096)
			for !stopping.Load() && n.Load() < c.maxRequests {
				req, bad, ok := src.next(rng)
				if !ok {
					break
				}
				t := time.Now()
				resp, err := client.Check(ctx, req)
				el := time.Since(t)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				n.Add(1)
				local = append(local, el)
				if resp.GetOkResponse() != nil {
					allowed.Add(1)
					if check && bad {
						wrong.Add(1)
					}
					continue
				}
				switch resp.GetDeniedResponse().GetStatus().GetCode() {
				case 401:
					d401.Add(1)
				case 403:
					d403.Add(1)
				}
				if check && !bad {
					wrong.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return result{}, firstErr
	}
	if len(lat) == 0 {
		return result{}, errors.New("no request completed")
	}
	slices.Sort(lat)
	return result{
		requests: n.Load(), elapsed: elapsed,
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		allowed: allowed.Load(), denied: d401.Load() + d403.Load(), denied401: d401.Load(), denied403: d403.Load(),
		wrong: wrong.Load(),
	}, nil
}

// proc is a child server process; stop interrupts it and kills it after
// 10s.
type proc struct{ *benchproc.Proc }

func start(bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := benchproc.Start(bin, cmd)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

func (p *proc) stop() { p.Stop(os.Interrupt, 10*time.Second) }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitServing(addr, service string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server %s not serving %q after 15s: %v", addr, service, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
