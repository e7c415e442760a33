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
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/broker/osbclient"
	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// suite is the running system plus the test's Envoy node.
type suite struct {
	t          *testing.T
	ep         dev.Endpoints
	idp        *dev.IdP
	node       *envoyNode
	osb        *osbclient.Client
	ids        atomic.Int64
	authz      authv3.AuthorizationClient
	rls        rlsv3.RateLimitServiceClient
	als        alsv3.AccessLogService_StreamAccessLogsClient
	alsMu      sync.Mutex
	output     *bytes.Buffer
	alsStarted bool
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

// connectSidecars dials the sidecars at the addresses of the clusters the
// node received, as Envoy would.
func (s *suite) connectSidecars(ctx context.Context, cfg nodeConfig) {
	t := s.t
	dial := func(cluster string) *grpc.ClientConn {
		c, ok := cfg.clusters[cluster]
		if !ok {
			t.Fatalf("node has no cluster %s", cluster)
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		conn, err := grpc.NewClient(net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), envoyTLS(t, s.ep.PKI))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	s.authz = authv3.NewAuthorizationClient(dial("gatehouse_authz"))
	s.rls = rlsv3.NewRateLimitServiceClient(dial("gatehouse_ratelimit"))
	als, err := alsv3.NewAccessLogServiceClient(dial("gatehouse_accesslog")).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.als = als
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
// the node holds now.
func (s *suite) do(ctx context.Context, r httpRequest) outcome {
	t := s.t
	t.Helper()
	cfg := s.node.config()
	lis := cfg.lis["gatehouse_http"]
	if lis == nil {
		t.Fatal("node has no listener gatehouse_http")
	}
	hcm, err := hcmOf(lis)
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.routes[hcm.GetRds().GetRouteConfigName()]
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	o := outcome{RequestID: fmt.Sprintf("e2e-%d-%d", time.Now().UnixNano(), s.ids.Add(1))}
	r.Headers["x-request-id"] = o.RequestID
	if r.ClientIP == "" {
		r.ClientIP = "198.51.100.7"
	}
	vh, rt, err := matchRoute(rc, r)
	if err != nil {
		t.Fatal(err)
	}
	if rt == nil {
		o.Status = 404
		s.log(ctx, r, o, nil, false, false, "")
		return o
	}
	o.Route = rt.GetName()
	ctxExt, disabled, err := authzSettings(rc, vh, rt)
	if err != nil {
		t.Fatal(err)
	}
	// The request as the filters see it; each filter may change it.
	headers := make(map[string]string, len(r.Headers))
	for k, v := range r.Headers {
		headers[k] = v
	}
	r.Headers = headers
	var meta *structpb.Struct
	// The HCM's HTTP filters, in their configured order, up to the router.
filters:
	for _, f := range hcm.GetHttpFilters() {
		switch f.GetName() {
		case headerMutationFilterName:
			if err := applyHeaderMutation(f, rc, vh, rt, r.Headers); err != nil {
				t.Fatal(err)
			}
		case extAuthzFilterName:
			if disabled {
				continue
			}
			headers := map[string]string{":authority": r.Host, ":method": r.Method, ":path": r.Path, ":scheme": "https"}
			for k, v := range r.Headers {
				headers[k] = v
			}
			_, query, _ := strings.Cut(r.Path, "?")
			resp, err := s.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: r.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000},
				}}}},
				Request: &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: &authv3.AttributeContext_HttpRequest{
					Id: o.RequestID, Method: r.Method, Headers: headers, Path: r.Path, Host: r.Host, Scheme: "https", Query: query, Protocol: "HTTP/1.1",
				}},
				ContextExtensions: ctxExt,
			}})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			meta = resp.GetDynamicMetadata()
			o.Metadata = map[string]string{}
			for k, v := range meta.GetFields() {
				if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
					o.Metadata[k] = sv.StringValue
				}
			}
			if resp.GetStatus().GetCode() != 0 {
				o.Status = int(resp.GetDeniedResponse().GetStatus().GetCode())
				for _, h := range resp.GetDeniedResponse().GetHeaders() {
					if h.GetHeader().GetKey() == "x-gatehouse-reason" {
						o.Reason = h.GetHeader().GetValue()
					}
				}
				s.log(ctx, r, o, meta, true, false, "")
				return o
			}
			// Envoy's ext_authz sets the OK response's headers, then
			// removes its headers_to_remove.
			for _, h := range resp.GetOkResponse().GetHeaders() {
				r.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			for _, h := range resp.GetOkResponse().GetHeadersToRemove() {
				delete(r.Headers, h)
			}
		case rateLimitFilterName:
			descs := descriptors(rt, r, meta)
			if len(descs) == 0 {
				continue
			}
			domain, err := rateLimitDomain(hcm)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := s.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: descs, HitsAddend: 1})
			if err != nil {
				// As Envoy: a failed call lets the request through, limits
				// off, unless the filter has failure_mode_deny (then 500).
				t.Logf("ShouldRateLimit failed, applying the filter's failure mode: %v", err)
				if deny, derr := rateLimitFailureModeDeny(hcm); derr != nil || deny {
					o.Status = 500
					s.log(ctx, r, o, meta, false, false, "")
					return o
				}
			}
			if err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
				o.Status = 429
				s.log(ctx, r, o, meta, false, true, "")
				return o
			}
		case routerFilterName:
			break filters
		default:
			t.Fatalf("the node's HCM has HTTP filter %s, which this stand-in cannot play", f.GetName())
		}
	}
	// The router: the route's cluster, its EDS endpoint, the echo upstream.
	cluster := rt.GetRoute().GetCluster()
	cla := cfg.cla[cluster]
	if cla == nil {
		t.Fatalf("route %s: no endpoints received for cluster %s", rt.GetName(), cluster)
	}
	sa := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	target := "http://" + net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))) + r.Path
	req, _ := http.NewRequestWithContext(ctx, r.Method, target, nil)
	req.Host = r.Host
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upstream %s: %v", target, err)
	}
	defer resp.Body.Close()
	o.Status = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&o.Upstream)
	s.log(ctx, r, o, meta, false, false, cluster)
	return o
}

