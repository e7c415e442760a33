package e2e

// Shared by the deployment tests (deploy_*_test.go): build the gatehouse
// binary once, run roles as processes the way an artifact says (argv,
// environment, files) with every listen and dial address remapped to a
// free loopback port, restart them when they exit (as kubelet and systemd
// do), probe them, and drive the end-to-end flow against them.

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// fixtures are the test's own demo IdP and echo upstream (on loopback),
// the petstore spec pointing at them, and env: what the tests add to the
// environment of an artifact's gatehouse roles so that those fixtures are
// allowed, never for the artifact's behaviour. Test-only overrides, set by
// no shipped artifact: the IdP serves its JWKS over plain http on
// 127.0.0.1, which the authz sidecar's JWKS fetch guard refuses unless
// --jwks-allow names it; the echo upstream is on loopback, which the
// upstream policy refuses unless --upstream-allow names it.
type fixtures struct {
	idp      *dev.IdP
	specDir  string
	echoAddr string
	env      []string
}

func demoFixtures(t *testing.T) *fixtures {
	t.Helper()
	idp, idpAddr, echoAddr, dir := demoUpstreams(t)
	return &fixtures{idp: idp, specDir: dir, echoAddr: echoAddr, env: []string{
		"GATEHOUSE_AUTHZ_JWKS_ALLOW=" + idpAddr,
		"GATEHOUSE_BROKER_UPSTREAM_ALLOW=" + echoAddr,
		"GATEHOUSE_WORKER_UPSTREAM_ALLOW=" + echoAddr,
		"GATEHOUSE_CONTROLPLANE_UPSTREAM_ALLOW=" + echoAddr,
	}}
}

// deployPKI is the internal CA of a deployment and the certificates the
// artifact mounts, minted the way docs/DEPLOY.md says: `gatehouse certs
// ca|server|node` run with the binary under test.
type deployPKI struct {
	t           *testing.T
	bin, dir    string
	CAFile, key string
}

func mintPKI(t *testing.T, bin string) *deployPKI {
	t.Helper()
	p := &deployPKI{t: t, bin: bin, dir: t.TempDir()}
	p.run("ca", "--name", "gatehouse deploy-test CA", "--out-dir", p.dir)
	p.CAFile, p.key = filepath.Join(p.dir, "ca.crt"), filepath.Join(p.dir, "ca.key")
	return p
}

func (p *deployPKI) run(args ...string) {
	p.t.Helper()
	cmd := exec.Command(p.bin, append([]string{"certs"}, args...)...)
	cmd.Env = baseEnv(p.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("gatehouse certs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// server issues a server certificate for hosts; it returns the files.
func (p *deployPKI) server(name string, hosts ...string) (crt, key string) {
	p.t.Helper()
	args := []string{"server", "--ca-cert", p.CAFile, "--ca-key", p.key, "--name", name, "--out-dir", p.dir}
	for _, h := range hosts {
		args = append(args, "--host", h)
	}
	p.run(args...)
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

// node issues a node certificate of group; it returns the files.
func (p *deployPKI) node(name, group string) (crt, key string) {
	p.t.Helper()
	p.run("node", "--ca-cert", p.CAFile, "--ca-key", p.key, "--name", name, "--group", group, "--out-dir", p.dir)
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

// read is a file's content (what a Secret or secret file holds).
func (p *deployPKI) read(file string) string {
	p.t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		p.t.Fatal(err)
	}
	return string(b)
}

// httpsClient trusts the deployment's CA only.
func (p *deployPKI) httpsClient() *http.Client {
	p.t.Helper()
	pool, err := tlsconfig.LoadPool(p.CAFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}}
}

var (
	gatehouseBinOnce sync.Once
	gatehouseBinPath string
	gatehouseBinErr  error
)

// gatehouseBinary builds ./cmd/gatehouse once per test binary.
func gatehouseBinary(t *testing.T) string {
	t.Helper()
	gatehouseBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-e2e-bin-")
		if err != nil {
			gatehouseBinErr = err
			return
		}
		gatehouseBinPath = filepath.Join(dir, "gatehouse")
		cmd := exec.Command("go", "build", "-o", gatehouseBinPath, "./cmd/gatehouse")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			gatehouseBinErr = fmt.Errorf("go build ./cmd/gatehouse: %v\n%s", err, out)
		}
	})
	if gatehouseBinErr != nil {
		t.Fatal(gatehouseBinErr)
	}
	return gatehouseBinPath
}

