package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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

type proc struct {
	name string
	cmd  *exec.Cmd
}

func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// cpuSeconds is utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(name, logDir string, env []string, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	return &proc{name: name, cmd: cmd}, nil
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

type row struct {
	name         string
	res          result
	svcCPU, rCPU float64 // seconds during the measured drive
}

func runCompare(args []string) error {
	fs := newFlags("compare")
	envoyBin := fs.String("envoyproxy", ".tools/bin/service_cmd", "envoyproxy/ratelimit binary")
	ghBin := fs.String("gatehouse", "bin/gatehouse", "gatehouse binary")
	redisBin := fs.String("redis", "redis-server", "redis-server binary")
	script := fs.String("script", "ratelimit/testdata/replay/script.txt", "replay script")
	replayDir := fs.String("replay-config", "ratelimit/testdata/replay/config", "config directory of the replay script")
	ld := load{domain: "bench", descKey: "user"}
	fs.IntVar(&ld.concurrency, "concurrency", 64, "concurrent callers")
	fs.IntVar(&ld.keys, "keys", 10000, "distinct keys")
	fs.DurationVar(&ld.duration, "duration", 10*time.Second, "measured drive per service")
	fs.Int64Var(&ld.maxRequests, "requests", 3_000_000, "most requests per drive")
	fs.IntVar(&ld.conns, "conns", 4, "gRPC connections of the load generator")
	warm := fs.Duration("warmup", 2*time.Second, "unmeasured drive before each measurement")
	fs.Parse(args)

	work, err := os.MkdirTemp("", "ratelimitbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// One config directory, used unchanged by both services.
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

	rport, err := freePort()
	if err != nil {
		return err
	}
	raddr := fmt.Sprintf("127.0.0.1:%d", rport)
	redis, err := start("redis", work, nil, *redisBin, "--bind", "127.0.0.1", "--port", strconv.Itoa(rport), "--save", "", "--appendonly", "no", "--dir", work)
	if err != nil {
		return err
	}
	defer redis.stop()
	if err := waitRedis(raddr, 10*time.Second); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	type target struct {
		name  string
		start func(grpcPort, adminPort int) (*proc, error)
		redis bool
	}
	targets := []target{
		{"do-nothing gRPC server", func(gp, _ int) (*proc, error) {
			return start("noop", work, nil, self, "noop", "-addr", fmt.Sprintf("127.0.0.1:%d", gp))
		}, false},
		{"envoyproxy/ratelimit", func(gp, ap int) (*proc, error) {
			hp, _ := freePort()
			return start("envoyproxy", work, []string{
				"USE_STATSD=false", "LOG_LEVEL=warn", "BACKEND_TYPE=redis",
				"REDIS_SOCKET_TYPE=tcp", "REDIS_TYPE=SINGLE", "REDIS_URL=" + raddr,
				"RUNTIME_ROOT=" + filepath.Join(work, "runtime"), "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
				"HOST=127.0.0.1", "PORT=" + strconv.Itoa(hp), "GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(gp),
				"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(ap),
			}, *envoyBin)
		}, true},
		{"gatehouse ratelimit", func(gp, ap int) (*proc, error) {
			return start("gatehouse", work, nil, *ghBin, "ratelimit",
				"--grpc-addr", fmt.Sprintf("127.0.0.1:%d", gp), "--admin-addr", fmt.Sprintf("127.0.0.1:%d", ap),
				"--config-dir", confDir, "--backend", "redis", "--redis-url", "redis://"+raddr, "--log-level", "warn")
		}, true},
	}
	var rows []row
	var replayNotes []string
	run := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 10)
	for ti, tg := range targets {
		gp, _ := freePort()
		ap, _ := freePort()
		p, err := tg.start(gp, ap)
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", gp)
		if err := waitGRPC(addr, 20*time.Second); err != nil {
			p.stop()
			return fmt.Errorf("%s: %w (log in %s)", tg.name, err, work)
		}
		if tg.redis {
			mism, n, err := replayAgainst(addr, *script, run+strconv.Itoa(ti))
			switch {
			case err != nil:
				replayNotes = append(replayNotes, fmt.Sprintf("replay %s: failed: %v", tg.name, err))
			case len(mism) > 0:
				replayNotes = append(replayNotes, fmt.Sprintf("replay %s: %d of %d steps differ: %s", tg.name, len(mism), n, strings.Join(mism, "; ")))
			default:
				replayNotes = append(replayNotes, fmt.Sprintf("replay %s: all %d scripted steps gave the expected allow/deny", tg.name, n))
			}
		}
		wl := ld
		wl.addr, wl.run, wl.duration = addr, run+"w"+strconv.Itoa(ti), *warm
		if _, err := drive(wl); err != nil {
			p.stop()
			return err
		}
		c0, _ := cpuSeconds(p.cmd.Process.Pid)
		r0, _ := cpuSeconds(redis.cmd.Process.Pid)
		ml := ld
		ml.addr, ml.run = addr, run+"m"+strconv.Itoa(ti)
		res, err := drive(ml)
		c1, _ := cpuSeconds(p.cmd.Process.Pid)
		r1, _ := cpuSeconds(redis.cmd.Process.Pid)
		if tg.name == "gatehouse ratelimit" {
			if note := batchNote(ap); note != "" {
				replayNotes = append(replayNotes, note)
			}
		}
		p.stop()
		if err != nil {
			return err
		}
		rw := row{name: tg.name, res: res, svcCPU: c1 - c0}
		if tg.redis {
			rw.rCPU = r1 - r0
		}
		rows = append(rows, rw)
		fmt.Fprintf(os.Stderr, "%s: %d requests (%d errors) in %s\n", tg.name, res.requests, res.errors, res.elapsed.Round(time.Millisecond))
	}
	fmt.Printf("\n%d concurrent callers, %d keys, one descriptor per request, %s per service, one redis-server; CPU from /proc (10 ms ticks)\n\n", ld.concurrency, ld.keys, ld.duration)
	fmt.Println("| service | requests/s | p50 | p99 | service CPU s / 1k req | Redis CPU s / 1k req | total CPU µs / req | requests per CPU-second |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		n := float64(max(r.res.requests, 1))
		tot := r.svcCPU + r.rCPU
		fmt.Printf("| %s | %.0f | %s | %s | %.4f | %.4f | %.1f | %.0f |\n", r.name, r.res.rps(),
			r.res.p50.Round(time.Microsecond), r.res.p99.Round(time.Microsecond),
			r.svcCPU/n*1000, r.rCPU/n*1000, tot/n*1e6, n/max(tot, 1e-9))
	}
	fmt.Println()
	for _, n := range replayNotes {
		fmt.Println(n)
	}
	return nil
}

// batchNote reads Gatehouse's batch-size histogram from its admin port.
func batchNote(adminPort int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, `gatehouse_ratelimit_backend_batch_keys_sum{backend="redis"} `); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, `gatehouse_ratelimit_backend_batch_keys_count{backend="redis"} `); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	if count == 0 {
		return ""
	}
	return fmt.Sprintf("batching gatehouse ratelimit: %.0f Redis script calls, %.1f keys per call on average (warm-up included)", count, sum/count)
}
