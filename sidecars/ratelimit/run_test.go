package ratelimitsidecar

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/replay"
)

type running struct {
	grpcAddr, adminAddr string
	client              rlsv3.RateLimitServiceClient
	conn                *grpc.ClientConn
}

func startRun(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.ReloadDelay == 0 {
		cfg.ReloadDelay = 50 * time.Millisecond
	}
	ready := make(chan [2]net.Addr, 1)
	cfg.Ready = func(g, a net.Addr) { ready <- [2]net.Addr{g, a} }
	s := testenv.Serve(t, "Run", 15*time.Second, func(ctx context.Context) error { return Run(ctx, cfg) })
	addrs := testenv.AwaitReady(t, s, ready, 10*time.Second)
	r := &running{grpcAddr: addrs[0].String(), adminAddr: addrs[1].String()}
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.conn, r.client = conn, rlsv3.NewRateLimitServiceClient(conn)
	t.Cleanup(func() { conn.Close() })
	return r
}

func (r *running) call(t *testing.T, domain string, kv ...string) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	resp, err := r.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{d}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

// TestReplayOverGRPC replays the scripted sequence through a real gRPC
// server loaded from the envoyproxy/ratelimit config directory.
func TestReplayOverGRPC(t *testing.T) {
	r := startRun(t, Config{ConfigDir: "../../ratelimit/testdata/replay/config"})
	f, err := os.Open("../../ratelimit/testdata/replay/script.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps, err := replay.Parse(f, "7")
	if err != nil {
		t.Fatal(err)
	}
	mism, err := replay.Run(context.Background(), steps, func(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return r.client.ShouldRateLimit(ctx, req)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mism {
		t.Error(m)
	}
	// Malformed requests are INVALID_ARGUMENT.
	_, err = r.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: ""})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty domain: %v", err)
	}
	_, err = r.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*ratelimitv3.RateLimitDescriptor{{}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty descriptor: %v", err)
	}
	// Health, readiness and metrics.
	hc, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	if code, body := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	_, metrics := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics")
	if testing.Verbose() {
		for _, l := range strings.Split(metrics, "\n") {
			if strings.Contains(l, "remote_address") {
				t.Log(l)
			}
		}
	}
	for _, want := range []string{
		`gatehouse_ratelimit_total_hits{domain="api",rule="api.remote_address"} 11`,
		`gatehouse_ratelimit_over_limit{domain="api",rule="api.remote_address"} 3`,
		`gatehouse_ratelimit_near_limit{domain="api",rule="api.remote_address"} 1`,
		`gatehouse_ratelimit_shadow_mode{domain="api",rule="api.canary"} 1`,
		`gatehouse_ratelimit_over_limit{domain="api",rule="api.quota"} 2`,
		`gatehouse_ratelimit_invalid_requests_total 2`,
		`gatehouse_ratelimit_config_last_reload_success{source="config_dir"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestConfigDirReload changes the directory while requests flow: none
// fails, the new limits apply, a bad file is rejected and the previous
// config keeps serving.
func TestConfigDirReload(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "conf.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	write("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n")
	r := startRun(t, Config{ConfigDir: dir})
	limitOf := func() uint32 { return r.call(t, "d", "k", "probe").Statuses[0].GetCurrentLimit().GetRequestsPerUnit() }
	if l := limitOf(); l != 1 {
		t.Fatalf("initial limit %d", l)
	}
	var failures atomic.Int64
	var calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := r.client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d",
					Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: fmt.Sprint(i)}}}}})
				calls.Add(1)
				if err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	for v := uint32(2); v <= 6; v++ {
		write(fmt.Sprintf("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: %d}\n", v))
		testenv.WaitFor(t, fmt.Sprintf("limit %d", v), 10*time.Second, func() bool { return limitOf() == v })
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d requests failed during reloads", failures.Load(), calls.Load())
	}
	// A bad file: rejected, limit 6 keeps serving, the gauge says so.
	write("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 9}\n")
	testenv.WaitFor(t, "the failed reload to be recorded", 10*time.Second, func() bool {
		_, m := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics")
		return strings.Contains(m, `gatehouse_ratelimit_config_last_reload_success{source="config_dir"} 0`)
	})
	if l := limitOf(); l != 6 {
		t.Fatalf("after a bad file the limit is %d, want the previous 6", l)
	}
	write("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 7}\n")
	testenv.WaitFor(t, "limit 7 after the fix", 10*time.Second, func() bool { return limitOf() == 7 })
}

func TestNewRejectsBadConfigDirWithFileLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight}\n"), 0o644)
	_, err := New(Config{ConfigDir: dir})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "a.yaml")+":4: invalid rate limit unit 'fortnight'") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range []Config{{}, {XDSServer: "x:1"}, {ConfigDir: dir, Backend: "memcache"}, {ConfigDir: dir, FailureMode: "maybe"}, {ConfigDir: dir, Backend: "redis"}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

const specYAML = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: petstore, team: pets}
spec:
  hosts: [petstore.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  routes:
    - name: list
      match: {pathPrefix: /pets}
      upstream: api
      rateLimits:
        - name: per-user
          by: [header.x-user]
          limit: 2/30s
          algorithm: sliding-window
`

func TestSpecDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "petstore.yaml"), []byte(specYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, Config{SpecDir: dir})
	var codes []string
	for i := 0; i < 3; i++ {
		codes = append(codes, r.call(t, "gatehouse", "route", "petstore/list", "limit", "per-user", "header.x-user", "alice").OverallCode.String())
	}
	if strings.Join(codes, ",") != "OK,OK,OVER_LIMIT" {
		t.Fatalf("spec limit 2/30s: %v", codes)
	}
	// Another user has their own counter.
	if c := r.call(t, "gatehouse", "route", "petstore/list", "limit", "per-user", "header.x-user", "bob").OverallCode; c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("bob: %s", c)
	}
	// A spec change is picked up.
	os.WriteFile(filepath.Join(dir, "petstore.yaml"), []byte(strings.Replace(specYAML, "2/30s", "50/30s", 1)), 0o644)
	testenv.WaitFor(t, "the new spec limit", 10*time.Second, func() bool {
		return r.call(t, "gatehouse", "route", "petstore/list", "limit", "per-user", "header.x-user", "carol").Statuses[0].GetCurrentLimit().GetRequestsPerUnit() == 50
	})
}

