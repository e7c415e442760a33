package frontdoor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultListener is the listener a Door plays unless told otherwise.
const DefaultListener = "gatehouse_http"

// maxBody bounds what the door reads of a request or upstream body.
const maxBody = 8 << 20

// Options configure a Door.
type Options struct {
	// Listener is the name of the node's listener to play (DefaultListener).
	Listener string
	// Dial carries the transport credentials (and any other options) for
	// the sidecars' gRPC clusters. Required. A grpc.WithContextDialer
	// here sees each cluster's endpoint as the config writes it
	// ("authz:9001"), unresolved.
	Dial []grpc.DialOption
	// Upstream sends the routed request; nil: a client with no proxy that
	// follows no redirects (the route's timeout bounds each request).
	Upstream *http.Client
	// MinSidecarTimeout is the least time a sidecar call gets, whatever
	// the filter's timeout says (a loaded test machine, a cold first
	// connection); zero keeps the filters' timeouts, as Envoy does.
	MinSidecarTimeout time.Duration
	Log               *slog.Logger
}

// Door plays one Envoy of a node group on the config its Node holds: the
// HCM's HTTP filters in their configured order (header mutation,
// ext_authz, ratelimit, router), the gRPC access log, and the upstream.
// It is a development tool; production runs Envoy.
type Door struct {
	node *Node
	o    Options

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by sidecar address
	als   map[string]alsv3.AccessLogService_StreamAccessLogsClient
	alsMu sync.Mutex
	ctx   context.Context
	stop  context.CancelFunc
}

