package envoy

import (
	"fmt"
	"net"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// UpstreamOptions tune upstream clusters.
type UpstreamOptions struct {
	// CAFile verifies upstream TLS certificates (with the server name as
	// the expected SAN). Empty: TLS without verification of the upstream.
	CAFile string
}

// UpstreamServerName is the name a TLS upstream's certificate is checked
// against (and sent as SNI): tls.sni, or else the host of a dns upstream.
// Static endpoints have no name of their own: "" there means the spec
// lacks the sni validation requires.
func UpstreamServerName(u spec.Upstream) string {
	if u.TLS != nil && u.TLS.SNI != "" {
		return u.TLS.SNI
	}
	if host, _, err := net.SplitHostPort(u.DNS); err == nil && net.ParseIP(host) == nil {
		return host
	}
	return ""
}

// UpstreamCluster builds the cluster of a spec upstream, named
// "<spec>/<upstream>". Static endpoints are delivered over EDS (the
// returned ClusterLoadAssignment); a DNS upstream is STRICT_DNS with its
// endpoint inline and no assignment.
func UpstreamCluster(specName string, u spec.Upstream, o UpstreamOptions) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, error) {
	return UpstreamClusterPacked(specName, u, o, nil)
}

// UpstreamClusterPacked is UpstreamCluster recording in packed the message
// each Any it builds carries (the TLS context), as VirtualHostPacked.
func UpstreamClusterPacked(specName string, u spec.Upstream, o UpstreamOptions, packed Packed) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, error) {
	name := ClusterName(specName, u.Name)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(u.EffectiveConnectTimeout()),
	}
	if u.TLS != nil {
		// Never TLS without a name to check the certificate against: any
		// publicly trusted certificate would do.
		sni := UpstreamServerName(u)
		if sni == "" {
			return nil, nil, fmt.Errorf("upstream %s: tls: sni is required (the name the upstream's certificate is checked against)", u.Name)
		}
		c.TransportSocket = upstreamTLS(sni, o.CAFile, packed)
	}
	switch {
	case u.DNS != "":
		addr, err := socketAddress(u.DNS)
		if err != nil {
			return nil, nil, fmt.Errorf("upstream %s: dns: %w", u.Name, err)
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(addr)},
		}}}
		return c, nil, nil
	case len(u.Endpoints) > 0:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name}
		// One named locality of weight 1: Envoy ignores both unless
		// locality-aware balancing is on; proxyless gRPC rejects a locality
		// without an id and skips zero-weight ones.
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{Zone: "default"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		}}}
		for i, ep := range u.Endpoints {
			addr, err := socketAddress(ep)
			if err != nil {
				return nil, nil, fmt.Errorf("upstream %s: endpoints[%d]: %w", u.Name, i, err)
			}
			cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, lbEndpoint(addr))
		}
		return c, cla, nil
	}
	return nil, nil, fmt.Errorf("upstream %s: needs endpoints or dns", u.Name)
}

func lbEndpoint(addr *corev3.Address) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}}}
}

func upstreamTLS(sni, caFile string, packed Packed) *corev3.TransportSocket {
	ctx := &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if caFile != "" {
		vc := &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}},
		}
		if sni != "" {
			vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sni}},
			}}
		}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: packed.pack(ctx)},
	}
}

// GRPCCluster is a cluster speaking HTTP/2 (gRPC) to one host:port: STATIC
// for an IP, STRICT_DNS for a name. The sidecar clusters and the bootstrap's
// xDS cluster are built with it.
func GRPCCluster(name, hostport string) (*clusterv3.Cluster, error) {
	addr, err := socketAddress(hostport)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(addr.GetSocketAddress().GetAddress()) != nil {
		typ = clusterv3.Cluster_STATIC
	}
	opts := &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		},
	}}
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(addr)},
		}}},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(opts),
		},
	}, nil
}

// SidecarClusters are the three sidecar clusters, in a fixed order.
func SidecarClusters(s Sidecars) ([]*clusterv3.Cluster, error) {
	var out []*clusterv3.Cluster
	for _, c := range []struct{ name, addr string }{
		{contract.AuthzCluster, s.Authz}, {contract.RateLimitCluster, s.RateLimit}, {contract.AccessLogCluster, s.AccessLog},
	} {
		cl, err := GRPCCluster(c.name, c.addr)
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}