// xdsServer serves rate-limit resources from a plain go-control-plane
// ADS server (testenv.XDS) to node rl-1.
type xdsServer struct{ *testenv.XDS }

func startXDS(t *testing.T) xdsServer { return startXDSAt(t, "127.0.0.1:0") }

func startXDSAt(t *testing.T, addr string) xdsServer { return xdsServer{testenv.StartXDS(t, addr)} }

func (x xdsServer) set(t *testing.T, version string, rlc []*rlsconfv3.RateLimitConfig, rules []*ratelimit.SpecRules) {
	t.Helper()
	var ext []testenv.Extension
	for _, r := range rules {
		ext = append(ext, testenv.Extension{Name: contract.RateLimitPrefix + r.Spec, Type: contract.RateLimitRulesType, Value: r})
	}
	// Another concern's resource of the same type is not ours.
	ext = append(ext, testenv.Extension{Name: contract.AuthzPrefix + "petstore", Type: contract.AuthzPolicyType, Value: map[string]any{"x": 1}})
	var rl []types.Resource
	for _, c := range rlc {
		rl = append(rl, c)
	}
	x.Set(t, "rl-1", version, map[string][]types.Resource{contract.ExtensionConfigType: testenv.WrapExtensions(t, ext...), contract.RateLimitConfigType: rl})
}

