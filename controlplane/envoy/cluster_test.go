package envoy

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestUpstreamTLSWithoutSNIChecksTheDNSName: a dns upstream with tls and
// no sni sends its DNS name as SNI and accepts only a certificate for it.
func TestUpstreamTLSWithoutSNIChecksTheDNSName(t *testing.T) {
	c, _, err := UpstreamCluster("s", spec.Upstream{Name: "api", DNS: "api.pets.internal:443", TLS: &spec.UpstreamTLS{}}, UpstreamOptions{CAFile: "/etc/ssl/certs/ca-certificates.crt"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	sans := ctx.GetCommonTlsContext().GetValidationContext().GetMatchTypedSubjectAltNames()
	if ctx.GetSni() != "api.pets.internal" || len(sans) != 1 || sans[0].GetMatcher().GetExact() != "api.pets.internal" || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS {
		t.Errorf("upstream TLS = %v, want SNI and SAN api.pets.internal", ctx)
	}
}

// TestUpstreamTLSWithoutAnyNameRefused: static endpoints with tls and no
// sni have no name to check: no cluster is built.
func TestUpstreamTLSWithoutAnyNameRefused(t *testing.T) {
	_, _, err := UpstreamCluster("s", spec.Upstream{Name: "api", Endpoints: []string{"10.0.0.1:443"}, TLS: &spec.UpstreamTLS{}}, UpstreamOptions{CAFile: "/etc/ssl/certs/ca-certificates.crt"})
	if err == nil || !strings.Contains(err.Error(), "sni is required") {
		t.Fatalf("UpstreamCluster = %v, want sni required", err)
	}
}

// TestUpstreamClusterPackedRecordsTLS: the TLS context an upstream cluster
// packs is recorded with the message its bytes decode to (ValidateAll
// checks that message instead of decoding), and the cluster is the one
// UpstreamCluster builds.
func TestUpstreamClusterPackedRecordsTLS(t *testing.T) {
	u := spec.Upstream{Name: "api", DNS: "api.pets.internal:443", TLS: &spec.UpstreamTLS{}}
	o := UpstreamOptions{CAFile: "/etc/ssl/certs/ca-certificates.crt"}
	packed := Packed{}
	c, _, err := UpstreamClusterPacked("s", u, o, packed)
	if err != nil {
		t.Fatal(err)
	}
	a := c.GetTransportSocket().GetTypedConfig()
	m, ok := packed[a]
	if !ok || len(packed) != 1 {
		t.Fatalf("packed has %d entries, none for the transport socket's Any", len(packed))
	}
	decoded, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	if !a.MessageIs(m) || !proto.Equal(decoded, m) {
		t.Fatalf("recorded %v, the Any decodes to %v", m, decoded)
	}
	plain, _, err := UpstreamCluster("s", u, o)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(plain, c) {
		t.Fatal("UpstreamClusterPacked builds another cluster than UpstreamCluster")
	}
}
