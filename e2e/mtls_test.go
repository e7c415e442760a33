package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/dev"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// envoyTLS is the transport of an Envoy of the dev node group: mutual TLS
// with the node certificate `gatehouse dev` wrote under <data-dir>/pki.
func envoyTLS(t *testing.T, p *dev.PKI) grpc.DialOption {
	t.Helper()
	return clientTLS(t, p.Envoy())
}

func clientTLS(t *testing.T, c tlsconfig.Client) grpc.DialOption {
	t.Helper()
	tc, err := c.Config("--xds")
	if err != nil {
		t.Fatal(err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(tc))
}

// checkRefusedWithoutClientCert: the Envoy-side clients of the sidecars
// (ext_authz, RLS, ALS) and of xDS are refused without a client
// certificate, and in plaintext.
func (s *suite) checkRefusedWithoutClientCert(ctx context.Context) {
	t := s.t
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// gatehouse dev wrote the CA and an Envoy certificate of its group
	// where docs say, and its banner's bootstrap line uses them.
	dir := filepath.Dir(s.ep.PKI.CAFile)
	for _, f := range []string{"ca.crt", "envoy-" + s.ep.NodeGroup + ".crt", "envoy-" + s.ep.NodeGroup + ".key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("pki: %v", err)
		}
		if strings.HasSuffix(f, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
		if !strings.Contains(s.output.String(), f) {
			t.Errorf("banner does not name %s", f)
		}
	}
	if filepath.Base(dir) != "pki" || !strings.Contains(s.output.String(), "--xds-cert-file") {
		t.Errorf("pki dir %s; banner:\n%s", dir, s.output.String())
	}
	noCert := clientTLS(t, tlsconfig.Client{CAFile: s.ep.PKI.CAFile})
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	for name, creds := range map[string]grpc.DialOption{"no client certificate": noCert, "plaintext": plain} {
		dial := func(addr string) *grpc.ClientConn {
			c, err := grpc.NewClient(addr, creds)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		_, err := authv3.NewAuthorizationClient(dial(s.ep.Authz)).Check(ctx, &authv3.CheckRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("ext_authz, %s: %v, want the connection refused", name, err)
		}
		_, err = rlsv3.NewRateLimitServiceClient(dial(s.ep.RateLimit)).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "gatehouse"})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("RLS, %s: %v, want the connection refused", name, err)
		}
		st, err := alsv3.NewAccessLogServiceClient(dial(s.ep.AccessLogGRPC)).StreamAccessLogs(ctx)
		if err == nil {
			_ = st.Send(&alsv3.StreamAccessLogsMessage{})
			_, err = st.CloseAndRecv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("ALS, %s: %v, want the connection refused", name, err)
		}
		ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(s.ep.XDS)).StreamAggregatedResources(ctx)
		if err == nil {
			_ = ads.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "intruder", Cluster: s.ep.NodeGroup}, TypeUrl: resource.ClusterType})
			_, err = ads.Recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("xDS, %s: %v, want the connection refused", name, err)
		}
	}
}
