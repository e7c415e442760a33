package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/internal/benchproc"
)

// benchConfig is the envoyproxy/ratelimit config both services load: a
// per-user limit high enough that every request does the full counting
// work (nothing is answered from an over-limit cache).
const benchConfig = `domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: 1000000000
`

// proc is a child process of the run; stop sends SIGTERM and kills it
// after 5s.
type proc struct{ *benchproc.Proc }

func (p *proc) stop() {
	if p != nil {
		p.Stop(syscall.SIGTERM, 5*time.Second)
	}
}

func start(name, logDir string, env []string, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := benchproc.Start(fmt.Sprintf("%s (%s)", name, bin), cmd)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

// waitGRPC waits until addr answers a gRPC health check or, for servers
// without one, accepts a ShouldRateLimit call.
func waitGRPC(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_, herr := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			conn.Close()
			if herr == nil || strings.Contains(herr.Error(), "Unimplemented") || strings.Contains(herr.Error(), "unknown service") {
				return nil
			}
			err = herr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not serving after %s: %v", addr, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitRedis(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis on %s did not answer", addr)
}

// respCmd sends one command to Redis and returns its reply (a simple or
// bulk string or an integer); an error reply is an error.
func respCmd(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case line == "":
		return "", fmt.Errorf("redis %s: empty reply to %s", addr, args[0])
	case line[0] == '-':
		return "", fmt.Errorf("redis %s: %s %s: %s", addr, args[0], strings.Join(args[1:], " "), line[1:])
	case line[0] == '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redis %s: bad bulk length %q", addr, line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return line[1:], nil
	}
}

// redisServer is one redis-server process of the run.
type redisServer struct {
	*proc
	addr string
}

