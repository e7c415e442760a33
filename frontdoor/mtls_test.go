package frontdoor

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// allowAuthz is an ext_authz server that allows every request and
// records the node group of each caller's client certificate.
type allowAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	groups []string
}

func (a *allowAuthz) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	group := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			group, _ = tlsconfig.NodeGroup(ti.State.VerifiedChains[0][0])
		}
	}
	a.mu.Lock()
	a.groups = append(a.groups, group)
	a.mu.Unlock()
	return &authv3.CheckResponse{Status: &statuspb.Status{}}, nil
}

func (a *allowAuthz) calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.groups...)
}

// TestDoorSidecarMutualTLS: the door dials a sidecar with the caller's
// dial options — an Envoy's node certificate, against a sidecar that
// requires one — and a context dialer among them sees the cluster's
// endpoint as the config writes it (a name, unresolved), so a test or a
// deployment can map it. Without a client certificate, ext_authz fails
// closed and the sidecar is never asked.
func TestDoorSidecarMutualTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	tc, err := pki.ServerTLS(t, "authz").Config("authz gRPC")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authz := &allowAuthz{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	authv3.RegisterAuthorizationServer(srv, authz)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"ok": "yes"})
	}))
	defer up.Close()
	// The config names the authz sidecar localhost on a port nothing
	// listens on; the dialer maps exactly that name to the server.
	named := "localhost:" + strings.Split(testenv.ClosedAddr(t), ":")[1]
	sidecars := envoy.Sidecars{Authz: named, RateLimit: testenv.ClosedAddr(t), AccessLog: testenv.ClosedAddr(t)}
	node := compiledNode(t, compile.Options{Sidecars: sidecars, HTTPAddress: "127.0.0.1:10080"},
		strings.Replace(doorSpec, "UPSTREAM", strings.TrimPrefix(up.URL, "http://"), 1))
	var dialed []string
	var dialedMu sync.Mutex
	mapped := grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		dialedMu.Lock()
		dialed = append(dialed, a)
		dialedMu.Unlock()
		if a == named {
			a = l.Addr().String()
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	})
	req := Request{Method: "GET", Host: "s.example.com", Path: "/private", ClientIP: "192.0.2.1",
		Headers: map[string]string{"x-api-key": "gh_demo_acme_0123456789"}}

	for _, c := range []struct {
		name   string
		client tlsconfig.Client
		status int
		groups []string
	}{
		{name: "no client certificate", client: tlsconfig.Client{CAFile: pki.CAFile}, status: http.StatusForbidden},
		{name: "node certificate of group dev", client: pki.NodeTLS(t, "envoy-dev", "dev"), status: http.StatusOK, groups: []string{"dev"}},
	} {
		creds, err := c.client.GRPCDialOptions("--xds")
		if err != nil {
			t.Fatal(err)
		}
		door, err := New(node, Options{Dial: append(creds, mapped)})
		if err != nil {
			t.Fatal(err)
		}
		o, err := door.Do(context.Background(), req)
		door.Close()
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != c.status {
			t.Fatalf("%s: status %d (%s), want %d; dialed %v", c.name, o.Status, o.Details, c.status, dialed)
		}
		if got := authz.calls(); strings.Join(got, ",") != strings.Join(c.groups, ",") {
			t.Fatalf("%s: authz saw callers of groups %q, want %q", c.name, got, c.groups)
		}
	}
	dialedMu.Lock()
	defer dialedMu.Unlock()
	if len(dialed) == 0 || dialed[0] != named {
		t.Fatalf("the dialer saw %v, want the cluster's endpoint %s as written", dialed, named)
	}
}
