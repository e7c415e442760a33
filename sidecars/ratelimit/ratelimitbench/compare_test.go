package main

import (
	"context"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/ratelimit"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{100, 1, 2}, 2}, // not the mean (34.3), not the best (100)
	} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("median reordered its input: %v, was %v", c.in, in)
			}
		}
	}
}

// meas builds a measurement with decided answers per CPU-second perCPU
// (1 CPU-second) and the given p99.
func meas(perCPU int64, p99 time.Duration) measurement {
	return measurement{res: result{requests: perCPU, elapsed: time.Second, p50: p99 / 2, p99: p99}, svcCPU: 0.75, rCPU: 0.25}
}

// TestCompareRoundsMedianOfInterleaved: each round's ratio is against the
// better reference of that round, and the reported ratio is the median of
// the rounds, not the mean or the best.
func TestCompareRoundsMedianOfInterleaved(t *testing.T) {
	const gh, def, pipe = "gatehouse ratelimit", "envoyproxy/ratelimit (defaults)", "envoyproxy/ratelimit (pipelined)"
	rounds := []round{
		// pipelined is the better reference: 30000/12000 = 2.5, p99 4/8
		{gh: meas(30000, 4*time.Millisecond), def: meas(10000, 10*time.Millisecond), pipe: meas(12000, 8*time.Millisecond)},
		// defaults is better: 33000/11000 = 3.0, p99 6/5
		{gh: meas(33000, 6*time.Millisecond), def: meas(11000, 5*time.Millisecond), pipe: meas(9000, 9*time.Millisecond)},
		// 15000/10000 = 1.5, p99 5/10
		{gh: meas(15000, 5*time.Millisecond), def: meas(10000, 10*time.Millisecond), pipe: meas(10000, 20*time.Millisecond)},
	}
	v := compareRounds(rounds, gh, []string{def, pipe})
	want := []float64{2.5, 3.0, 1.5}
	if len(v.ratios) != 3 {
		t.Fatalf("ratios %v, want 3", v.ratios)
	}
	for i := range want {
		if math.Abs(v.ratios[i]-want[i]) > 1e-9 {
			t.Errorf("round %d ratio %v, want %v", i+1, v.ratios[i], want[i])
		}
	}
	if got := strings.Join(v.against, ","); got != pipe+","+def+","+def {
		t.Errorf("better reference per round = %s", got)
	}
	if math.Abs(v.ratio-2.5) > 1e-9 {
		t.Errorf("median ratio %v, want 2.5", v.ratio)
	}
	if math.Abs(v.p99-0.5) > 1e-9 { // p99 ratios 0.5, 1.2, 0.5
		t.Errorf("median p99 ratio %v, want 0.5", v.p99)
	}
	if !v.met() {
		t.Error("2.5x with p99 0.5 should meet the target")
	}
	// One bad p99 median fails the target.
	rounds[0][gh] = meas(30000, 9*time.Millisecond)
	rounds[2][gh] = meas(15000, 11*time.Millisecond)
	if v := compareRounds(rounds, gh, []string{def, pipe}); v.met() {
		t.Errorf("p99 median %v > 1 met the target", v.p99)
	}
	// Failure-mode answers are not work: a Gatehouse round whose answers
	// were half undecided halves its ratio.
	m := meas(30000, 4*time.Millisecond)
	m.view.undecided = 15000
	r := round{gh: m, def: meas(10000, 10*time.Millisecond)}
	if ratio, _, _, _ := roundRatio(r, gh, []string{def, pipe}); math.Abs(ratio-1.5) > 1e-9 {
		t.Errorf("ratio with 15000 failure-mode answers = %v, want 1.5", ratio)
	}
}

