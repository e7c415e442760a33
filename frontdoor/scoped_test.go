package frontdoor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func scopedSpec(name, prefix, upstream string) source.Spec {
	return source.Spec{Origin: name + ".yaml", Data: []byte(fmt.Sprintf(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: %s, team: t}
spec:
  hosts: [%s.example.com]
  upstreams: [{name: api, endpoints: ["%s"]}]
  routes:
    - {name: r, match: {pathPrefix: %s}, upstream: api}
`, name, name, upstream, prefix))}
}

// TestNodeFollowsScopedRoutes: a node of a scoped route group subscribes
// as Envoy does (LDS names scoped routes → SRDS wildcard → RDS for the
// tables the scopes name) over a real ADS stream, the door routes by the
// scope of the request's host (port ignored, as the key builder's ':'
// separator does) and answers 404 route_not_found for a host no scope
// names; a changed spec's table reaches it.
func TestNodeFollowsScopedRoutes(t *testing.T) {
	up := testenv.ClosedAddr(t)
	c, err := compile.New(compile.Options{ScopedRouteGroups: []string{"edge"}, HTTPAddress: "127.0.0.1:10080",
		Sidecars:      envoy.Sidecars{Authz: testenv.ClosedAddr(t), RateLimit: testenv.ClosedAddr(t), AccessLog: testenv.ClosedAddr(t)},
		UpstreamAllow: spec.MustParseUpstreamAllow("127.0.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	x := testenv.StartXDS(t, "127.0.0.1:0")
	publish := func(id string, specs ...source.Spec) {
		res := c.Compile(source.Revision{ID: id, Specs: specs})
		for _, s := range res.Failed() {
			t.Fatalf("spec failed: %v", s.Err)
		}
		rs, _, err := res.Resources("edge")
		if err != nil {
			t.Fatal(err)
		}
		x.Set(t, "scoped-node", res.GroupVersion("edge"), map[string][]types.Resource(rs))
	}
	publish("r1", scopedSpec("a", "/", up), scopedSpec("b", "/", up))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	node, err := StartNode(ctx, x.Addr, "scoped-node", "edge", dial...)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if cfg, ok := node.WaitFor(ctx, 15*time.Second, func(c NodeConfig) bool {
		return len(c.Scopes) == 2 && c.Routes[envoy.SpecRouteConfigName("a")] != nil && c.Routes[envoy.SpecRouteConfigName("b")] != nil
	}); !ok {
		t.Fatalf("node never held the scoped layout: %d scopes, routes %v", len(cfg.Scopes), keys(cfg.Routes))
	}
	door, err := New(node, Options{Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer door.Close()
	do := func(host, path string) Outcome {
		t.Helper()
		o, err := door.Do(ctx, Request{Method: "GET", Host: host, Path: path, ClientIP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := do("a.example.com:10080", "/x"); o.Route != "a/r" {
		t.Fatalf("a.example.com:10080 routed to %q (%d %s), want a/r", o.Route, o.Status, o.Details)
	}
	if o := do("b.example.com", "/x"); o.Route != "b/r" {
		t.Fatalf("b.example.com routed to %q (%d %s), want b/r", o.Route, o.Status, o.Details)
	}
	if o := do("c.example.com", "/x"); o.Status != http.StatusNotFound || o.Details != "route_not_found" {
		t.Fatalf("unscoped host: %d (%s), want 404 route_not_found", o.Status, o.Details)
	}

	publish("r2", scopedSpec("a", "/v2", up), scopedSpec("b", "/", up))
	if _, ok := node.WaitFor(ctx, 15*time.Second, func(c NodeConfig) bool {
		rc := c.Routes[envoy.SpecRouteConfigName("a")]
		return rc != nil && strings.Contains(rc.String(), "/v2")
	}); !ok {
		t.Fatal("the changed table of a never reached the node")
	}
	if o := do("a.example.com", "/x"); o.Status != http.StatusNotFound {
		t.Fatalf("a.example.com/x after the change: %d (%s) route %q, want 404", o.Status, o.Details, o.Route)
	}
	if o := do("b.example.com", "/x"); o.Route != "b/r" {
		t.Fatalf("b.example.com after the change routed to %q, want b/r", o.Route)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