// startRedis starts redis-server on a free loopback port with persistence
// off. A cluster server is a one-node Redis Cluster owning every hash slot:
// the only way envoyproxy/ratelimit (radix v4) applies
// REDIS_PIPELINE_WINDOW.
func startRedis(name, work, bin string, cluster bool) (*redisServer, []string, error) {
	port, err := benchproc.FreePort()
	if err != nil {
		return nil, nil, err
	}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", work}
	if cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port))
	}
	p, err := start(name, work, nil, bin, args...)
	if err != nil {
		return nil, nil, err
	}
	r := &redisServer{proc: p, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if err := waitRedis(r.addr, 10*time.Second); err != nil {
		r.stop()
		return nil, nil, fmt.Errorf("%s: %w (log in %s)", name, err, work)
	}
	if cluster {
		if _, err := respCmd(r.addr, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
			r.stop()
			return nil, nil, err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := respCmd(r.addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				r.stop()
				return nil, nil, fmt.Errorf("%s: cluster state not ok after 10s: %v %q", name, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return r, args, nil
}

// service is one RLS server the comparison measures.
type service struct {
	name string
	// redis is the redis-server it counts in; nil for the floor.
	redis *redisServer
	// start starts it on the given gRPC, admin/debug and metrics ports.
	start func(grpcPort, adminPort, metricsPort int) (*proc, error)
	// metricsURL is where its counters are read; "" for none.
	metricsURL func(adminPort, metricsPort int) string
	// view turns two scrapes into what the backend did and did not decide.
	view func(before, after metrics) backendView
	// flushed reports whether m already holds every answer so far
	// (envoyproxy/ratelimit flushes its stats on an interval).
	flushed   func(m metrics, answered int64) bool
	reference bool // one of envoyproxy/ratelimit's settings
	settings  []string
}

func runCompare(args []string) error {
	fs := newFlags("compare")
	envoyBin := fs.String("envoyproxy", ".tools/bin/service_cmd", "envoyproxy/ratelimit binary")
	ghBin := fs.String("gatehouse", "bin/gatehouse", "gatehouse binary")
	redisBin := fs.String("redis", "redis-server", "redis-server binary")
	script := fs.String("script", "ratelimit/testdata/replay/script.txt", "replay script")
	replayDir := fs.String("replay-config", "ratelimit/testdata/replay/config", "config directory of the replay script")
	ld := load{domain: "bench", descKey: "user"}
	fs.IntVar(&ld.concurrency, "concurrency", 64, "concurrent callers of the load generator (every service)")
	fs.IntVar(&ld.keys, "keys", 10000, "distinct keys")
	fs.DurationVar(&ld.duration, "duration", 10*time.Second, "measured drive per service and round")
	fs.Int64Var(&ld.maxRequests, "requests", 3_000_000, "most requests per drive")
	fs.IntVar(&ld.conns, "conns", 4, "gRPC connections of the load generator (every service)")
	warm := fs.Duration("warmup", 2*time.Second, "unmeasured drive before each measurement")
	rounds := fs.Int("rounds", 3, "rounds; each runs every service once, references and Gatehouse interleaved; the table shows medians")
	window := fs.Duration("pipeline-window", 150*time.Microsecond, "envoyproxy/ratelimit REDIS_PIPELINE_WINDOW of the pipelined reference (0 leaves that reference out)")
	plimit := fs.Int("pipeline-limit", 8, "envoyproxy/ratelimit REDIS_PIPELINE_LIMIT of the pipelined reference (deprecated and ignored by its radix v4 client; set as the issue asks)")
	epPool := fs.Int("envoyproxy-redis-pool", 10, "envoyproxy/ratelimit REDIS_POOL_SIZE (its default 10)")
	epGOGC := fs.String("envoyproxy-gogc", "", "GOGC of envoyproxy/ratelimit only (empty: the environment's, else Go's default 100)")
	ghWorkers := fs.Int("gatehouse-redis-workers", 0, "gatehouse --redis-workers (0: its default, 2 script calls in flight on a pool of 4 connections)")
	flush := fs.Duration("stats-flush", time.Second, "envoyproxy/ratelimit STATS_FLUSH_INTERVAL (its error counters are read after a flush)")
	floor := fs.Bool("floor", true, "measure the do-nothing gRPC server too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *rounds < 1:
		return fmt.Errorf("-rounds %d: want at least 1", *rounds)
	case ld.duration <= 0:
		return fmt.Errorf("-duration %s: want more than 0", ld.duration)
	case ld.concurrency < 1 || ld.conns < 1 || ld.keys < 1:
		return fmt.Errorf("-concurrency, -conns and -keys must be at least 1")
	}

	work, err := os.MkdirTemp("", "ratelimitbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// One config directory, used unchanged by every service.
	confDir := filepath.Join(work, "runtime", "ratelimit", "config")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(confDir, "bench.yaml"), []byte(benchConfig), 0o644); err != nil {
		return err
	}
	ents, err := os.ReadDir(*replayDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(*replayDir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(confDir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}

	redis, redisArgs, err := startRedis("redis", work, *redisBin, false)
	if err != nil {
		return err
	}
	defer redis.stop()
	var redisCluster *redisServer
	if *window > 0 {
		redisCluster, _, err = startRedis("redis-cluster", work, *redisBin, true)
		if err != nil {
			return err
		}
		defer redisCluster.stop()
	}
	redisVersion, _ := respCmd(redis.addr, "INFO", "server")
	if i := strings.Index(redisVersion, "redis_version:"); i >= 0 {
		redisVersion = strings.Fields(redisVersion[i+len("redis_version:"):])[0]
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	envoyproxy := func(name string, r *redisServer, extra []string) service {
		common := []string{
			"USE_STATSD=false", "USE_PROMETHEUS=true", "STATS_FLUSH_INTERVAL=" + flush.String(),
			"LOG_LEVEL=warn", "BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_POOL_SIZE=" + strconv.Itoa(*epPool),
			"RUNTIME_ROOT=" + filepath.Join(work, "runtime"), "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
		}
		if *epGOGC != "" {
			common = append(common, "GOGC="+*epGOGC)
		}
		common = append(common, extra...)
		return service{
			name: name, redis: r, reference: true,
			settings: append(slices.Clone(common), "REDIS_URL="+r.addr+" HOST/PORT GRPC_HOST/GRPC_PORT DEBUG_HOST/DEBUG_PORT PROMETHEUS_ADDR: 127.0.0.1, free ports"),
			start: func(gp, ap, mp int) (*proc, error) {
				hp, err := benchproc.FreePort()
				if err != nil {
					return nil, err
				}
				env := append(slices.Clone(common), "REDIS_URL="+r.addr,
					"HOST=127.0.0.1", "PORT="+strconv.Itoa(hp), "GRPC_HOST=127.0.0.1", "GRPC_PORT="+strconv.Itoa(gp),
					"DEBUG_HOST=127.0.0.1", "DEBUG_PORT="+strconv.Itoa(ap), "PROMETHEUS_ADDR="+fmt.Sprintf("127.0.0.1:%d", mp))
				return start("envoyproxy", work, env, *envoyBin)
			},
			metricsURL: func(_, mp int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", mp) },
			view:       func(b, a metrics) backendView { return envoyproxyView(b, a, ld.domain, ld.descKey) },
			flushed: func(m metrics, answered int64) bool {
				hits := map[string]string{"domain": ld.domain, "key1": ld.descKey}
				return int64(m.sum(epTotalHits, hits)+m.sum(epTotalHits+"_total", hits)) >= answered
			},
		}
	}
	ghArgs := []string{"--config-dir", confDir, "--backend", "redis", "--redis-url", "redis://" + redis.addr, "--log-level", "warn"}
	if *ghWorkers > 0 {
		ghArgs = append(ghArgs, "--redis-workers", strconv.Itoa(*ghWorkers))
	}
	gatehouse := service{
		name: "gatehouse ratelimit", redis: redis,
		settings: append([]string{"gatehouse ratelimit"}, append(slices.Clone(ghArgs), "--grpc-addr/--admin-addr 127.0.0.1, free ports; defaults otherwise: --gogc 400, --redis-timeout 50ms, --redis-workers 2 (pool 4), --failure-mode allow")...),
		start: func(gp, ap, _ int) (*proc, error) {
			return start("gatehouse", work, nil, *ghBin, append([]string{"ratelimit",
				"--grpc-addr", fmt.Sprintf("127.0.0.1:%d", gp), "--admin-addr", fmt.Sprintf("127.0.0.1:%d", ap)}, ghArgs...)...)
		},
		metricsURL: func(ap, _ int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", ap) },
		view:       gatehouseView,
		flushed:    func(metrics, int64) bool { return true },
	}
	noop := service{name: "do-nothing gRPC server", settings: []string{"ratelimitbench noop (grpc-go, MaxConcurrentStreams 10000, answers OK)"},
		start: func(gp, _, _ int) (*proc, error) {
			return start("noop", work, nil, self, "noop", "-addr", fmt.Sprintf("127.0.0.1:%d", gp))
		}}

	refDefault := envoyproxy("envoyproxy/ratelimit (defaults)", redis, []string{"REDIS_TYPE=SINGLE"})
	services := []service{refDefault, gatehouse}
	if redisCluster != nil {
		refPipe := envoyproxy("envoyproxy/ratelimit (pipelined)", redisCluster, []string{"REDIS_TYPE=CLUSTER",
			"REDIS_PIPELINE_WINDOW=" + window.String(), "REDIS_PIPELINE_LIMIT=" + strconv.Itoa(*plimit)})
		services = append(services, refPipe)
	}
	var references []string
	for _, s := range services {
		if s.reference {
			references = append(references, s.name)
		}
	}
	names := []string{}
	if *floor {
		names = append(names, noop.name)
	}
	for _, s := range services {
		names = append(names, s.name)
	}

	// Every setting, first.
	fmt.Printf("ratelimitbench compare: %d round(s); per service and round a fresh process, %s unmeasured warm-up, then a measured drive of %s (at most %d requests)\n",
		*rounds, *warm, ld.duration, ld.maxRequests)
	fmt.Printf("load generator (same for every service): %d concurrent callers on %d gRPC connections, %d keys, one descriptor per request (domain %s, key %s), limit 1e9/minute so every request is counted in Redis; it runs on the same machine\n",
		ld.concurrency, ld.conns, ld.keys, ld.domain, ld.descKey)
	fmt.Printf("machine: %d CPUs (GOMAXPROCS of the generator %d), load average %s; GOGC in the environment: %q\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg(), os.Getenv("GOGC"))
	fmt.Printf("config: one directory (%s: bench.yaml + %s), loaded unchanged by every service\n", "envoyproxy YAML", *replayDir)
	quoted := make([]string, len(redisArgs))
	for i, a := range redisArgs {
		quoted[i] = a
		if a == "" {
			quoted[i] = `""`
		}
	}
	fmt.Printf("redis-server %s, one process for Gatehouse and envoyproxy/ratelimit (defaults): %s %s\n", redisVersion, *redisBin, strings.Join(quoted, " "))
	if redisCluster != nil {
		fmt.Printf("redis-server %s for envoyproxy/ratelimit (pipelined): the same arguments plus --cluster-enabled yes, one node owning every slot (its radix v4 client applies REDIS_PIPELINE_WINDOW only with REDIS_TYPE=CLUSTER; REDIS_PIPELINE_LIMIT is deprecated and ignored)\n", redisVersion)
	}
	fmt.Printf("log level: warn for every service\n")
	if env := inheritedEnv(os.Environ()); len(env) > 0 {
		fmt.Printf("inherited by every service from this environment (the per-service settings below win over it): %s\n", strings.Join(env, " "))
	}
	shown := services
	if *floor {
		shown = append([]service{noop}, services...)
	}
	for _, s := range shown {
		fmt.Printf("%s: %s\n", s.name, strings.Join(s.settings, " "))
	}
	fmt.Printf("CPU: utime+stime from /proc of the service and of its redis-server during the measured drive (10 ms ticks); answers not decided by the backend (failure mode, from the service's metrics) and errors are not counted as requests; a service with more than 0.1 %% of its calls not decided fails the run\n\n")

	var all []round
	var notes []string
	var guardErrs []error
	run := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 10)
	for ri := 0; ri < *rounds; ri++ {
		// A B A B: the references and Gatehouse alternate; odd rounds
		// take the references in the other order.
		order := slices.Clone(services)
		if ri%2 == 1 {
			slices.Reverse(order)
		}
		if *floor {
			order = append([]service{noop}, order...)
		}
		rd := round{}
		for si, s := range order {
			tag := fmt.Sprintf("%sr%ds%d", run, ri, si)
			m, note, err := measure(s, ld, *warm, tag, ri, *script, *flush)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w (logs in %s)", ri+1, s.name, err, work)
			}
			if note != "" {
				notes = append(notes, note)
			}
			rd[s.name] = m
			if s.redis == nil {
				fmt.Printf("round %d %s: %d answers, %d errors in %s, %.0f/s, p99 %s, %.0f per CPU-second, load %s\n",
					ri+1, s.name, m.res.requests, m.res.errors, m.res.elapsed.Round(time.Millisecond),
					m.decidedRate(), m.res.p99.Round(time.Microsecond), m.perCPUSecond(), m.loadBefore)
				continue
			}
			fmt.Printf("round %d %s: %d answers (%d by the failure mode, not by Redis), %d errors (the service's own counters: %d failed calls, %d backend errors) in %s, %.0f backend-decided/s, p99 %s, %.0f per CPU-second, load %s\n",
				ri+1, s.name, m.res.requests, m.view.undecided, m.res.errors, m.view.callErrors, m.view.backendErrors, m.res.elapsed.Round(time.Millisecond),
				m.decidedRate(), m.res.p99.Round(time.Microsecond), m.perCPUSecond(), m.loadBefore)
			if err := guard(s.name, ri+1, m); err != nil {
				guardErrs = append(guardErrs, err)
			}
		}
		all = append(all, rd)
	}

	fmt.Println()
	for _, n := range notes {
		fmt.Println(n)
	}
	v := compareRounds(all, gatehouse.name, references)
	fmt.Printf("gatehouse / better reference, requests per CPU-second, per round: %s; median %.2f×\n", formatRatios(v.ratios, v.against), v.ratio)
	fmt.Printf("gatehouse / that reference, p99, per round: %s; median %.2f (≤ 1 is no worse)\n", formatRatios(v.p99s, v.against), v.p99)
	state := "NOT met"
	switch {
	case len(guardErrs) > 0:
		state = "not judged: the run failed the 0.1 % guard (see the end)"
	case v.met():
		state = "met"
	}
	fmt.Printf("target ≥ 2× requests per CPU-second against the better reference setting, p99 no worse: %s\n", state)
	fmt.Printf("load average at the end: %s\n", loadavg())
	fmt.Printf("\nmedians of %d round(s), %d concurrent callers, %d keys, %s per service and round:\n\n", *rounds, ld.concurrency, ld.keys, ld.duration)
	writeTable(os.Stdout, all, names, map[string]bool{noop.name: true})
	return errors.Join(guardErrs...)
}

// measure starts one service, replays the script (first round), warms up,
// reads its counters, drives it, reads its counters again and stops it.
func measure(s service, ld load, warm time.Duration, tag string, ri int, script string, flush time.Duration) (measurement, string, error) {
	var m measurement
	ports := make([]int, 3)
	for i := range ports {
		p, err := benchproc.FreePort()
		if err != nil {
			return m, "", err
		}
		ports[i] = p
	}
	p, err := s.start(ports[0], ports[1], ports[2])
	if err != nil {
		return m, "", err
	}
	defer p.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if err := waitGRPC(addr, 20*time.Second); err != nil {
		return m, "", err
	}
	note := ""
	if ri == 0 && s.redis != nil {
		mism, n, err := replayAgainst(addr, script, tag)
		switch {
		case err != nil:
			note = fmt.Sprintf("replay %s: failed: %v", s.name, err)
		case len(mism) > 0:
			note = fmt.Sprintf("replay %s: %d of %d steps differ: %s", s.name, len(mism), n, strings.Join(mism, "; "))
		default:
			note = fmt.Sprintf("replay %s: all %d scripted steps gave the expected allow/deny", s.name, n)
		}
	}
	wl := ld
	wl.addr, wl.run, wl.duration = addr, tag+"w", warm
	wres, err := drive(wl)
	if err != nil {
		return m, "", err
	}
	var before metrics
	url := ""
	if s.metricsURL != nil {
		url = s.metricsURL(ports[1], ports[2])
		if before, err = scrapeFlushed(url, s.flushed, wres.requests, flush); err != nil {
			return m, "", err
		}
	}
	m.loadBefore = loadavg()
	c0, err := p.CPU()
	if err != nil {
		return m, "", err
	}
	var r0, r1 time.Duration
	if s.redis != nil {
		if r0, err = s.redis.CPU(); err != nil {
			return m, "", err
		}
	}
	ml := ld
	ml.addr, ml.run = addr, tag+"m"
	m.res, err = drive(ml)
	if err != nil {
		return m, "", err
	}
	c1, err := p.CPU()
	if err != nil {
		return m, "", fmt.Errorf("reading its CPU after the drive (did it exit?): %w", err)
	}
	if s.redis != nil {
		if r1, err = s.redis.CPU(); err != nil {
			return m, "", fmt.Errorf("reading redis-server's CPU after the drive (did it exit?): %w", err)
		}
	}
	m.svcCPU, m.rCPU = (c1 - c0).Seconds(), (r1 - r0).Seconds()
	if url != "" {
		after, err := scrapeFlushed(url, s.flushed, wres.requests+m.res.requests, flush)
		if err != nil {
			return m, "", err
		}
		m.view = s.view(before, after)
		if m.view.batchCalls > 0 {
			note = strings.TrimSpace(note + fmt.Sprintf("\nbatching %s, round %d: %.0f Redis script calls, %.1f keys per call on average (measured drive)",
				s.name, ri+1, m.view.batchCalls, m.view.batchKeys/m.view.batchCalls))
		}
		if m.view.counted >= 0 && m.view.counted < m.res.requests-m.view.undecided {
			return m, "", fmt.Errorf("its stats count %d hits, but it answered %d calls", m.view.counted, m.res.requests)
		}
	}
	return m, note, nil
}

// scrapeFlushed scrapes url until flushed says every answer so far is in
// it (a few flush intervals at most).
func scrapeFlushed(url string, flushed func(metrics, int64) bool, answered int64, flush time.Duration) (metrics, error) {
	deadline := time.Now().Add(3*flush + 2*time.Second)
	for {
		m, err := scrape(url)
		if err != nil {
			return nil, err
		}
		if flushed(m, answered) {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: stats still short of the %d answers given after %s", url, answered, 3*flush+2*time.Second)
		}
		time.Sleep(flush / 4)
	}
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// inheritedEnv lists the variables of env that Go, Gatehouse or
// envoyproxy/ratelimit read, sorted; values of names that look secret are
// masked.
func inheritedEnv(env []string) []string {
	prefixes := []string{"GATEHOUSE_", "GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GODEBUG", "REDIS_", "LIMIT_", "LOCAL_CACHE", "CACHE_",
		"MERGE_DOMAIN", "QUOTA_MODE", "SHADOW_MODE", "RESPONSE_DYNAMIC", "NEAR_LIMIT", "EXPIRATION_JITTER", "RUNTIME_", "STATS_",
		"USE_", "LOG_", "BACKEND_", "GRPC_", "MEMCACHE_", "PROMETHEUS_", "DISABLE_STATS", "HEALTHY_WITH"}
	var out []string
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		up := strings.ToUpper(name)
		for _, secret := range []string{"AUTH", "PASSWORD", "TOKEN", "SECRET", "KEY"} {
			if strings.Contains(up, secret) && !strings.HasSuffix(up, "KEY_PREFIX") {
				value = "(set, not shown)"
			}
		}
		out = append(out, name+"="+value)
	}
	slices.Sort(out)
	return out
}