func TestXDS(t *testing.T) {
	x := startXDS(t)
	rlc := &rlsconfv3.RateLimitConfig{Name: "api", Domain: "api", Descriptors: []*rlsconfv3.RateLimitDescriptor{{
		Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 3},
	}}}
	// RateLimitConfig for domain gatehouse as any control plane would serve it.
	ghFromRLC := &rlsconfv3.RateLimitConfig{Name: "gatehouse", Domain: "gatehouse", Descriptors: []*rlsconfv3.RateLimitDescriptor{{
		Key: "route", Value: "petstore/list", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "limit", Value: "per-user",
			Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "header.x-user", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_MINUTE, RequestsPerUnit: 9}}}}},
	}}}
	r := startRun(t, Config{XDSServer: x.Addr, NodeID: "rl-1", NodeCluster: "us-east-1"})
	if code, _ := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != 503 {
		t.Fatalf("readyz before any config = %d", code)
	}
	gh := func(user string) *rlsv3.RateLimitResponse_DescriptorStatus {
		return r.call(t, "gatehouse", "route", "petstore/list", "limit", "per-user", "header.x-user", user).Statuses[0]
	}

	// v1: only RateLimitConfig (what envoyproxy/ratelimit would get).
	x.set(t, "v1", []*rlsconfv3.RateLimitConfig{rlc, ghFromRLC}, nil)
	testenv.WaitFor(t, "v1 served", 10*time.Second, func() bool { return gh("a").GetCurrentLimit().GetRequestsPerUnit() == 9 })
	testenv.WaitFor(t, "ACK of v1 (both types)", 10*time.Second, func() bool {
		return x.Acked(contract.RateLimitConfigType, "v1") && x.Acked(contract.ExtensionConfigType, "v1")
	})
	if l := r.call(t, "api", "k", "x").Statuses[0].GetCurrentLimit().GetRequestsPerUnit(); l != 3 {
		t.Fatalf("api domain limit %d", l)
	}

	// v2: the extension resources arrive and are authoritative for gatehouse
	// (a 30s sliding window no RateLimitConfig can carry).
	docsRules := compileSpec(t, specYAML)
	x.set(t, "v2", []*rlsconfv3.RateLimitConfig{rlc, ghFromRLC}, []*ratelimit.SpecRules{docsRules})
	testenv.WaitFor(t, "v2 served", 10*time.Second, func() bool { return gh("b").GetCurrentLimit().GetRequestsPerUnit() == 2 })
	if u := gh("c").GetCurrentLimit().GetUnit(); u != rlsv3.RateLimitResponse_RateLimit_UNKNOWN {
		t.Fatalf("30s window reported as %s", u)
	}
	testenv.WaitFor(t, "ACK of v2", 10*time.Second, func() bool { return x.Acked(contract.ExtensionConfigType, "v2") })

	// v3: a broken RateLimitConfig is NACKed with the reason; v2 keeps serving.
	bad := &rlsconfv3.RateLimitConfig{Name: "api", Domain: "api", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 1}}}}
	x.set(t, "v3", []*rlsconfv3.RateLimitConfig{bad}, []*ratelimit.SpecRules{docsRules})
	var nack *discoveryv3.DiscoveryRequest
	testenv.WaitFor(t, "a NACK", 10*time.Second, func() bool {
		nack = x.Find(func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
		return nack != nil
	})
	if nack.GetTypeUrl() != contract.RateLimitConfigType || nack.GetVersionInfo() != "v2" || !strings.Contains(nack.GetErrorDetail().GetMessage(), "descriptor has empty key") {
		t.Fatalf("NACK: type %s version %q detail %q", nack.GetTypeUrl(), nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	if l := r.call(t, "api", "k", "y").Statuses[0].GetCurrentLimit().GetRequestsPerUnit(); l != 3 {
		t.Fatalf("after a NACK the api domain limit is %d, want the last good 3", l)
	}
	// Bad extension payload: NACKed too.
	badRules := *docsRules
	badRules.Limits = append([]ratelimit.SpecLimit(nil), docsRules.Limits...)
	badRules.Limits[0].Algorithm = "leaky-bucket"
	x.set(t, "v4", []*rlsconfv3.RateLimitConfig{rlc}, []*ratelimit.SpecRules{&badRules})
	testenv.WaitFor(t, "the extension NACK", 10*time.Second, func() bool {
		return x.Find(func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetTypeUrl() == contract.ExtensionConfigType && strings.Contains(r.GetErrorDetail().GetMessage(), "leaky-bucket")
		}) != nil
	})
	if l := gh("d").GetCurrentLimit().GetRequestsPerUnit(); l != 2 {
		t.Fatalf("after the extension NACK the gatehouse limit is %d, want 2", l)
	}
}

func compileSpec(t *testing.T, y string) *ratelimit.SpecRules {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := LoadSpecDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rs[0]
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))
}

// TestXDSReconnect: the control plane goes away and comes back; the last
// good config serves meanwhile and the new one arrives after reconnecting.
func TestXDSReconnect(t *testing.T) {
	x := startXDS(t)
	cfg := func(n uint32) []*rlsconfv3.RateLimitConfig {
		return []*rlsconfv3.RateLimitConfig{{Name: "api", Domain: "api", Descriptors: []*rlsconfv3.RateLimitDescriptor{{
			Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: n}}}}}
	}
	x.set(t, "v1", cfg(3), nil)
	r := startRun(t, Config{XDSServer: x.Addr, NodeID: "rl-1"})
	limit := func() uint32 { return r.call(t, "api", "k", "x").Statuses[0].GetCurrentLimit().GetRequestsPerUnit() }
	testenv.WaitFor(t, "v1", 10*time.Second, func() bool { return limit() == 3 })
	x.Stop()
	for i := 0; i < 20; i++ {
		if l := limit(); l != 3 {
			t.Fatalf("while the control plane is down the limit is %d, want the last good 3", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	y := startXDSAt(t, x.Addr)
	y.set(t, "v2", cfg(8), nil)
	testenv.WaitFor(t, "v2 after reconnecting", 10*time.Second, func() bool { return limit() == 8 })
}
