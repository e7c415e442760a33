package authzsidecar

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

type running struct{ grpcAddr, adminAddr string }

// startRun runs the sidecar on 127.0.0.1:0 and stops it at cleanup.
func startRun(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	ready := make(chan running, 1)
	cfg.Ready = func(g, a net.Addr) { ready <- running{g.String(), a.String()} }
	s := testenv.Serve(t, "Run", 15*time.Second, func(ctx context.Context) error { return Run(ctx, cfg) })
	r := testenv.AwaitReady(t, s, ready, 10*time.Second)
	return &r
}

func TestRunSpecDir(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "petstore")
	writeSpec(t, dir, "billing")
	r := startRun(t, Config{SpecDir: dir})

	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hs, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || hs.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hs, err)
	}
	c := dial(t, r.grpcAddr)
	for _, spec := range []string{"petstore", "billing"} {
		resp, err := c.Check(ctxT(t), checkRequest(spec+"/read", map[string]string{"authorization": "Bearer " + token(spec, nil)}, ""))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("%s: %v %v", spec, resp, err)
		}
	}
	// A petstore token is not a billing token.
	resp, _ := c.Check(ctxT(t), checkRequest("billing/read", map[string]string{"authorization": "Bearer " + token("petstore", nil)}, ""))
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("cross-spec token: %v", resp)
	}
	if code, body := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	if _, body := testenv.HTTPGet(t, "http://"+r.adminAddr+"/debug/authz/routes"); strings.TrimSpace(body) != `{"routes":["billing/read","petstore/read"]}` {
		t.Fatalf("/debug/authz/routes = %s", body)
	}
	_, metrics := testenv.HTTPGet(t, "http://"+r.adminAddr+"/metrics")
	for _, want := range []string{
		`gatehouse_authz_checks_total{decision="allow",reason="allowed",route="petstore/read"} 1`,
		`gatehouse_authz_checks_total{decision="deny",reason="audience_not_accepted",route="billing/read"} 1`,
		`gatehouse_authz_decision_duration_seconds_count 3`,
		`gatehouse_authz_routes 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{},
		{SpecDir: dir, XDSServer: "127.0.0.1:1", NodeID: "n"},
		{XDSServer: "127.0.0.1:1"},
		{SpecDir: dir}, // empty directory
	} {
		cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
		if err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) started", cfg)
		}
	}
}

// xdsServer serves authz policies from a plain go-control-plane ADS
// server (testenv.XDS) to node authz-1.
type xdsServer struct{ *testenv.XDS }

func startXDS(t *testing.T) xdsServer { return xdsServer{testenv.StartXDS(t, "127.0.0.1:0")} }

func (s xdsServer) set(t *testing.T, version string, policies ...*authz.SpecPolicy) {
	t.Helper()
	var ext []testenv.Extension
	for _, p := range policies {
		ext = append(ext, testenv.Extension{Name: contract.AuthzPrefix + p.Spec, Type: contract.AuthzPolicyType, Value: p})
	}
	// Another concern's resource of the same type is not ours to read.
	ext = append(ext, testenv.Extension{Name: contract.RateLimitPrefix + "petstore", Type: contract.RateLimitRulesType, Value: map[string]any{"whatever": 1}})
	s.Set(t, "authz-1", version, map[string][]types.Resource{contract.ExtensionConfigType: testenv.WrapExtensions(t, ext...)})
}

func TestRunXDS(t *testing.T) {
	x := startXDS(t)
	r := startRun(t, Config{XDSServer: x.Addr, NodeID: "authz-1", NodeCluster: "us-east-1"})
	c := dial(t, r.grpcAddr)
	check := func(route string) (status int, reason string) {
		resp, err := c.Check(ctxT(t), checkRequest(route, map[string]string{"authorization": "Bearer " + token("petstore", nil)}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200, ""
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode()), respHeaders(resp)["x-gatehouse-reason"]
	}
	// No policy yet: fail closed.
	if s, reason := check("petstore/read"); s != 403 || !strings.HasPrefix(reason, "no_policy") {
		t.Fatalf("before any policy: %d %q", s, reason)
	}
	if code, _ := testenv.HTTPGet(t, "http://"+r.adminAddr+"/readyz"); code != 503 {
		t.Fatalf("readyz before policy = %d", code)
	}

	good := compileSpec(t, "petstore")
	x.set(t, "v1", good)
	testenv.WaitFor(t, "policy v1 to be served", 10*time.Second, func() bool { s, _ := check("petstore/read"); return s == 200 })
	testenv.WaitFor(t, "ACK of v1", 10*time.Second, func() bool { return x.acked("v1") })

	// v2 is broken: NACKed, and v1 keeps serving.
	bad := compileSpec(t, "petstore")
	bad.Routes[0].Rules = []authz.Rule{{Allow: true, When: "request.path"}}
	x.set(t, "v2", bad)
	nack := x.waitNACK(t)
	if !strings.Contains(nack.GetErrorDetail().GetMessage(), "boolean") || nack.GetVersionInfo() != "v1" {
		t.Fatalf("NACK = version %q detail %q", nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	if s, _ := check("petstore/read"); s != 200 {
		t.Fatalf("last good policy not kept after a NACK: %d", s)
	}

	// v3 drops petstore for billing: petstore routes become unknown (403).
	x.set(t, "v3", compileSpec(t, "billing"))
	testenv.WaitFor(t, "policy v3", 10*time.Second, func() bool { s, _ := check("petstore/read"); return s == 403 })
	if _, reason := check("petstore/read"); !strings.HasPrefix(reason, "unknown_route") {
		t.Fatalf("removed route: %q", reason)
	}
	testenv.WaitFor(t, "ACK of v3", 10*time.Second, func() bool { return x.acked("v3") })
}

func (s xdsServer) acked(version string) bool { return s.Acked("", version) }

func (s xdsServer) waitNACK(t *testing.T) *discoveryv3.DiscoveryRequest {
	t.Helper()
	testenv.WaitFor(t, "a NACK", 10*time.Second, func() bool { return s.NACK() != nil })
	return s.NACK()
}

func TestRunSpecDirReload(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "petstore")
	r := startRun(t, Config{SpecDir: dir, SpecPoll: 20 * time.Millisecond})
	c := dial(t, r.grpcAddr)
	status := func(spec string) int {
		resp, err := c.Check(ctxT(t), checkRequest(spec+"/read", map[string]string{"authorization": "Bearer " + token(spec, nil)}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	if status("billing") != 403 {
		t.Fatal("billing served before it exists")
	}
	writeSpec(t, dir, "billing")
	testenv.WaitFor(t, "billing to load", 10*time.Second, func() bool { return status("billing") == 200 })
	// A broken file keeps the last good policies.
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("apiVersion: gatehouse/v1\nkind: EdgeRoute\nnope: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if status("billing") != 200 || status("petstore") != 200 {
		t.Fatal("a broken spec file replaced the last good policies")
	}
	if err := os.Remove(filepath.Join(dir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "billing.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "billing to go", 10*time.Second, func() bool { return status("billing") == 403 })
}

// The spec dir reloads on file events, not only when --spec-poll comes
// round (here: never within the test).
func TestRunSpecDirReloadsOnFileEvents(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "petstore")
	r := startRun(t, Config{SpecDir: dir, SpecPoll: time.Hour})
	c := dial(t, r.grpcAddr)
	allowed := func(spec string) bool {
		resp, err := c.Check(ctxT(t), checkRequest(spec+"/read", map[string]string{"authorization": "Bearer " + token(spec, nil)}, ""))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOkResponse() != nil
	}
	if allowed("billing") {
		t.Fatal("billing served before it exists")
	}
	writeSpec(t, dir, "billing")
	testenv.WaitFor(t, "billing to load on a file event", 10*time.Second, func() bool { return allowed("billing") })
}
