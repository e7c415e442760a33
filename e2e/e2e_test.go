// Package e2e runs the whole suite as `gatehouse dev` does and plays an
// Envoy node against it: configuration comes only over ADS, and every
// sidecar call is derived from that configuration.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/frontdoor"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// suite is the running system plus the test's Envoy node.
type suite struct {
	t      *testing.T
	ep     dev.Endpoints
	idp    *dev.IdP
	node   *envoyNode
	door   *frontdoor.Door
	osb    *osbclient.Client
	output *bytes.Buffer
}

type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func addr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// devConfig is gatehouse dev's configuration on free loopback ports, with
// the example specs pointed at this test's demo IdP and echo upstream.
func devConfig(t *testing.T) (dev.Config, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	cfg := dev.DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.BrokerAddr, cfg.BrokerAdminAddr = addr(t), addr(t)
	cfg.XDSAddr, cfg.ControlPlaneAdminAddr = addr(t), addr(t)
	cfg.AuthzAddr, cfg.AuthzAdminAddr = addr(t), addr(t)
	cfg.RateLimitAddr, cfg.RateLimitAdmin = addr(t), addr(t)
	cfg.AccessLogGRPCAddr, cfg.AccessLogAPI = addr(t), addr(t)
	cfg.IdPAddr, cfg.EchoAddr = addr(t), addr(t)
	cfg.EnvoyListenerAddr = "127.0.0.1:10080"
	cfg.FrontDoorAddr = addr(t)

	cfg.ExamplesDir = filepath.Join(dir, "examples")
	if err := os.MkdirAll(cfg.ExamplesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../deploy/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example specs in deploy/examples")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "127.0.0.1:9081", cfg.IdPAddr)
		s = strings.ReplaceAll(s, "127.0.0.1:9080", cfg.EchoAddr)
		if err := os.WriteFile(filepath.Join(cfg.ExamplesDir, filepath.Base(f)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := &lockedBuffer{}
	cfg.Out = out
	cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg, out
}

// runDev starts dev.Run and waits until it is ready. stop cancels it, as
// Ctrl-C does, and returns what Run returned (or a timeout).
func runDev(t *testing.T, ctx context.Context, cfg dev.Config, out *lockedBuffer) (ep dev.Endpoints, stop func() error) {
	t.Helper()
	epc := make(chan dev.Endpoints, 1)
	cfg.Ready = func(e dev.Endpoints) { epc <- e }
	errc := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { errc <- dev.Run(runCtx, cfg) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-errc:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("dev.Run did not stop within 30s of cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("dev.Run: %v", err)
		}
	})
	select {
	case ep = <-epc:
	case err := <-errc:
		t.Fatalf("dev.Run: %v\n%s", err, out.String())
	case <-time.After(120 * time.Second):
		t.Fatalf("suite not ready after 120s:\n%s", out.String())
	}
	return ep, stop
}

func startSuite(t *testing.T, ctx context.Context) *suite {
	t.Helper()
	cfg, out := devConfig(t)
	ep, _ := runDev(t, ctx, cfg, out)
	s := &suite{t: t, ep: ep, output: &out.Buffer}
	if len(s.ep.Provisioned) != 2 {
		t.Fatalf("provisioned %v on first start, want both examples", s.ep.Provisioned)
	}
	var err error
	if s.idp, err = dev.LoadIdP(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	s.osb = &osbclient.Client{BaseURL: s.ep.Broker, Username: s.ep.BrokerUser, Password: s.ep.BrokerPassword}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connectSidecars builds the test's front door on the node: it dials the
// sidecars at the addresses of the clusters the node received, as Envoy
// would.
func (s *suite) connectSidecars(ctx context.Context, cfg nodeConfig) {
	t := s.t
	for _, c := range []string{"gatehouse_authz", "gatehouse_ratelimit", "gatehouse_accesslog"} {
		if _, ok := cfg.Clusters[c]; !ok {
			t.Fatalf("node has no cluster %s", c)
		}
	}
	// An Envoy of the dev node group presents its node certificate.
	s.openDoor(envoyTLS(t, s.ep.PKI))
}

// openDoor builds the test's front door on s.node; dial carries the
// transport credentials toward the sidecars.
func (s *suite) openDoor(dial ...grpc.DialOption) {
	t := s.t
	door, err := frontdoor.New(s.node.Node, frontdoor.Options{
		Dial: dial,
		// A loaded test machine must not turn a slow call into the
		// filters' failure modes.
		MinSidecarTimeout: 10 * time.Second,
		Log:               slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { door.Close() })
	s.door = door
}

// outcome is what Envoy did with one request.
type outcome struct {
	RequestID string
	Route     string
	Status    int
	Metadata  map[string]string // ext_authz dynamic metadata
	Upstream  map[string]any    // the echo upstream's answer
	Reason    string
}

// do processes one request as Envoy's filter chain would, with the config
// the node holds now (the front door package plays it).
func (s *suite) do(ctx context.Context, r httpRequest) outcome {
	t := s.t
	t.Helper()
	if r.ClientIP == "" {
		r.ClientIP = "198.51.100.7"
	}
	o, err := s.door.Do(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	switch o.Details {
	case "ext_authz_error":
		t.Fatalf("route %s: the Check call failed", o.Route)
	case "no_healthy_upstream", "upstream_reset_before_response_started{connection_failure}", "upstream_response_timeout":
		t.Fatalf("route %s: upstream cluster %s: %s", o.Route, o.Cluster, o.Details)
	}
	out := outcome{RequestID: o.RequestID, Route: o.Route, Status: o.Status, Metadata: o.Metadata, Reason: o.Reason}
	if o.Details == "via_upstream" {
		_ = json.Unmarshal(o.Body, &out.Upstream)
	}
	return out
}

// logRecord is what the query API returns per request.
type logRecord struct {
	RequestID string `json:"request_id"`
	Route     string `json:"route"`
	Status    int    `json:"status"`
	Subject   string `json:"subject"`
	Decision  string `json:"decision"`
	APIKeyID  string `json:"apikey_id"`
	Flags     string `json:"response_flags"`
	Headers   string `json:"headers"`
	// ConfigVersion is the node group's config version that served it.
	ConfigVersion string `json:"config_version"`
}

func (s *suite) queryLogs(ctx context.Context, q url.Values) []logRecord {
	return queryLogsAt(s.t, ctx, http.DefaultClient, s.ep.AccessLogAPI, s.ep.AccessLogToken, q)
}

// queryLogsAt asks the query API at base with hc and the bearer token.
func queryLogsAt(t *testing.T, ctx context.Context, hc *http.Client, base, token string, q url.Values) []logRecord {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/logs?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/logs?%s: %d %s", q.Encode(), resp.StatusCode, body)
	}
	var page struct {
		Records []logRecord `json:"records"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("decoding /v1/logs: %v\n%s", err, body)
	}
	return page.Records
}

func (s *suite) token(sub string, scopes, groups []string) string {
	tok, err := s.idp.Mint(dev.TokenRequest{Subject: sub, Scopes: scopes, Groups: groups}, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// debugNode is one node of /debug/nodes: the revision it runs and the
// version it ACKed per type.
type debugNode struct {
	Revision string            `json:"revision"`
	Acked    map[string]string `json:"acked_versions"`
}

// debugNodes reads the control plane's view of the connected nodes.
func (s *suite) debugNodes(ctx context.Context) map[string]debugNode {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.ep.ControlPlaneAdmin+"/debug/nodes", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []struct {
			NodeID string `json:"node_id"`
			debugNode
		} `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		s.t.Fatal(err)
	}
	out := map[string]debugNode{}
	for _, n := range body.Nodes {
		out[n.NodeID] = n.debugNode
	}
	return out
}