func TestGuard(t *testing.T) {
	ok := func(undecided, errs int64) measurement {
		m := meas(1000-errs, time.Millisecond)
		m.res.errors, m.view.undecided = errs, undecided
		return m
	}
	for _, c := range []struct {
		name string
		m    measurement
		want string // "" passes
	}{
		{name: "all decided", m: ok(0, 0)},
		{name: "0.1 % exactly", m: ok(1, 0)},
		{name: "0.2 % failure mode", m: ok(2, 0), want: "2 of 1000 calls (0.200 %) were not decided by the backend (2 failure-mode answers, 0 errors)"},
		{name: "errors count too", m: ok(1, 1), want: "2 of 1000 calls (0.200 %) were not decided by the backend (1 failure-mode answers, 1 errors)"},
		{name: "nothing", m: measurement{}, want: "no call completed"},
		{name: "dead process", m: measurement{res: result{requests: 10}}, want: "service CPU 0.000 s"},
	} {
		err := guard("gatehouse ratelimit", 2, c.m)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "gatehouse ratelimit, round 2")):
			t.Errorf("%s: error %v, want one naming the service, the round and %q", c.name, err, c.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP x_total a counter
# TYPE x_total counter
x_total{mode="allow"} 3
x_total{mode="deny",odd="a \"b\", c}"} 4 1700000000000
plain 2.5e3
ratelimit_service_should_rate_limit_error{err_type="redis_error"} 7
ratelimit_service_rate_limit_total_hits{domain="bench",key1="user"} 120
ratelimit_service_rate_limit_total_hits{domain="other",key1="user"} 5
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.sum("x_total", nil); got != 7 {
		t.Errorf("x_total = %v, want 7", got)
	}
	if got := m.sum("x_total", map[string]string{"odd": `a "b", c}`}); got != 4 {
		t.Errorf("escaped label value: %v, want 4", got)
	}
	if got := m.sum("plain", nil); got != 2500 {
		t.Errorf("plain = %v", got)
	}
	if got := m.sum("absent", nil); got != 0 {
		t.Errorf("absent = %v", got)
	}
	before, _ := parseMetrics(strings.NewReader("ratelimit_service_rate_limit_total_hits{domain=\"bench\",key1=\"user\"} 20\n"))
	v := envoyproxyView(before, m, "bench", "user")
	if v.counted != 100 || v.callErrors != 7 || v.backendErrors != 7 || v.undecided != 0 {
		t.Errorf("envoyproxy view %+v, want counted 100, 7 errors", v)
	}
	for _, bad := range []string{"novalue\n", "x{a=\"1\" 3\n", "x{a=1} 3\n", "x abc\n", "x 1 2 3\n"} {
		_, err := parseMetrics(strings.NewReader("# ok\n" + bad))
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %v, want one naming line 2", bad, err)
		}
	}
}

