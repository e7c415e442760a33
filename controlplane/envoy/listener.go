package envoy

import (
	"fmt"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// Timeouts of the calls Envoy makes to the sidecars.
const (
	AuthzTimeout     = 500 * time.Millisecond
	RateLimitTimeout = 100 * time.Millisecond
)

// ListenerOptions describe one HTTP(S) listener of a node group.
type ListenerOptions struct {
	Name    string // HTTPListener or HTTPSListener
	Address string // host:port to bind, e.g. 0.0.0.0:10080
	// RouteConfig is the RDS name the connection manager asks for.
	RouteConfig string
	// Scoped, when set, makes the connection manager use scoped routes
	// (one scope per exact host over SRDS, one route table per spec over
	// RDS; see scopedRoutes) instead of RouteConfig.
	Scoped bool
	// AccessLogHeaders are the request headers to keep in the access log
	// (the union of what the node group's routes ask for), sorted.
	AccessLogHeaders []string
	// TLSSecret, when set, makes this an HTTPS listener terminating TLS
	// with the SDS secret of that name.
	TLSSecret string
	// TLSChains, when set, make this an HTTPS listener with one filter
	// chain per certificate, picked by SNI (TLSSecret is then ignored).
	TLSChains []TLSChain
	// RateLimitFailureModeDeny makes the ratelimit filter fail closed:
	// when the ratelimit service errs or times out, Envoy answers 500
	// rather than letting the request through (the default).
	RateLimitFailureModeDeny bool
}

// TLSChain is one certificate of an HTTPS listener: the SDS secret and the
// SNI server names (the hosts of the specs naming it) it serves.
type TLSChain struct {
	Secret      string
	ServerNames []string
}

// Listener builds a listener whose filter chain (one per TLS certificate on
// an HTTPS listener) is the HTTP connection manager with the Gatehouse
// filters: header mutation (the client's x-gatehouse-* headers and, per
// route, its spec's forwarded claim headers removed), ext_authz (fail closed, peer
// certificate included), ratelimit (domain gatehouse, X-RateLimit headers
// on), router; and a gRPC access log to the accesslog sidecar.
func Listener(o ListenerOptions) (*listenerv3.Listener, error) {
	addr, err := socketAddress(o.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", o.Name, err)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: o.Name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    ads(),
			RouteConfigName: o.RouteConfig,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			// First: the client's identity headers go before ext_authz
			// sets the verified ones (see headerMutationFilter).
			{Name: HeaderMutationFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(headerMutationFilter())}},
			{Name: contract.ExtAuthzFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(extAuthzFilter())}},
			{Name: RateLimitFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(rateLimitFilter(o.RateLimitFailureModeDeny))}},
			{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
		AccessLog: []*accesslogv3.AccessLog{{
			Name:       "envoy.access_loggers.http_grpc",
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(AccessLogConfig(o.AccessLogHeaders))},
		}},
		// The edge: the peer is the client, Host ports do not pick vhosts,
		// and paths are normalized before routes and policies see them.
		UseRemoteAddress:             wrapperspb.Bool(true),
		StripPortMode:                &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
	}
	if o.Scoped {
		hcm.RouteSpecifier = scopedRoutes()
	}
	hcmAny := mustAny(hcm)
	newChain := func() *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			Filters: []*listenerv3.Filter{{
				Name:       HCMFilter,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}
	}
	var chains []*listenerv3.FilterChain
	switch {
	case len(o.TLSChains) > 0:
		for _, tc := range o.TLSChains {
			chain := newChain()
			chain.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: tc.ServerNames}
			chain.TransportSocket = downstreamTLS(tc.Secret)
			chains = append(chains, chain)
		}
	case o.TLSSecret != "":
		chain := newChain()
		chain.TransportSocket = downstreamTLS(o.TLSSecret)
		chains = append(chains, chain)
	default:
		chains = append(chains, newChain())
	}
	l := &listenerv3.Listener{
		Name:         o.Name,
		Address:      addr,
		FilterChains: chains,
	}
	if len(o.TLSChains) > 0 {
		// SNI-based chain selection needs the TLS inspector.
		l.ListenerFilters = []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		}}
	}
	return l, nil
}

