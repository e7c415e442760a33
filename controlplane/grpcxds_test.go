package controlplane_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestGRPCGoXDSClientNACK uses grpc-go's own xDS client (the xds:///
// resolver) as an independent consumer. Asked for listener
// "gatehouse_http", it gets Envoy's server listener, which is not an API
// listener a gRPC client can use, and rejects it. This is the setup of
// go-control-plane#962 (a grpc-go client NACKing): the control plane must
// record the NACK with grpc-go's message and must not answer it with the
// same version in a loop.
func TestGRPCGoXDSClientNACK(t *testing.T) {
	h := startControlPlane(t, controlplane.Config{}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	bootstrap := `{
		"xds_servers": [{"server_uri": "` + h.addr + `", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-go-1", "cluster": "us-east-1"}
	}`
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///gatehouse_http", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect()

	deadline := time.Now().Add(20 * time.Second)
	for {
		var nack string
		for _, n := range h.cp.XDS().Nodes() {
			if n.NodeID == "grpc-go-1" && n.LastNACK != nil {
				nack = n.LastNACK.TypeURL + ": " + n.LastNACK.Message
			}
		}
		if nack != "" {
			if !strings.Contains(nack, ldsType) {
				t.Fatalf("grpc-go NACKed %q, want the listener", nack)
			}
			t.Logf("grpc-go NACK recorded: %s", nack)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NACK from grpc-go recorded; nodes: %+v", h.cp.XDS().Nodes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// No resend loop: count listener responses over two seconds.
	before := testenv.CounterValue(t, h.reg, "gatehouse_xds_responses_total", "type", "listener")
	time.Sleep(2 * time.Second)
	if after := testenv.CounterValue(t, h.reg, "gatehouse_xds_responses_total", "type", "listener"); after-before > 1 {
		t.Fatalf("%v listener responses in 2s after grpc-go's NACK: the rejected version is being re-sent", after-before)
	}
}

// TestGRPCGoXDSClientConsumesClustersAndEndpoints: in a proxyless node
// group, grpc-go's xDS client resolves xds:///greeter.example.com through
// the control plane's API listener, route table, cluster and endpoints,
// and its RPC reaches the upstream the spec names.
func TestGRPCGoXDSClientConsumesClustersAndEndpoints(t *testing.T) {
	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(us, hs)
	go us.Serve(upstream)
	defer us.Stop()

	greeter := strings.Replace(specYAML("greeter", "greeter.example.com", upstream.Addr().String()), "      rateLimits:\n        - {name: per-ip, by: [client.ip], limit: 10/second}\n", "", 1)
	allow := spec.MustParseUpstreamAllow(upstream.Addr().String()) // the test's upstream is on loopback
	h := startControlPlane(t, controlplane.Config{Compile: compile.Options{ProxylessGroups: []string{"grpc-clients"}, UpstreamAllow: allow}}, map[string]string{"greeter.yaml": greeter})
	bootstrap := `{
		"xds_servers": [{"server_uri": "` + h.addr + `", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-go-2", "cluster": "grpc-clients"}
	}`
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///greeter.example.com", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		for _, n := range h.cp.XDS().Nodes() {
			if n.LastNACK != nil {
				t.Logf("NACK %s: %s", n.LastNACK.TypeURL, n.LastNACK.Message)
			}
		}
		t.Fatalf("RPC through grpc-go xDS resolution failed: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v", resp.GetStatus())
	}
	// grpc-go ACKs each type after using it; the ACKs may trail the RPC.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var missing []string
		for _, n := range h.cp.XDS().Nodes() {
			if n.NodeID != "grpc-go-2" {
				continue
			}
			if n.LastNACK != nil {
				t.Fatalf("grpc-go NACKed %s: %s", n.LastNACK.TypeURL, n.LastNACK.Message)
			}
			for _, typ := range []string{ldsType, rdsType, cdsType, edsType} {
				if n.Acked[typ] == "" {
					missing = append(missing, typ)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grpc-go did not ACK %v", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
