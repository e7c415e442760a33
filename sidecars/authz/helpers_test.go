package authzsidecar

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

const issuer = "https://idp.test/"

var (
	keyOnce sync.Once
	signer  *authntest.Key
)

func key() *authntest.Key {
	keyOnce.Do(func() { signer = authntest.NewRSA("k1", 2048) })
	return signer
}

func specYAML(name, jwks string) string {
	return `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: ` + name + `, team: pets}
spec:
  hosts: [` + name + `.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.5:8080"]}]
  identity:
    jwt:
      - name: corp
        issuer: ` + issuer + `
        audiences: [` + name + `]
        jwks: '` + jwks + `'
        forwardClaims: {sub: x-user-id}
    apiKeys:
      - name: partners
        header: x-api-key
        keys: [{id: acme, sha256: "` + authntest.HashKey("acme-key") + `", labels: {plan: gold}}]
    mtls:
      - name: internal
        principals: ["spiffe://corp/ns/*/sa/*"]
  routes:
    - name: read
      match: {pathPrefix: /pets}
      upstream: api
      auth:
        anyOf: [corp, partners, internal]
        rules:
          - {allow: true, scopes: ["pets:read"]}
          - {allow: true, when: 'identity.labels.plan == "gold" || identity.kind == "mtls"'}
      rateLimits:
        - {name: per-tenant, by: [identity.claim.tenant], limit: 10/second}
`
}

func writeSpec(t testing.TB, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(specYAML(name, string(authntest.JWKS(key())))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func compileSpec(t testing.TB, name string) *authz.SpecPolicy {
	t.Helper()
	return compileSpecJWKS(t, name, string(authntest.JWKS(key())))
}

func compileSpecJWKS(t testing.TB, name, jwks string) *authz.SpecPolicy {
	t.Helper()
	docs, err := spec.Parse(name+".yaml", []byte(specYAML(name, jwks)))
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(docs); err != nil {
		t.Fatal(err)
	}
	p, err := authz.Compile(&docs[0].EdgeRoute)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func token(aud string, mod func(map[string]any)) string {
	c := map[string]any{"iss": issuer, "aud": aud, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"scope": "pets:read", "tenant": "t-9"}
	if mod != nil {
		mod(c)
	}
	return key().Sign(c, nil)
}

// checkRequest is shaped like the CheckRequest Envoy's ext_authz filter
// sends: source/destination addresses, HTTP attributes with lower-case
// headers including pseudo-headers, and the route's context extensions.
func checkRequest(route string, headers map[string]string, principal string) *authv3.CheckRequest {
	h := map[string]string{":authority": "petstore.example.com", ":method": "GET", ":path": "/pets/1?x=1",
		"x-request-id": "rid-42", "user-agent": "curl/8.5"}
	for k, v := range headers {
		h[k] = v
	}
	ext := map[string]string{"gatehouse.revision": "r1"}
	if route != "" {
		ext["gatehouse.route"] = route
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.9.8.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}},
			Principal: principal,
		},
		Destination: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 443}}}},
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "envoy-id", Method: "GET", Headers: h, Path: "/pets/1?x=1", Host: "petstore.example.com",
			Scheme: "https", Protocol: "HTTP/1.1",
		}},
		ContextExtensions: ext,
	}}
}

// startCheckServer serves ext_authz for e on 127.0.0.1:0 and returns a client.
func startCheckServer(t testing.TB, e *authz.Engine) authv3.AuthorizationClient {
	t.Helper()
	return startCheckServerFor(t, NewServer(e))
}

// noop answers every Check with OK, doing nothing: the benchmark floor.
type noop struct {
	authv3.UnimplementedAuthorizationServer
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

func startCheckServerFor(t testing.TB, srv authv3.AuthorizationServer) authv3.AuthorizationClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(ServerOptions()...)
	if s, ok := srv.(*Server); ok {
		RegisterServer(gs, s) // what the sidecar serves
	} else {
		authv3.RegisterAuthorizationServer(gs, srv)
	}
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	return dial(t, l.Addr().String())
}

func dial(t testing.TB, addr string) authv3.AuthorizationClient {
	t.Helper()
	return authv3.NewAuthorizationClient(testenv.Dial(t, addr))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