// downstreamTLS terminates TLS with the SDS secret of that name, fetched
// over ADS.
func downstreamTLS(secret string) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: ads()}},
				AlpnProtocols:                  []string{"h2", "http/1.1"},
			},
		})},
	}
}

// Secret is the SDS secret of a certificate, with the PEM bytes inline.
func Secret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}},
	}
}

// HeaderMutationFilter is the first HTTP filter of the Gatehouse chain.
const HeaderMutationFilter = "envoy.filters.http.header_mutation"

// headerMutationFilter removes every x-gatehouse-* header from the
// client's request; each route adds its spec's forwarded claim headers
// (StripForwardedHeaders). It runs before ext_authz: route-level
// request_headers_to_remove would run in the router, after ext_authz has
// set the verified values, and remove those too.
func headerMutationFilter() *headermutationv3.HeaderMutation {
	return &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{
		RequestMutations: []*mutationrulesv3.HeaderMutation{{
			Action: &mutationrulesv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationrulesv3.HeaderMutation_RemoveOnMatch{
				KeyMatcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: contract.ReservedHeaderPrefix}, IgnoreCase: true},
			}},
		}},
	}}
}

func extAuthzFilter() *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services:               &extauthzv3.ExtAuthz_GrpcService{GrpcService: grpcService(contract.AuthzCluster, AuthzTimeout)},
		TransportApiVersion:    corev3.ApiVersion_V3,
		FailureModeAllow:       false,
		IncludePeerCertificate: true,
	}
}

// rateLimitFilter is Envoy's ratelimit filter. failureModeDeny decides
// what Envoy does when the sidecar cannot answer: false (allow) keeps the
// edge up and lets every request through, limits off, while the sidecar
// is down or slow; true (deny) keeps limits on and answers 500 to every
// request of a rate-limited route until it is back. (An answer the
// sidecar does give is never affected: over-limit values are hashed, not
// refused, so no request can make it err on purpose.)
func rateLimitFilter(failureModeDeny bool) *ratelimitv3.RateLimit {
	return &ratelimitv3.RateLimit{
		Domain:          contract.RateLimitDomain,
		FailureModeDeny: failureModeDeny,
		Timeout:         durationpb.New(RateLimitTimeout),
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService:         grpcService(contract.RateLimitCluster, RateLimitTimeout),
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		EnableXRatelimitHeaders: ratelimitv3.RateLimit_DRAFT_VERSION_03,
	}
}

// AccessLogConfig is the ALS v3 logger: every request to the accesslog
// sidecar, with the given request headers (the route name and the
// ext_authz dynamic metadata travel in common properties) and the custom
// tag config_version, the route's revision metadata (WithRevision).
func AccessLogConfig(headers []string) *grpcalsv3.HttpGrpcAccessLogConfig {
	return &grpcalsv3.HttpGrpcAccessLogConfig{
		CommonConfig: &grpcalsv3.CommonGrpcAccessLogConfig{
			LogName:             AccessLogName,
			GrpcService:         grpcService(contract.AccessLogCluster, time.Second),
			TransportApiVersion: corev3.ApiVersion_V3,
			CustomTags:          []*tracingv3.CustomTag{ConfigVersionCustomTag()},
		},
		AdditionalRequestHeadersToLog: headers,
	}
}

// RouteConfiguration assembles a node group's route table. The revision
// rides on the table-level ext_authz context extensions, which Envoy
// merges into every route's (more specific keys win), so a new revision
// does not rebuild every route.
func RouteConfiguration(name, revision string, vhosts []*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: vhosts,
		TypedPerFilterConfig: map[string]*anypb.Any{
			contract.ExtAuthzFilter: mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
				CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: map[string]string{contract.ContextRevision: revision}},
			}}),
		},
	}
}

// APIListener is the listener a proxyless gRPC client (grpc-go's xds:///
// resolver) asks for by its target name: an API listener whose connection
// manager routes with the named route table and only the router filter.
// Envoy itself accepts API listeners only in its bootstrap, so these go
// to proxyless node groups only.
func APIListener(name, routeConfig string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    ads(),
			RouteConfigName: routeConfig,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
	}
}