// TestClusterRedis starts the one-node Redis Cluster the pipelined
// reference uses: it must own every slot and accept any key.
func TestClusterRedis(t *testing.T) {
	bin := testenv.RedisBinary(t)
	r, _, err := startRedis("redis-cluster", t.TempDir(), bin, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	info, err := respCmd(r.addr, "CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") {
		t.Fatalf("CLUSTER INFO: %v %q", err, info)
	}
	for _, k := range []string{"a", "bench_user_1", "zzz"} {
		if got, err := respCmd(r.addr, "INCRBY", k, "2"); err != nil || got != "2" {
			t.Errorf("INCRBY %s: %q %v", k, got, err)
		}
	}
	if _, err := respCmd(r.addr, "NOSUCHCOMMAND"); err == nil || !strings.Contains(err.Error(), "NOSUCHCOMMAND") {
		t.Errorf("an error reply: %v", err)
	}
}

// TestGatehouseMetricsRealSidecar reads the failure-mode counters from a
// real Gatehouse ratelimit sidecar's /metrics on a real redis-server:
// with Redis up every answer is backend-decided and the guard passes;
// with Redis gone the sidecar still answers OK (failure mode allow), the
// scrape counts every one of those answers as not decided, and the guard
// fails the run.
func TestGatehouseMetricsRealSidecar(t *testing.T) {
	redis := testenv.StartRedis(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(benchConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]net.Addr, 1)
	cfg := ratelimitsidecar.Config{
		GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ConfigDir: dir,
		Backend: "redis", RedisURL: "redis://" + redis.Addr,
		// A loaded test machine (-race, parallel builds) can miss the
		// 50 ms default; this test is about counting, not the budget.
		RedisTimeout: 5 * time.Second,
		Ready:        func(g, a net.Addr) { ready <- [2]net.Addr{g, a} },
	}
	s := testenv.Serve(t, "sidecar", 15*time.Second, func(ctx context.Context) error { return ratelimitsidecar.Run(ctx, cfg) })
	addrs := testenv.AwaitReady(t, s, ready, 15*time.Second)
	url := "http://" + addrs[1].String() + "/metrics"
	ld := load{addr: addrs[0].String(), concurrency: 4, conns: 1, keys: 50, duration: 10 * time.Second,
		maxRequests: 200, domain: "bench", descKey: "user"}

	measureOnce := func(run string) measurement {
		t.Helper()
		before, err := scrape(url)
		if err != nil {
			t.Fatal(err)
		}
		ld.run = run
		res, err := drive(ld)
		if err != nil {
			t.Fatal(err)
		}
		after, err := scrape(url)
		if err != nil {
			t.Fatal(err)
		}
		return measurement{res: res, view: gatehouseView(before, after), svcCPU: 1}
	}

	up := measureOnce("up")
	if up.res.requests < 150 || up.res.errors != 0 {
		t.Fatalf("Redis up: %d answers, %d errors; want ~200 answers", up.res.requests, up.res.errors)
	}
	if up.view.undecided != 0 || up.decided() != up.res.requests {
		t.Errorf("Redis up: %d undecided, %d decided of %d", up.view.undecided, up.decided(), up.res.requests)
	}
	if up.view.batchCalls < 1 || up.view.batchKeys != float64(up.res.requests) {
		t.Errorf("Redis up: batch histogram %v calls / %v keys, want %d keys", up.view.batchCalls, up.view.batchKeys, up.res.requests)
	}
	if err := guard("gatehouse ratelimit", 1, up); err != nil {
		t.Errorf("Redis up: %v", err)
	}

	redis.Stop()
	down := measureOnce("down")
	if down.res.requests < 150 || down.res.errors != 0 {
		t.Fatalf("Redis down: %d answers, %d errors; the failure mode should answer them all", down.res.requests, down.res.errors)
	}
	if down.view.undecided != down.res.requests || down.decided() != 0 {
		t.Errorf("Redis down: %d undecided of %d answers, want all", down.view.undecided, down.res.requests)
	}
	if down.view.backendErrors < 1 {
		t.Errorf("Redis down: backend errors %d, want some", down.view.backendErrors)
	}
	if err := guard("gatehouse ratelimit", 1, down); err == nil || !strings.Contains(err.Error(), "not decided by the backend") {
		t.Errorf("Redis down: guard %v, want a failure", err)
	}
}

// TestTableMatchesDoc: the output ends with docs/PERFORMANCE.md's
// ## ratelimit table; each cell is the median of its column over the
// rounds, the undecided column the sum.
func TestTableMatchesDoc(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/PERFORMANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), tableHeader) {
		t.Fatalf("docs/PERFORMANCE.md has no table with the header compare prints:\n%s", tableHeader)
	}
	const gh, floor = "gatehouse ratelimit", "do-nothing gRPC server"
	a, b, c := meas(1000, 3*time.Millisecond), meas(3000, 9*time.Millisecond), meas(2000, 5*time.Millisecond)
	b.view.undecided = 2 // 2 of 3000 answers by the failure mode: 2998 decided
	rounds := []round{{gh: a, floor: a}, {gh: b, floor: b}, {gh: c, floor: c}}
	var out strings.Builder
	writeTable(&out, rounds, []string{floor, gh}, map[string]bool{floor: true})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || lines[0]+"\n"+lines[1]+"\n" != tableHeader {
		t.Fatalf("table:\n%s", out.String())
	}
	// median of 1000, 2998, 2000 decided/s; p99 median 5 ms; per CPU-second
	// the same numbers over 1 CPU-second.
	if want := "| gatehouse ratelimit | 2000 | 2.5ms | 5ms | 0.3750 | 0.1250 | 500.0 | 2000 | 2 of 6000 (0.033 %) |"; lines[3] != want {
		t.Errorf("row\n%s\nwant\n%s", lines[3], want)
	}
	if !strings.HasSuffix(lines[2], "| no backend |") {
		t.Errorf("floor row %s", lines[2])
	}
}

func TestInheritedEnv(t *testing.T) {
	got := strings.Join(inheritedEnv([]string{"PATH=/bin", "GOGC=200", "REDIS_AUTH=hunter2", "GATEHOUSE_RATELIMIT_REDIS_TIMEOUT=1ms",
		"CACHE_KEY_PREFIX=x_", "GATEHOUSE_RATELIMIT_REDIS_PASSWORD_FILE=/run/pw", "HOME=/root"}), " ")
	want := "CACHE_KEY_PREFIX=x_ GATEHOUSE_RATELIMIT_REDIS_PASSWORD_FILE=(set, not shown) GATEHOUSE_RATELIMIT_REDIS_TIMEOUT=1ms GOGC=200 REDIS_AUTH=(set, not shown)"
	if got != want {
		t.Errorf("inheritedEnv:\n%s\nwant\n%s", got, want)
	}
}