// portMap sends every address of an artifact (0.0.0.0:P, 127.0.0.1:P,
// localhost:P, a Service or Compose host name with :P) to 127.0.0.1:P',
// one free P' per original port P, so what listens on P and what dials P
// meet on loopback. The artifacts give every role its own port, which the
// tests check (see listens).
type portMap struct {
	t     *testing.T
	mu    sync.Mutex
	ports map[int]int
	hosts map[string]bool // names that mean "that role" (Services, Compose services)
}

func newPortMap(t *testing.T) *portMap {
	return &portMap{t: t, ports: map[int]int{}, hosts: map[string]bool{"0.0.0.0": true, "127.0.0.1": true, "localhost": true}}
}

// port returns the loopback port standing for original port p.
func (m *portMap) port(p int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if q, ok := m.ports[p]; ok {
		return q
	}
	q := testenv.FreePort(m.t)
	m.ports[p] = q
	return q
}

// set pins original port p to a server the test started (ClickHouse).
func (m *portMap) set(p, q int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ports[p] = q
}

func (m *portMap) addr(p int) string { return "127.0.0.1:" + strconv.Itoa(m.port(p)) }

var hostPortRE = regexp.MustCompile(`([A-Za-z0-9_.-]+):([0-9]{2,5})\b`)

// remap rewrites every host:port in s whose host is loopback, any, or a
// known service name.
func (m *portMap) remap(s string) string {
	return hostPortRE.ReplaceAllStringFunc(s, func(hp string) string {
		sub := hostPortRE.FindStringSubmatch(hp)
		host, p := sub[1], sub[2]
		m.mu.Lock()
		known := m.hosts[host] || strings.HasSuffix(host, ".svc") || strings.Contains(host, ".svc.")
		m.mu.Unlock()
		if !known {
			return hp
		}
		n, _ := strconv.Atoi(p)
		m.mu.Lock()
		for _, q := range m.ports {
			if q == n && host == "127.0.0.1" {
				m.mu.Unlock()
				return hp // already remapped
			}
		}
		m.mu.Unlock()
		return m.addr(n)
	})
}

// text is the buffer's content, read under its lock (the process may
// still be writing).
func (b *lockedBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// role is one process of an artifact.
type role struct {
	name  string
	argv  []string // argv[0] is the binary
	env   []string // exactly the artifact's environment (plus what the test adds)
	dir   string
	probe []probe // readiness and liveness, in order
}

type probe struct {
	what string
	argv []string // exec probe
	env  []string
	url  string // HTTP probe (GET, no credentials)
}

// baseEnv is what any process gets from its runtime: a PATH and a HOME.
func baseEnv(home string) []string {
	return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home}
}

// supervise runs r until the test ends, restarting it after it exits (as
// restartPolicy Always and Restart=always do), and returns its log.
func supervise(t *testing.T, ctx context.Context, r role) *lockedBuffer {
	t.Helper()
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cmd := exec.Command(r.argv[0], r.argv[1:]...)
			cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = r.env, r.dir, out, out
			if err := cmd.Start(); err != nil {
				fmt.Fprintf(out, "[test] start %s: %v\n", r.name, err)
			} else {
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				select {
				case err := <-exited:
					fmt.Fprintf(out, "[test] %s exited: %v; restarting\n", r.name, err)
				case <-ctx.Done():
					_ = cmd.Process.Signal(os.Interrupt)
					select {
					case <-exited:
					case <-time.After(15 * time.Second):
						_ = cmd.Process.Kill()
						<-exited
					}
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("--- %s (%s) output:\n%s", r.name, strings.Join(r.argv, " "), out.text())
		}
	})
	return out
}

