package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// TestControlplaneMutualTLSFlags starts `gatehouse controlplane` with the
// TLS flags (the client CA through its environment twin) and certificates
// from `gatehouse certs`, then connects with no client certificate, with
// a node certificate of another group, and with the right one.
func TestControlplaneMutualTLSFlags(t *testing.T) {
	pki := t.TempDir()
	for _, args := range [][]string{
		{"certs", "ca", "--out-dir", pki},
		{"certs", "server", "--ca-cert", pki + "/ca.crt", "--ca-key", pki + "/ca.key", "--out-dir", pki, "--name", "controlplane", "--host", "127.0.0.1", "--host", "localhost"},
		{"certs", "node", "--ca-cert", pki + "/ca.crt", "--ca-key", pki + "/ca.key", "--out-dir", pki, "--name", "envoy-us-east-1", "--group", "us-east-1"},
		{"certs", "node", "--ca-cert", pki + "/ca.crt", "--ca-key", pki + "/ca.key", "--out-dir", pki, "--name", "envoy-other", "--group", "other"},
	} {
		if out, errOut, code := run(t, args...); code != 0 {
			t.Fatalf("gatehouse %v: exit %d: %s %s", args, code, out, errOut)
		}
	}
	if _, errOut, code := run(t, "certs", "ca", "--out-dir", pki); code == 0 || !strings.Contains(errOut, "refusing to overwrite") {
		t.Errorf("second certs ca: exit %d, %q", code, errOut)
	}
	xdsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	adminAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	t.Setenv("GATEHOUSE_CONTROLPLANE_TLS_CLIENT_CA_FILE", pki+"/ca.crt")
	startRole(t, adminAddr, "controlplane", "--source", "file:../../deploy/examples", "--xds-addr", xdsAddr, "--admin-addr", adminAddr,
		"--tls-cert-file", pki+"/controlplane.crt", "--tls-key-file", pki+"/controlplane.key")

	try := func(cc tlsconfig.Client, group string) (*discoveryv3.DiscoveryResponse, error) {
		tc, err := cc.Config("--xds")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-1", Cluster: group}, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
			return nil, err
		}
		return st.Recv()
	}
	ca := pki + "/ca.crt"
	if _, err := try(tlsconfig.Client{CAFile: ca}, "us-east-1"); err == nil {
		t.Error("no client certificate: served")
	}
	if _, err := try(tlsconfig.Client{CAFile: ca, CertFile: pki + "/envoy-other.crt", KeyFile: pki + "/envoy-other.key"}, "us-east-1"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("certificate of group other as us-east-1: %v, want PermissionDenied", err)
	}
	resp, err := try(tlsconfig.Client{CAFile: ca, CertFile: pki + "/envoy-us-east-1.crt", KeyFile: pki + "/envoy-us-east-1.key"}, "us-east-1")
	if err != nil || len(resp.GetResources()) == 0 {
		t.Fatalf("right certificate: %v (%d clusters)", err, len(resp.GetResources()))
	}
}

// TestRolesRefusePlaintextOffLoopback: without TLS flags every server
// role refuses a non-loopback listen address (nothing is opened), and
// says how to proceed.
func TestRolesRefusePlaintextOffLoopback(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"controlplane", "--source", "file:" + dir, "--xds-addr", "0.0.0.0:0", "--admin-addr", "127.0.0.1:0"},
		{"authz", "--spec-dir", dir, "--grpc-addr", "0.0.0.0:0", "--admin-addr", "127.0.0.1:0"},
		{"ratelimit", "--spec-dir", dir, "--grpc-addr", "0.0.0.0:0", "--admin-addr", "127.0.0.1:0"},
		{"broker", "--password-file", filepath.Join("testdata", "none"), "--http-addr", "0.0.0.0:0"},
	} {
		if args[0] == "broker" {
			pw := filepath.Join(dir, "pw")
			writeFile(t, pw, "secret\n")
			args[2] = pw
		}
		_, errOut, code := run(t, args...)
		if code == 0 || !strings.Contains(errOut, "0.0.0.0:0 is not a loopback address") || !strings.Contains(errOut, "--insecure") {
			t.Errorf("gatehouse %s on 0.0.0.0: exit %d, %q", args[0], code, errOut)
		}
	}
}
