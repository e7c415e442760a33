package envoy

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/spec"
)

func TestHTTPSListener(t *testing.T) {
	l, err := Listener(ListenerOptions{Name: HTTPSListener, Address: "0.0.0.0:8443", RouteConfig: RouteConfigName, TLSSecret: "petstore-cert"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	ts := l.GetFilterChains()[0].GetTransportSocket()
	ctx := &tlsv3.DownstreamTlsContext{}
	if ts == nil || ts.GetTypedConfig().UnmarshalTo(ctx) != nil {
		t.Fatalf("no TLS transport socket: %v", ts)
	}
	if got := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName(); got != "petstore-cert" {
		t.Errorf("secret = %q", got)
	}
	plain, err := Listener(ListenerOptions{Name: HTTPListener, Address: "0.0.0.0:8080", RouteConfig: RouteConfigName})
	if err != nil || plain.GetFilterChains()[0].GetTransportSocket() != nil {
		t.Errorf("plain listener: %v, %v", err, plain.GetFilterChains()[0].GetTransportSocket())
	}
}

func TestBuildErrorsNameTheField(t *testing.T) {
	if _, err := Listener(ListenerOptions{Name: HTTPListener, Address: "nowhere"}); err == nil || !strings.Contains(err.Error(), "listener gatehouse_http") {
		t.Errorf("bad listener address: %v", err)
	}
	_, _, err := UpstreamCluster("s", spec.Upstream{Name: "api", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:99999"}}, UpstreamOptions{})
	if err == nil || !strings.Contains(err.Error(), "upstream api: endpoints[1]") {
		t.Errorf("bad endpoint: %v", err)
	}
	if _, err := Bootstrap(BootstrapOptions{NodeID: "n", XDSServer: "x:1"}); err == nil {
		t.Error("bootstrap without a node group built")
	}
}

func TestUpstreamTLSVerifiesSNI(t *testing.T) {
	c, _, err := UpstreamCluster("s", spec.Upstream{Name: "api", DNS: "api.internal:443", TLS: &spec.UpstreamTLS{SNI: "api.internal"}}, UpstreamOptions{CAFile: "/etc/ssl/certs/ca-certificates.crt"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	vc := ctx.GetCommonTlsContext().GetValidationContext()
	if ctx.GetSni() != "api.internal" || vc.GetTrustedCa().GetFilename() == "" || vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "api.internal" {
		t.Errorf("upstream TLS = %v", ctx)
	}
	if c.GetType().String() != "STRICT_DNS" {
		t.Errorf("type = %v", c.GetType())
	}
}

// VirtualHostPacked records, for every Any it packs, exactly the message
// in it, and builds the same virtual host as VirtualHost.
func TestVirtualHostPacked(t *testing.T) {
	docs, err := spec.ReadFiles("../../spec/testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		packed := Packed{}
		vh, err := VirtualHostPacked(&d.EdgeRoute, packed)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := VirtualHost(&d.EdgeRoute)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(vh, plain) {
			t.Fatalf("%s: VirtualHostPacked and VirtualHost differ", d.Name())
		}
		n := 0
		for _, rt := range vh.GetRoutes() {
			for name, a := range rt.GetTypedPerFilterConfig() {
				m, ok := packed[a]
				if !ok {
					t.Fatalf("%s: route %s: %s not recorded", d.Name(), rt.GetName(), name)
				}
				got, err := a.UnmarshalNew()
				if err != nil || !proto.Equal(got, m) {
					t.Fatalf("%s: route %s: %s holds %v, recorded %v (%v)", d.Name(), rt.GetName(), name, got, m, err)
				}
				n++
			}
		}
		if n != len(packed) || n == 0 {
			t.Fatalf("%s: %d Anys, %d recorded", d.Name(), n, len(packed))
		}
	}
}
