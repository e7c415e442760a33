// Package envoy holds the pure functions that turn EdgeRoute specs into
// Envoy v3 protos: listeners with the HTTP connection manager and the
// Gatehouse filter chain (ext_authz, ratelimit, router, gRPC access log),
// virtual hosts and routes with their rate-limit actions, upstream and
// sidecar clusters, endpoints, and the bootstrap a fleet node starts from.
//
// Functions here take values and return protos; they keep no state, do no
// I/O and do not validate beyond what building needs (the compile package
// validates everything it publishes). It must not import compile,
// snapshot, xds or any sidecar package.
package envoy

import (
	"fmt"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// Names of the Envoy config and the bootstrap. The names the sidecars
// share (cluster names, context extensions, the ext_authz metadata
// namespace, the ext_authz filter name) live in package contract.
const (
	HTTPListener  = "gatehouse_http"
	HTTPSListener = "gatehouse_https"
	// RouteConfigName is the RDS name of the one route table per node group.
	RouteConfigName = "gatehouse_routes"

	RateLimitFilter = "envoy.filters.http.ratelimit"
	RouterFilter    = "envoy.filters.http.router"
	HCMFilter       = "envoy.filters.network.http_connection_manager"
	// AccessLogName is the log_name of the gRPC access log.
	AccessLogName = "gatehouse"
)

// Sidecars are where a node group's sidecars listen (host:port each).
type Sidecars struct {
	Authz, RateLimit, AccessLog string
}

// DefaultSidecars are the sidecars' default gRPC addresses next to Envoy.
var DefaultSidecars = Sidecars{Authz: contract.DefaultAuthzAddr, RateLimit: contract.DefaultRateLimitAddr, AccessLog: contract.DefaultAccessLogAddr}

// ads is the config source for everything delivered over the ADS stream.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// grpcService targets an Envoy cluster.
func grpcService(cluster string, timeout time.Duration) *corev3.GrpcService {
	g := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
	}
	if timeout > 0 { // 0: a long-lived stream (ADS) without a deadline
		g.Timeout = durationpb.New(timeout)
	}
	return g
}

// Packed maps each Any a builder packed to the message packed into it, so
// a caller can check that message without decoding the Any again. A nil
// Packed records nothing.
type Packed map[*anypb.Any]proto.Message

// pack is mustAny that records what it packed.
func (p Packed) pack(m proto.Message) *anypb.Any {
	a := mustAny(m)
	if p != nil {
		p[a] = m
	}
	return a
}

// mustAny packs a message built in this package; packing only fails for
// messages that cannot be marshaled, which would be a bug here.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("envoy: packing %T: %v", m, err))
	}
	return a
}

// socketAddress parses host:port.
func socketAddress(hostport string) (*corev3.Address, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("address %q: port must be 1-65535", hostport)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}, nil
}