// log streams the ALS entry Envoy would write for the request.
func (s *suite) log(ctx context.Context, r httpRequest, o outcome, meta *structpb.Struct, uaex, rl bool, cluster string) {
	t := s.t
	cfg := s.node.config()
	hcm, _ := hcmOf(cfg.lis["gatehouse_http"])
	alc := &grpcalsv3.HttpGrpcAccessLogConfig{}
	if err := hcm.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(alc); err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for _, h := range alc.GetAdditionalRequestHeadersToLog() {
		if v, ok := r.Headers[h]; ok {
			kept[h] = v
		}
	}
	flags := &alv3.ResponseFlags{RateLimited: rl}
	if uaex {
		flags.UnauthorizedDetails = &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}
	}
	common := &alv3.AccessLogCommon{
		StartTime:               timestamppb.Now(),
		RouteName:               o.Route,
		DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: r.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}},
		ResponseFlags:           flags,
		UpstreamCluster:         cluster,
	}
	if meta != nil {
		common.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.ext_authz": meta}}
	}
	method := corev3.RequestMethod(corev3.RequestMethod_value[r.Method])
	entry := &alv3.HTTPAccessLogEntry{
		CommonProperties: common,
		Request:          &alv3.HTTPRequestProperties{RequestMethod: method, Authority: r.Host, Path: r.Path, RequestId: o.RequestID, UserAgent: r.Headers["user-agent"], RequestHeaders: kept},
		Response:         &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(uint32(o.Status))},
	}
	s.alsMu.Lock()
	defer s.alsMu.Unlock()
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*alv3.HTTPAccessLogEntry{entry}}}}
	if !s.alsStarted {
		msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: s.node.id, Cluster: s.node.group}, LogName: alc.GetCommonConfig().GetLogName()}
		s.alsStarted = true
	}
	if err := s.als.Send(msg); err != nil {
		t.Fatalf("ALS send: %v", err)
	}
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
}

func (s *suite) queryLogs(ctx context.Context, q url.Values) []logRecord {
	t := s.t
	req, _ := http.NewRequestWithContext(ctx, "GET", s.ep.AccessLogAPI+"/v1/logs?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+s.ep.AccessLogToken)
	resp, err := http.DefaultClient.Do(req)
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

// debugNodes reads the control plane's view of the connected nodes.
func (s *suite) debugNodes(ctx context.Context) map[string]map[string]string {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.ep.ControlPlaneAdmin+"/debug/nodes", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []struct {
			NodeID string            `json:"node_id"`
			Acked  map[string]string `json:"acked_versions"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		s.t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, n := range body.Nodes {
		out[n.NodeID] = n.Acked
	}
	return out
}
