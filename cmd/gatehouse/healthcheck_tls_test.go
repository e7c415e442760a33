package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestHealthcheckHTTPS: an https port serving a certificate of the
// internal CA (the accesslog query API's /readyz) passes with --ca-file
// and fails without it (system roots do not know the internal CA).
func TestHealthcheckHTTPS(t *testing.T) {
	pki := testenv.NewPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	tc, err := pki.ServerTLS(t, "query").Config("query API")
	if err != nil {
		t.Fatal(err)
	}
	tc.ClientCAs, tc.ClientAuth = nil, 0 // HTTPS with a login, no client certificate
	srv.TLS = tc
	srv.StartTLS()
	defer srv.Close()
	if out, errOut, code := run(t, "healthcheck", "--ca-file", pki.CAFile, srv.URL+"/readyz"); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("with --ca-file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := run(t, "healthcheck", srv.URL+"/readyz"); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca-file: exit %d, stderr %q; want a certificate error", code, errOut)
	}
	if _, errOut, code := run(t, "healthcheck", "--ca-file", "/nonexistent/ca.crt", srv.URL+"/readyz"); code == 0 || !strings.Contains(errOut, "--ca-file") {
		t.Errorf("missing CA file: exit %d, stderr %q", code, errOut)
	}
}
