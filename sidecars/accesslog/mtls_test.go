package accesslogsidecar_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// TestALSMutualTLSAndHTTPSQueryAPI: with TLS the ALS port takes streams
// only from clients with a certificate of the CA, and the query API is
// HTTPS with its bearer-token login unchanged.
func TestALSMutualTLSAndHTTPSQueryAPI(t *testing.T) {
	pki := testenv.NewPKI(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokFile, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := pki.ServerTLS(t, "accesslog")
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := accesslogsidecar.Config{
		GRPCListener: gl, HTTPListener: hl, Store: "duckdb:" + filepath.Join(dir, "logs.duckdb"),
		APITokenFile: tokFile, DuckDBMemoryLimit: "256MB", DuckDBThreads: 1, FlushInterval: 20 * time.Millisecond,
		TLS:     srv,
		HTTPTLS: tlsconfig.Server{CertFile: srv.CertFile, KeyFile: srv.KeyFile},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- accesslogsidecar.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	pool, err := tlsconfig.LoadPool(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	https := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + hl.Addr().String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := https.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready over HTTPS: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	get := func(c *http.Client, url, token string) (int, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(https, base+"/v1/logs?since=1h", apiToken); err != nil || code != 200 {
		t.Errorf("HTTPS with the token: %d %v", code, err)
	}
	if code, err := get(https, base+"/v1/logs?since=1h", ""); err != nil || code != 401 {
		t.Errorf("HTTPS without the token: %d %v, want 401", code, err)
	}
	if code, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+hl.Addr().String()+"/v1/logs?since=1h", apiToken); err == nil && code == 200 {
		t.Error("plain HTTP answered on the HTTPS port")
	}

	stream := func(cc tlsconfig.Client) error {
		tc, err := cc.Config("--test")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		st, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(sctx)
		if err != nil {
			return err
		}
		if err := st.Send(&accesslogv3.StreamAccessLogsMessage{Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-1", Cluster: "g"}, LogName: "gatehouse"}}); err != nil {
			return err
		}
		_, err = st.CloseAndRecv()
		return err
	}
	if err := stream(tlsconfig.Client{CAFile: pki.CAFile}); err == nil {
		t.Error("ALS accepted a stream without a client certificate")
	}
	if err := stream(pki.NodeTLS(t, "envoy-g", "g")); err != nil {
		t.Errorf("ALS with a node certificate: %v", err)
	}
}
