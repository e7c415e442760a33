package controlplane_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/sidecars/authz"
	"github.com/gatehouse-edge/gatehouse/sidecars/ratelimit"
)

// TestSidecarsOverMutualTLS: the authz and ratelimit sidecars get their
// config from a mutual-TLS control plane with node certificates of their
// group, and serve their gRPC with mutual TLS: an Envoy-side client with
// the node certificate is served (health turns SERVING once config
// arrived over xDS, and a Check is answered); one without a client
// certificate is refused.
func TestSidecarsOverMutualTLS(t *testing.T) {
	h := startTLSControlPlane(t, controlplane.Config{}, examples(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("sidecar: %v", err)
			}
		}
	})
	node := h.pki.NodeTLS(t, "sidecars-us-east-1", "us-east-1")
	authzUp, rlUp := make(chan string, 1), make(chan string, 1)
	go func() {
		done <- authzsidecar.Run(ctx, authzsidecar.Config{
			GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			XDSServer: h.addr, NodeID: "authz-1", NodeCluster: "us-east-1",
			TLS: h.pki.ServerTLS(t, "authz"), XDSTLS: node,
			Ready: func(g, _ net.Addr) { authzUp <- g.String() },
		})
	}()
	go func() {
		done <- ratelimitsidecar.Run(ctx, ratelimitsidecar.Config{
			GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			XDSServer: h.addr, NodeID: "ratelimit-1", NodeCluster: "us-east-1",
			TLS: h.pki.ServerTLS(t, "ratelimit"), XDSTLS: node,
			Ready: func(g, _ net.Addr) { rlUp <- g.String() },
		})
	}()
	envoy := h.pki.NodeTLS(t, "envoy-us-east-1", "us-east-1")
	for _, sc := range []struct {
		name, service string
		up            chan string
	}{{name: "authz", service: authzsidecar.ServiceName, up: authzUp}, {name: "ratelimit", service: ratelimitsidecar.ServiceName, up: rlUp}} {
		var addr string
		select {
		case addr = <-sc.up:
		case err := <-done:
			t.Fatalf("%s: %v", sc.name, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start", sc.name)
		}
		// Served with a node certificate, once config came over mTLS xDS.
		conn := dialSidecar(t, addr, envoy)
		deadline := time.Now().Add(20 * time.Second)
		for {
			hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: sc.service})
			if err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never SERVING over mTLS: %v %v", sc.name, hc, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Refused without a client certificate.
		bare := dialSidecar(t, addr, tlsconfig.Client{CAFile: h.pki.CAFile})
		if _, err := healthpb.NewHealthClient(bare).Check(ctx, &healthpb.HealthCheckRequest{Service: sc.service}); err == nil {
			t.Fatalf("%s served a client without a certificate", sc.name)
		}
		if sc.name == "authz" {
			resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{})
			if err != nil || resp.GetStatus() == nil {
				t.Fatalf("authz Check over mTLS: %v %v", resp, err)
			}
			if _, err := authv3.NewAuthorizationClient(bare).Check(ctx, &authv3.CheckRequest{}); err == nil {
				t.Fatal("authz answered a Check without a client certificate")
			}
		}
	}
	// Every sidecar stream was bound to the group of its certificate.
	for _, n := range h.cp.XDS().Nodes() {
		if n.CertGroup != "us-east-1" {
			t.Errorf("node %s: certificate group %q", n.NodeID, n.CertGroup)
		}
	}
}

func dialSidecar(t *testing.T, addr string, cc tlsconfig.Client) *grpc.ClientConn {
	t.Helper()
	tc, err := cc.Config("--test")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSidecarsRefusePlaintextOffLoopback: without TLS flags a sidecar
// serves plaintext on loopback only; a non-loopback address is refused
// before anything listens, unless --insecure.
func TestSidecarsRefusePlaintextOffLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	for name, run := range map[string]func() error{
		"authz": func() error {
			return authzsidecar.Run(ctx, authzsidecar.Config{GRPCAddr: "0.0.0.0:0", AdminAddr: "127.0.0.1:0", SpecDir: dir})
		},
		"ratelimit": func() error {
			return ratelimitsidecar.Run(ctx, ratelimitsidecar.Config{GRPCAddr: "0.0.0.0:0", AdminAddr: "127.0.0.1:0", SpecDir: dir})
		},
	} {
		err := run()
		if err == nil || !strings.Contains(err.Error(), "--grpc-addr 0.0.0.0:0 is not a loopback address") || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("%s on 0.0.0.0 without TLS: %v", name, err)
		}
	}
}
