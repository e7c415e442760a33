package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

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

// TestBootstrapMutualTLS: with --xds-ca-file/--xds-cert-file/--xds-key-file
// the xds cluster and the three sidecar clusters carry a TLS transport
// socket presenting the node certificate and trusting the CA; the
// bootstrap still validates. Half the files is an error.
func TestBootstrapMutualTLS(t *testing.T) {
	out, errOut, code := run(t, "bootstrap", "--node-group", "dev", "--node-id", "e1", "--xds-server", "127.0.0.1:18000",
		"--xds-ca-file", "/pki/ca.crt", "--xds-cert-file", "/pki/envoy-dev.crt", "--xds-key-file", "/pki/envoy-dev.key")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal([]byte(out), b); err != nil {
		t.Fatal(err)
	}
	clusters := b.GetStaticResources().GetClusters()
	if len(clusters) != 4 {
		t.Fatalf("%d static clusters", len(clusters))
	}
	for _, c := range clusters {
		utc := &tlsv3.UpstreamTlsContext{}
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(utc); err != nil {
			t.Fatalf("cluster %s: no TLS transport socket: %v", c.GetName(), err)
		}
		cc := utc.GetCommonTlsContext()
		if cc.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/pki/envoy-dev.crt" ||
			cc.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/pki/envoy-dev.key" ||
			cc.GetValidationContext().GetTrustedCa().GetFilename() != "/pki/ca.crt" {
			t.Errorf("cluster %s: TLS context %v", c.GetName(), cc)
		}
	}
	if _, errOut, code := run(t, "bootstrap", "--node-group", "dev", "--xds-server", "127.0.0.1:18000", "--xds-ca-file", "/pki/ca.crt"); code == 0 || !strings.Contains(errOut, "--xds-cert-file") {
		t.Errorf("CA only: exit %d, %q", code, errOut)
	}
}

// TestBrokerHTTPS: with --tls-cert-file/--tls-key-file the OSB API is
// HTTPS and keeps its basic-auth login; plain HTTP gets no answer.
func TestBrokerHTTPS(t *testing.T) {
	dir := t.TempDir()
	p := testenv.NewPKI(t)
	crt, key := p.Server(t, "broker")
	pw := filepath.Join(dir, "password")
	writeFile(t, pw, "broker-secret\n")
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	admin := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	startRole(t, admin, "broker", "--http-addr", addr, "--admin-addr", admin, "--store", "sqlite:"+filepath.Join(dir, "s.db"),
		"--queue", "sqlite:"+filepath.Join(dir, "q.db"), "--password-file", pw, "--tls-cert-file", crt, "--tls-key-file", key, "--log-level", "warn")
	pool, err := tlsconfig.LoadPool(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	get := func(c *http.Client, url, pass string) (int, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-Broker-API-Version", "2.17")
		if pass != "" {
			req.SetBasicAuth("broker", pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	https := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, err := get(https, "https://"+addr+"/v2/catalog", "broker-secret"); err != nil || code != 200 {
		t.Errorf("HTTPS with basic auth: %d %v", code, err)
	}
	if code, err := get(https, "https://"+addr+"/v2/catalog", ""); err != nil || code != 401 {
		t.Errorf("HTTPS without credentials: %d %v, want 401", code, err)
	}
	if code, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/v2/catalog", "broker-secret"); err == nil && code == 200 {
		t.Error("plain HTTP served on the HTTPS port")
	}
}
