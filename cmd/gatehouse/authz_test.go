package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestAuthzCommand runs `gatehouse authz` with flags and their environment
// twins, then calls Check on it over gRPC.
func TestAuthzCommand(t *testing.T) {
	dir := t.TempDir()
	key := authntest.NewRSA("k1", 2048)
	doc := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: shop, team: t}
spec:
  hosts: [shop.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt: [{name: corp, issuer: "https://idp.test/", audiences: [shop], jwks: '` + string(authntest.JWKS(key)) + `'}]
  routes:
    - {name: cart, match: {pathPrefix: /cart}, upstream: api, auth: {anyOf: [corp]}}
`
	if err := os.WriteFile(filepath.Join(dir, "shop.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("GATEHOUSE_AUTHZ_SPEC_DIR", dir)
	t.Setenv("GATEHOUSE_AUTHZ_ADMIN_ADDR", adminAddr)
	t.Setenv("GATEHOUSE_AUTHZ_LOG_LEVEL", "warn")

	startRole(t, adminAddr, "authz", "--grpc-addr", grpcAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := key.Sign(map[string]any{"iss": "https://idp.test/", "aud": "shop", "sub": "u1", "exp": time.Now().Add(time.Hour).Unix()}, nil)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/cart", Headers: map[string]string{"authorization": "Bearer " + tok}}},
		ContextExtensions: map[string]string{"gatehouse.route": "shop/cart"},
	}}
	cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer ccancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, req)
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check: %v %v", resp, err)
	}
	req.Attributes.ContextExtensions = nil
	if resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, req); err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Fatalf("Check without gatehouse.route: %v %v", resp, err)
	}
}

func TestAuthzCommandNeedsAPolicySource(t *testing.T) {
	_, errOut, code := run(t, "authz", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if code == 0 {
		t.Fatal("started without --spec-dir or --xds-server")
	}
	if want := "--spec-dir"; !strings.Contains(errOut, want) {
		t.Fatalf("stderr %q does not mention %s", errOut, want)
	}
}

// TestJWKSAllowFlags: authz, explain and dev take --jwks-allow (authz
// through its environment twin too), and a bad entry is refused by name.
func TestJWKSAllowFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEHOUSE_AUTHZ_JWKS_ALLOW", "10.0.0.0/8,not a host")
	_, errOut, code := run(t, "authz", "--spec-dir", dir, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "--jwks-allow") || !strings.Contains(errOut, "not a host") {
		t.Fatalf("authz with GATEHOUSE_AUTHZ_JWKS_ALLOW=%q: exit %d, stderr %q", "10.0.0.0/8,not a host", code, errOut)
	}
	_, errOut, code = run(t, "explain", "--spec-dir", "../../deploy/examples", "--request", "GET https://petstore.example.com/pets",
		"-H", "authorization: Bearer x", "--jwks-allow", "300.0.0.1/8")
	if code == 0 || !strings.Contains(errOut, "--jwks-allow") {
		t.Fatalf("explain with a bad --jwks-allow: exit %d, stderr %q", code, errOut)
	}
	out, _, code := run(t, "dev", "--help")
	if code != 0 || !strings.Contains(out, "--jwks-allow") {
		t.Fatalf("dev --help lacks --jwks-allow: %s", out)
	}
	out, _, code = run(t, "controlplane", "--help")
	if code != 0 || !strings.Contains(out, "--max-jwks-uris-per-group int") || !strings.Contains(out, "(default 64)") {
		t.Fatalf("controlplane --help lacks --max-jwks-uris-per-group (default 64): %s", out)
	}
}