// waitProbes calls every probe of r as the kubelet or a load balancer
// would, without credentials, until each passes (exit 0 / HTTP 200).
func waitProbes(t *testing.T, ctx context.Context, r role, out *lockedBuffer, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range r.probe {
		for {
			err := runProbe(ctx, p)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s probe never passed: %v\n%s", r.name, p.what, err, out.text())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// superviseAll supervises every role, waits until the probes of those
// first picks pass (the platform calls them first) and probes the rest in
// the background; it returns probeInBackground's wait.
func superviseAll(t *testing.T, ctx context.Context, roles []role, first func(role) bool, within time.Duration) (wait func()) {
	t.Helper()
	logs := map[string]*lockedBuffer{}
	for _, r := range roles {
		logs[r.name] = supervise(t, ctx, r)
	}
	var rest []role
	for _, r := range roles {
		if first(r) {
			waitProbes(t, ctx, r, logs[r.name], 2*time.Minute)
		} else {
			rest = append(rest, r)
		}
	}
	return probeInBackground(t, ctx, rest, logs, within)
}

// probeInBackground probes every role like a kubelet (each until it
// passes) while the test goes on; the returned func waits for all of them
// and fails the test for any that did not pass within the deadline.
func probeInBackground(t *testing.T, ctx context.Context, roles []role, logs map[string]*lockedBuffer, within time.Duration) (wait func()) {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(roles))
	deadline := time.Now().Add(within)
	for _, r := range roles {
		go func() {
			for _, p := range r.probe {
				for {
					err := runProbe(ctx, p)
					if err == nil {
						break
					}
					if time.Now().After(deadline) || ctx.Err() != nil {
						results <- result{r.name, fmt.Errorf("%s probe never passed: %v", p.what, err)}
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			results <- result{r.name, nil}
		}()
	}
	return func() {
		t.Helper()
		for range roles {
			if res := <-results; res.err != nil {
				t.Errorf("%s: %v\n%s", res.name, res.err, logs[res.name].text())
			}
		}
	}
}

func runProbe(ctx context.Context, p probe) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if p.url != "" {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %d", p.url, resp.StatusCode)
		}
		return nil
	}
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(p.argv, " "), err, out)
	}
	return nil
}

// deployed is what the flow needs from a running deployment.
type deployed struct {
	broker, brokerUser, brokerPassword string // OSB base URL and login
	xds                                string // control plane xDS host:port
	queryAPI, queryToken               string // accesslog query API base URL, bearer token
	nodeGroup                          string
	sidecar                            func(addr string) string // Envoy's view of a sidecar address → where the test reaches it
	counters                           func() int               // keys in the shared Redis
	noJWKS                             bool                     // the sidecars cannot reach the test's loopback IdP
	pki                                *deployPKI               // the deployment's internal CA
	fx                                 *fixtures                // the test's IdP, upstream and spec
	envoy                              tlsconfig.Client         // the files the artifact gives its Envoy (CA, node certificate of nodeGroup)
}

// demoUpstreams starts the demo IdP (JWKS) and echo upstream on loopback
// and writes the example petstore spec pointing at them into a directory.
func demoUpstreams(t *testing.T) (idp *dev.IdP, idpAddr, echoAddr, dir string) {
	t.Helper()
	idp, err := dev.LoadIdP(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := httptest.NewServer(idp.Handler())
	t.Cleanup(idpSrv.Close)
	echo := httptest.NewServer(dev.EchoHandler())
	t.Cleanup(echo.Close)
	b, err := os.ReadFile("../deploy/examples/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	idpAddr, echoAddr = strings.TrimPrefix(idpSrv.URL, "http://"), strings.TrimPrefix(echo.URL, "http://")
	if !strings.Contains(string(b), "127.0.0.1:9081") || !strings.Contains(string(b), dev.DemoUpstream) {
		t.Fatalf("deploy/examples/petstore.yaml names neither the demo IdP 127.0.0.1:9081 nor the demo upstream %s", dev.DemoUpstream)
	}
	s := strings.ReplaceAll(string(b), "127.0.0.1:9081", idpAddr)
	s = strings.ReplaceAll(s, dev.DemoUpstream, echoAddr)
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "petstore.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return idp, idpAddr, echoAddr, dir
}

// driveFlow is the end-to-end flow against a deployment: provision the
// petstore spec over OSB, attach an Envoy stand-in as a node of the
// deployment's group, Check (token and bound API key), ShouldRateLimit
// (counters land in the deployment's Redis), ALS, and query the log.
func driveFlow(t *testing.T, ctx context.Context, d deployed) {
	t.Helper()
	idp, specDir := d.fx.idp, d.fx.specDir
	if !strings.HasPrefix(d.broker, "https://") || !strings.HasPrefix(d.queryAPI, "https://") {
		t.Fatalf("the broker (%s) and the query API (%s) must be served over HTTPS", d.broker, d.queryAPI)
	}
	https := d.pki.httpsClient()
	osb := &osbclient.Client{BaseURL: d.broker, Username: d.brokerUser, Password: d.brokerPassword,
		Identity: "gatehouse " + base64.StdEncoding.EncodeToString([]byte(`{"user":"deploy-test"}`)), HTTP: https}
	docs, err := spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: spec.MustParseUpstreamAllow(d.fx.echoAddr)}}.Load(specDir)
	if err != nil || len(docs) != 1 {
		t.Fatalf("petstore spec: %v", err)
	}
	body, err := docs[0].EdgeRoute.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := osb.Provision(ctx, "petstore", body)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	final, err := osbclient.Wait(ctx, 90*time.Second, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.LastOperation(ctx, "petstore", resp.Operation)
	}, nil)
	if err != nil || final.State != "succeeded" {
		t.Fatalf("provision petstore: %+v %v", final, err)
	}

	s := &suite{t: t, idp: idp, osb: osb, ep: dev.Endpoints{AccessLogAPI: d.queryAPI, AccessLogToken: d.queryToken, NodeGroup: d.nodeGroup}}
	// The Envoy stand-in speaks mutual TLS with the artifact's node
	// certificate, to xDS and to the sidecars, as the bootstrap says.
	envoyCreds := clientTLS(t, d.envoy)
	s.node = startEnvoyNode(t, ctx, d.xds, envoyCreds, "deploy-test-envoy", d.nodeGroup)
	cfg := s.node.waitFor(t, 60*time.Second, "listener, routes, clusters and endpoints", func(c nodeConfig) bool {
		rc := c.Routes["gatehouse_routes"]
		return c.Listeners["gatehouse_http"] != nil && rc != nil && selectVirtualHost(rc, petstore) != nil &&
			c.CLA["petstore/api"] != nil && c.Clusters["gatehouse_authz"] != nil
	})
	// The front door dials the sidecars at the clusters' addresses, which
	// the deployment publishes elsewhere (d.sidecar).
	remap := map[string]string{}
	for _, cluster := range []string{"gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog"} {
		c, ok := cfg.Clusters[cluster]
		if !ok {
			t.Fatalf("node has no cluster %s", cluster)
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		a := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
		target := d.sidecar(a)
		remap[a] = target
		// The sidecar refuses a client without a certificate.
		plain, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(plain).Check(cctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("sidecar %s (%s) answered a plaintext client: %v", cluster, target, err)
		}
	}
	s.openDoor(envoyCreds, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		if to, ok := remap[a]; ok {
			a = to
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	}))

	// A binding's API key reaches the authz sidecar (the first Check that
	// passes proves the sidecars' node group gets config).
	bind, err := osb.Bind(ctx, "petstore", "deploy-binding", "partners", map[string]string{"plan": "gold"})
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	bfinal, err := osbclient.Wait(ctx, 60*time.Second, func(ctx context.Context) (*osbclient.Response, error) {
		return osb.BindingLastOperation(ctx, "petstore", "deploy-binding", bind.Operation)
	}, nil)
	if err != nil || bfinal.State != "succeeded" {
		t.Fatalf("bind: %+v %v", bfinal, err)
	}
	creds := bind.Credentials
	if creds == nil || creds.APIKey == "" {
		got, err := osb.Bind(ctx, "petstore", "deploy-binding", "partners", map[string]string{"plan": "gold"})
		if err != nil || got.Credentials == nil {
			t.Fatalf("binding returned no api_key: %+v %v", got, err)
		}
		creds = got.Credentials
	}
	keyReq := httpRequest{Method: "GET", Host: petstore, Path: "/pets", Headers: map[string]string{creds.Header: creds.APIKey, "user-agent": "deploy-test"}}
	waitUntil(t, 60*time.Second, "the bound API key is accepted (the sidecars' node group has config)", func() bool { return s.do(ctx, keyReq).Status == 200 })
	if o := s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets"}); o.Status != 401 {
		t.Fatalf("no credential: %d, want 401", o.Status)
	}
	allowed := s.do(ctx, keyReq)
	if allowed.Status != 200 {
		t.Fatalf("API key: %d (%s), want 200", allowed.Status, allowed.Reason)
	}
	// A request the sidecar could not decide within its Redis budget is
	// answered by the failure mode (allow) and leaves no counter; a few
	// more allowed requests, then the counter must be there.
	for i := 0; i < 5 && d.counters() == 0; i++ {
		time.Sleep(300 * time.Millisecond)
		s.do(ctx, keyReq)
	}
	if n := d.counters(); n == 0 {
		t.Fatal("no rate-limit counter in the deployment's Redis after allowed requests")
	}
	// A JWT from the demo IdP, whose JWKS the authz sidecar fetches (skipped
	// where the sidecar cannot reach the test's loopback IdP: containers).
	if !d.noJWKS {
		token := "Bearer " + s.token("alice", []string{"pets:read"}, nil)
		waitUntil(t, 30*time.Second, "a token of the demo IdP is accepted", func() bool {
			return s.do(ctx, httpRequest{Method: "GET", Host: petstore, Path: "/pets", Headers: map[string]string{"authorization": token}}).Status == 200
		})
	}

	// The log of the allowed request, through ALS and the query API (HTTPS).
	waitUntil(t, 60*time.Second, "log record of the allowed request", func() bool {
		recs := queryLogsAt(t, ctx, https, d.queryAPI, d.queryToken, url.Values{"request_id": {allowed.RequestID}, "since": {"1h"}})
		return len(recs) == 1 && recs[0].Status == 200 && recs[0].APIKeyID == creds.APIKeyID
	})
	checkXDSRefused(t, ctx, d)
}