// New returns a Door that plays node's config.
func New(node *Node, o Options) (*Door, error) {
	if len(o.Dial) == 0 {
		return nil, errors.New("frontdoor: no dial options for the sidecars (pass the transport credentials)")
	}
	if o.Listener == "" {
		o.Listener = DefaultListener
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Upstream == nil {
		o.Upstream = &http.Client{
			Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Door{node: node, o: o, conns: map[string]*grpc.ClientConn{},
		als: map[string]alsv3.AccessLogService_StreamAccessLogsClient{}, ctx: ctx, stop: stop}, nil
}

// Close ends the access-log streams and the sidecar connections.
func (d *Door) Close() error {
	d.stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, c := range d.conns {
		errs = append(errs, c.Close())
	}
	d.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}

// Outcome is what the door did with one request.
type Outcome struct {
	RequestID string
	Route     string // the matched route's name; empty: none matched
	Cluster   string // the upstream cluster, when the router ran
	Status    int
	Header    http.Header // the response headers sent downstream
	Body      []byte
	// Metadata is the ext_authz dynamic metadata (string values); nil
	// when ext_authz did not run for the request.
	Metadata map[string]string
	Reason   string // x-gatehouse-reason of a denial
	// Details is Envoy's response code details (%RESPONSE_CODE_DETAILS%):
	// via_upstream, route_not_found, ext_authz_denied, ext_authz_error,
	// request_rate_limited, rate_limiter_error, no_healthy_upstream,
	// upstream_reset_before_response_started{connection_failure}.
	Details string
}

// sidecar returns a connection to the gRPC service a filter names: its
// envoy_grpc cluster, that cluster's first endpoint.
func (d *Door) sidecar(cfg NodeConfig, svc *corev3.GrpcService) (*grpc.ClientConn, error) {
	cluster := svc.GetEnvoyGrpc().GetClusterName()
	addr, err := endpointOf(cfg, cluster)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[addr]; ok {
		return c, nil
	}
	// passthrough: the address goes to the dialer as written (a name is
	// resolved when dialled, as Envoy's STRICT_DNS cluster resolves it).
	c, err := grpc.NewClient("passthrough:///"+addr, d.o.Dial...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	d.conns[addr] = c
	return c, nil
}

// endpointOf is the first endpoint of a cluster, from its static load
// assignment or from EDS.
func endpointOf(cfg NodeConfig, cluster string) (string, error) {
	c, ok := cfg.Clusters[cluster]
	if !ok {
		return "", fmt.Errorf("no cluster %s", cluster)
	}
	cla := c.GetLoadAssignment()
	if cla == nil {
		cla = cfg.CLA[cluster]
	}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa != nil {
				return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
			}
		}
	}
	return "", fmt.Errorf("cluster %s has no endpoint", cluster)
}

// timeoutOf is a gRPC service's timeout (def when it sets none), raised
// to MinSidecarTimeout.
func (d *Door) timeoutOf(svc *corev3.GrpcService, def time.Duration) time.Duration {
	t := def
	if st := svc.GetTimeout(); st != nil && st.AsDuration() > 0 {
		t = st.AsDuration()
	}
	return max(t, d.o.MinSidecarTimeout)
}

// reply sets a local reply (Envoy's own response, not the upstream's).
func (o *Outcome) reply(status int, details string) {
	o.Status, o.Details = status, details
	if o.Header == nil {
		o.Header = http.Header{}
	}
}

// Do processes one request as Envoy's filter chain would, with the config
// the node holds now. An error means the door cannot play this config
// (no listener yet, a filter it does not know); a failing sidecar or
// upstream is an outcome, as with Envoy.
func (d *Door) Do(ctx context.Context, r Request) (Outcome, error) {
	cfg := d.node.Config()
	lis := cfg.Listeners[d.o.Listener]
	if lis == nil {
		return Outcome{}, fmt.Errorf("frontdoor: node %s holds no listener %s yet", d.node.ID(), d.o.Listener)
	}
	hcm, err := HCMOf(lis)
	if err != nil {
		return Outcome{}, err
	}
	rc, err := cfg.RouteTable(hcm, r.Host)
	if err != nil {
		return Outcome{}, fmt.Errorf("frontdoor: node %s: %w", d.node.ID(), err)
	}
	headers := make(map[string]string, len(r.Headers)+1)
	for k, v := range r.Headers {
		headers[strings.ToLower(k)] = v
	}
	r.Headers = headers
	if r.Scheme == "" {
		r.Scheme = "https"
	}
	o := Outcome{RequestID: newRequestID(), Header: http.Header{}}
	r.Headers["x-request-id"] = o.RequestID
	var flags alv3.ResponseFlags
	var meta *structpb.Struct
	var matched *routev3.Route
	defer func() { d.log(cfg, hcm, r, &o, matched, meta, &flags) }()

	vh, rt, err := MatchRoute(rc, r)
	if err != nil {
		return o, err
	}
	matched = rt
	if rt == nil {
		o.reply(http.StatusNotFound, "route_not_found")
		flags.NoRouteFound = true
		return o, nil
	}
	o.Route = rt.GetName()
	ctxExt, disabled, err := authzSettings(rc, vh, rt)
	if err != nil {
		return o, err
	}
	// The HCM's HTTP filters, in their configured order, up to the router.
filters:
	for _, f := range hcm.GetHttpFilters() {
		switch f.GetName() {
		case headerMutationFilterName:
			if err := applyHeaderMutation(f, rc, vh, rt, r.Headers); err != nil {
				return o, err
			}
		case contract.ExtAuthzFilter:
			if disabled {
				continue
			}
			fc := &extauthzv3.ExtAuthz{}
			if err := f.GetTypedConfig().UnmarshalTo(fc); err != nil {
				return o, fmt.Errorf("ext_authz filter: %w", err)
			}
			m, stop, err := d.extAuthz(ctx, cfg, fc, r, ctxExt, &o, &flags)
			if err != nil {
				return o, err
			}
			meta = m
			if stop {
				return o, nil
			}
		case rateLimitFilterName:
			fc := &ratelimitv3.RateLimit{}
			if err := f.GetTypedConfig().UnmarshalTo(fc); err != nil {
				return o, fmt.Errorf("ratelimit filter: %w", err)
			}
			descs := descriptors(rt, r, meta)
			if len(descs) == 0 {
				continue
			}
			svc := fc.GetRateLimitService().GetGrpcService()
			resp, err := d.shouldRateLimit(ctx, cfg, svc, &rlsv3.RateLimitRequest{Domain: fc.GetDomain(), Descriptors: descs, HitsAddend: 1})
			if err != nil {
				// As Envoy: a failed call lets the request through, limits
				// off, unless the filter has failure_mode_deny (then 500).
				d.o.Log.Warn("ratelimit call failed; applying the filter's failure mode", "route", o.Route, "failure_mode_deny", fc.GetFailureModeDeny(), "error", err)
				if fc.GetFailureModeDeny() {
					flags.RateLimitServiceError = true
					o.reply(http.StatusInternalServerError, "rate_limiter_error")
					return o, nil
				}
				continue
			}
			for _, h := range resp.GetResponseHeadersToAdd() {
				o.Header.Set(h.GetKey(), h.GetValue())
			}
			if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
				flags.RateLimited = true
				o.reply(http.StatusTooManyRequests, "request_rate_limited")
				o.Header.Set("x-envoy-ratelimited", "true")
				return o, nil
			}
		case routerFilterName:
			break filters
		default:
			return o, fmt.Errorf("frontdoor: the HCM has HTTP filter %s, which the front door cannot play", f.GetName())
		}
	}
	d.route(ctx, cfg, rt.GetRoute().GetCluster(), rt.GetRoute().GetTimeout().AsDuration(), r, &o, &flags)
	return o, nil
}

// extAuthz plays the ext_authz filter; stop reports a local reply.
func (d *Door) extAuthz(ctx context.Context, cfg NodeConfig, fc *extauthzv3.ExtAuthz, r Request, ctxExt map[string]string, o *Outcome, flags *alv3.ResponseFlags) (meta *structpb.Struct, stop bool, err error) {
	headers := map[string]string{":authority": r.Host, ":method": r.Method, ":path": r.Path, ":scheme": r.Scheme}
	for k, v := range r.Headers {
		headers[k] = v
	}
	_, query, _ := strings.Cut(r.Path, "?")
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: r.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000},
		}}}},
		Request: &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: &authv3.AttributeContext_HttpRequest{
			Id: o.RequestID, Method: r.Method, Headers: headers, Path: r.Path, Host: r.Host, Scheme: r.Scheme, Query: query, Protocol: "HTTP/1.1",
		}},
		ContextExtensions: ctxExt,
	}}
	svc := fc.GetGrpcService()
	var resp *authv3.CheckResponse
	conn, cerr := d.sidecar(cfg, svc)
	if cerr == nil {
		cctx, cancel := context.WithTimeout(ctx, d.timeoutOf(svc, 200*time.Millisecond))
		resp, cerr = authv3.NewAuthorizationClient(conn).Check(cctx, req)
		cancel()
	}
	if cerr != nil {
		d.o.Log.Warn("ext_authz call failed", "route", o.Route, "failure_mode_allow", fc.GetFailureModeAllow(), "error", cerr)
		if fc.GetFailureModeAllow() {
			return nil, false, nil
		}
		status := http.StatusForbidden
		if c := fc.GetStatusOnError().GetCode(); c != 0 {
			status = int(c)
		}
		flags.UnauthorizedDetails = &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}
		o.reply(status, "ext_authz_error")
		return nil, true, nil
	}
	meta = resp.GetDynamicMetadata()
	o.Metadata = map[string]string{}
	for k, v := range meta.GetFields() {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			o.Metadata[k] = sv.StringValue
		}
	}
	if resp.GetStatus().GetCode() != 0 {
		denied := resp.GetDeniedResponse()
		status := int(denied.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		o.reply(status, "ext_authz_denied")
		for _, h := range denied.GetHeaders() {
			o.Header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
			if strings.EqualFold(h.GetHeader().GetKey(), contract.ReasonHeader) {
				o.Reason = h.GetHeader().GetValue()
			}
		}
		o.Body = []byte(denied.GetBody())
		flags.UnauthorizedDetails = &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}
		return meta, true, nil
	}
	// Envoy's ext_authz sets the OK response's headers, then removes its
	// headers_to_remove.
	for _, h := range resp.GetOkResponse().GetHeaders() {
		r.Headers[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
	}
	for _, h := range resp.GetOkResponse().GetHeadersToRemove() {
		delete(r.Headers, strings.ToLower(h))
	}
	return meta, false, nil
}

