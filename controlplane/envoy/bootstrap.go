package envoy

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// BootstrapOptions describe one fleet node.
type BootstrapOptions struct {
	NodeID    string
	NodeGroup string // node.cluster
	XDSServer string // host:port of the control plane
	Sidecars  Sidecars
	AdminAddr string // host:port of Envoy's admin; default 127.0.0.1:9901
	// HealthAddr, when set, adds the static listener HealthListener there,
	// for load-balancer and kubelet probes (the admin stays on loopback).
	HealthAddr string
	// Delta selects incremental xDS (DELTA_GRPC): after a change Envoy is
	// sent only the resources that changed, not every resource of the type.
	Delta bool
	// TLS, when set, puts mutual TLS on the xDS cluster and the sidecar
	// clusters: Envoy verifies the servers against CAFile and presents
	// its node certificate (URI SAN spiffe://gatehouse/node-group/<group>).
	TLS *ClientTLS
}

// ClientTLS are the files an Envoy node presents and trusts, by path on
// the node.
type ClientTLS struct {
	CAFile, CertFile, KeyFile string
}

// transportSocket is an UpstreamTlsContext with the node's certificate
// and the internal CA.
func (c *ClientTLS) transportSocket() *corev3.TransportSocket {
	file := func(f string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: f}}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(c.CertFile), PrivateKey: file(c.KeyFile)}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(c.CAFile),
		}},
	}}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// Bootstrap is the static config an Envoy node starts from: its node
// identity, LDS and CDS over one ADS stream to the control plane, and the
// xDS and sidecar clusters as static clusters. CDS carries the sidecar
// clusters too; Envoy keeps a static cluster and skips a dynamic one of
// the same name, so the bootstrap's addresses win on nodes started from it
// and ext_authz can reach the authz sidecar before CDS arrives.
func Bootstrap(o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" || o.NodeGroup == "" || o.XDSServer == "" {
		return nil, fmt.Errorf("bootstrap: node id, node group and xDS server are required")
	}
	if o.AdminAddr == "" {
		o.AdminAddr = contract.DefaultEnvoyAdminAddr
	}
	if o.TLS != nil && (o.TLS.CAFile == "" || o.TLS.CertFile == "" || o.TLS.KeyFile == "") {
		return nil, fmt.Errorf("bootstrap: xDS TLS needs the CA, certificate and key files (--xds-ca-file, --xds-cert-file, --xds-key-file)")
	}
	xds, err := GRPCCluster(contract.XDSCluster, o.XDSServer)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	sidecars, err := SidecarClusters(o.Sidecars)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if o.TLS != nil {
		for _, c := range append([]*clusterv3.Cluster{xds}, sidecars...) {
			c.TransportSocket = o.TLS.transportSocket()
		}
	}
	admin, err := socketAddress(o.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: admin: %w", err)
	}
	var static []*listenerv3.Listener
	if o.HealthAddr != "" {
		h, err := HealthListener(o.HealthAddr)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		static = append(static, h)
	}
	apiType := corev3.ApiConfigSource_GRPC
	if o.Delta {
		apiType = corev3.ApiConfigSource_DELTA_GRPC
	}
	return &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.NodeGroup},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   apiType,
				TransportApiVersion:       corev3.ApiVersion_V3,
				GrpcServices:              []*corev3.GrpcService{grpcService(contract.XDSCluster, 0)},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads(),
			CdsConfig: ads(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters:  append([]*clusterv3.Cluster{xds}, sidecars...),
			Listeners: static,
		},
		Admin: &bootstrapv3.Admin{Address: admin},
	}, nil
}