// checkXDSRefused: the deployment's xDS port refuses a plaintext client
// and a TLS client without a certificate (the connection fails), and a
// node certificate of another group asking for this group's config is
// refused with PermissionDenied.
func checkXDSRefused(t *testing.T, ctx context.Context, d deployed) {
	t.Helper()
	ads := func(creds grpc.DialOption, id string) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := grpc.NewClient(d.xds, creds)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err == nil {
			_ = st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: d.nodeGroup}, TypeUrl: resource.ClusterType})
			_, err = st.Recv()
		}
		return err
	}
	if err := ads(grpc.WithTransportCredentials(insecure.NewCredentials()), "plaintext-intruder"); status.Code(err) != codes.Unavailable {
		t.Errorf("xDS, plaintext client: %v, want the connection refused", err)
	}
	if err := ads(clientTLS(t, tlsconfig.Client{CAFile: d.envoy.CAFile}), "certless-intruder"); status.Code(err) != codes.Unavailable {
		t.Errorf("xDS, TLS without a client certificate: %v, want the connection refused", err)
	}
	crt, key := d.pki.node("other-group-intruder", "other-group")
	if err := ads(clientTLS(t, tlsconfig.Client{CAFile: d.pki.CAFile, CertFile: crt, KeyFile: key}), "other-group-intruder"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("xDS, a node certificate of another group asking for %s: %v, want PermissionDenied", d.nodeGroup, err)
	}
}