func (d *Door) shouldRateLimit(ctx context.Context, cfg NodeConfig, svc *corev3.GrpcService, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	conn, err := d.sidecar(cfg, svc)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, d.timeoutOf(svc, 20*time.Millisecond))
	defer cancel()
	return rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(cctx, req)
}

// hopByHop are the headers a proxy never forwards.
var hopByHop = map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "content-length": true}

// route plays the router: the route's cluster, its EDS endpoint, the
// upstream.
func (d *Door) route(ctx context.Context, cfg NodeConfig, cluster string, timeout time.Duration, r Request, o *Outcome, flags *alv3.ResponseFlags) {
	o.Cluster = cluster
	addr, err := endpointOf(cfg, cluster)
	if err != nil {
		flags.NoHealthyUpstream = true
		o.reply(http.StatusServiceUnavailable, "no_healthy_upstream")
		o.Body = []byte("no healthy upstream")
		return
	}
	if timeout <= 0 {
		timeout = 15 * time.Second // Envoy's default route timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.Path, bytes.NewReader(r.Body))
	if err != nil {
		o.reply(http.StatusBadRequest, "invalid_request")
		return
	}
	req.Host = r.Host
	for k, v := range r.Headers {
		if !hopByHop[k] {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("x-forwarded-proto", r.Scheme)
	resp, err := d.o.Upstream.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			flags.UpstreamRequestTimeout = true
			o.reply(http.StatusGatewayTimeout, "upstream_response_timeout")
			o.Body = []byte("upstream request timeout")
			return
		}
		flags.UpstreamConnectionFailure = true
		o.reply(http.StatusServiceUnavailable, "upstream_reset_before_response_started{connection_failure}")
		o.Body = []byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure")
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	rlHeaders := o.Header
	o.Header = resp.Header.Clone()
	for k, v := range rlHeaders {
		o.Header[k] = v
	}
	for k := range hopByHop {
		o.Header.Del(k)
	}
	o.Status, o.Details, o.Body = resp.StatusCode, "via_upstream", body
}

// log streams the ALS entry Envoy would write for the request, to the
// HCM's gRPC access log. A failing access log never fails the request.
func (d *Door) log(cfg NodeConfig, hcm *hcmv3.HttpConnectionManager, r Request, o *Outcome, rt *routev3.Route, meta *structpb.Struct, flags *alv3.ResponseFlags) {
	for _, al := range hcm.GetAccessLog() {
		alc := &grpcalsv3.HttpGrpcAccessLogConfig{}
		if err := al.GetTypedConfig().UnmarshalTo(alc); err != nil {
			continue
		}
		kept := map[string]string{}
		for _, h := range alc.GetAdditionalRequestHeadersToLog() {
			if v, ok := r.Headers[strings.ToLower(h)]; ok {
				kept[h] = v
			}
		}
		common := &alv3.AccessLogCommon{
			StartTime:               timestamppb.Now(),
			RouteName:               o.Route,
			DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: r.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}},
			ResponseFlags:           flags,
			UpstreamCluster:         o.Cluster,
		}
		if meta != nil {
			common.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: meta}}
		}
		common.CustomTags = customTags(alc.GetCommonConfig().GetCustomTags(), rt, r, common.Metadata)
		method := corev3.RequestMethod(corev3.RequestMethod_value[r.Method])
		entry := &alv3.HTTPAccessLogEntry{
			CommonProperties: common,
			Request:          &alv3.HTTPRequestProperties{RequestMethod: method, Authority: r.Host, Path: r.Path, RequestId: o.RequestID, UserAgent: r.Headers["user-agent"], RequestHeaders: kept},
			Response:         &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(uint32(o.Status)), ResponseCodeDetails: o.Details},
		}
		if err := d.sendLog(cfg, alc, entry); err != nil {
			d.o.Log.Warn("access log stream failed; entry dropped", "route", o.Route, "error", err)
		}
	}
}

// sendLog sends one entry on the access log's stream, opening it (with
// the node's identifier first) when there is none or the last one broke.
func (d *Door) sendLog(cfg NodeConfig, alc *grpcalsv3.HttpGrpcAccessLogConfig, entry *alv3.HTTPAccessLogEntry) error {
	svc := alc.GetCommonConfig().GetGrpcService()
	conn, err := d.sidecar(cfg, svc)
	if err != nil {
		return err
	}
	key := conn.Target() + "|" + alc.GetCommonConfig().GetLogName()
	d.alsMu.Lock()
	defer d.alsMu.Unlock()
	for attempt := 0; ; attempt++ {
		msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*alv3.HTTPAccessLogEntry{entry}}}}
		stream := d.als[key]
		if stream == nil {
			stream, err = alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(d.ctx)
			if err != nil {
				return err
			}
			d.als[key] = stream
			msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: d.node.ID(), Cluster: d.node.Group()}, LogName: alc.GetCommonConfig().GetLogName()}
		}
		err = stream.Send(msg)
		if err == nil {
			return nil
		}
		delete(d.als, key)
		if attempt == 1 {
			return err
		}
	}
}

// ServeHTTP is the front door's listener: each request goes through Do.
func (d *Door) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	r := Request{Method: hr.Method, Host: hr.Host, Path: hr.URL.RequestURI(), Headers: map[string]string{}, Scheme: "http", Body: body}
	if hr.TLS != nil {
		r.Scheme = "https"
	}
	if ip, _, err := net.SplitHostPort(hr.RemoteAddr); err == nil {
		r.ClientIP = ip
	}
	for k, vs := range hr.Header {
		r.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	o, err := d.Do(hr.Context(), r)
	if err != nil {
		d.o.Log.Warn("front door cannot play the config", "error", err)
		http.Error(w, "front door: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	for k, vs := range o.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("x-request-id", o.RequestID)
	w.WriteHeader(o.Status)
	_, _ = w.Write(o.Body)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
