package controlplane_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/frontdoor"
)

const srdsType = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"

// deltaStream is a hand-driven delta ADS stream.
type deltaStream struct {
	t     *testing.T
	st    discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps chan *discoveryv3.DeltaDiscoveryResponse
}

func openDelta(t *testing.T, addr string) *deltaStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &deltaStream{t: t, st: st, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 64)}
	go func() {
		defer close(d.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			d.resps <- r
		}
	}()
	return d
}

func (d *deltaStream) send(r *discoveryv3.DeltaDiscoveryRequest) {
	d.t.Helper()
	if err := d.st.Send(r); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deltaStream) recv(typeURL string) *discoveryv3.DeltaDiscoveryResponse {
	d.t.Helper()
	select {
	case r, ok := <-d.resps:
		if !ok {
			d.t.Fatal("stream closed")
		}
		if r.GetTypeUrl() != typeURL {
			d.t.Fatalf("got a %s delta, want %s", r.GetTypeUrl(), typeURL)
		}
		// ACK, as Envoy does.
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: r.GetNonce()})
		return r
	case <-time.After(15 * time.Second):
		d.t.Fatalf("no %s delta", typeURL)
	}
	return nil
}

func resourceBytes(r *discoveryv3.DeltaDiscoveryResponse) (names []string, size int) {
	for _, x := range r.GetResources() {
		names = append(names, x.GetName())
		size += proto.Size(x)
	}
	sort.Strings(names)
	return names, size
}

// TestScopedGroupDeltaSendsOneSpecsRoutes: a node of a scoped route group
// follows the scoped layout as Envoy does over delta ADS (SRDS wildcard,
// then RDS for the route tables its scopes name); when one spec of 50
// changes, the next RDS delta holds that spec's route table only, a small
// fraction of the bytes of the whole table set, and no scope is re-sent.
func TestScopedGroupDeltaSendsOneSpecsRoutes(t *testing.T) {
	const n = 50
	specs := map[string]string{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%02d", i)
		specs[name+".yaml"] = specYAML(name, name+".example.com", "10.0.0.1:80")
	}
	h := startControlPlane(t, controlplane.Config{Compile: compile.Options{ScopedRouteGroups: []string{"edge"}}}, specs)
	d := openDelta(t, h.addr)

	d.send(&discoveryv3.DeltaDiscoveryRequest{Node: dialNode("scoped-1", "edge"), TypeUrl: srdsType})
	srds := d.recv(srdsType)
	var tables []string
	for _, x := range srds.GetResources() {
		sc := &routev3.ScopedRouteConfiguration{}
		if err := x.GetResource().UnmarshalTo(sc); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, sc.GetRouteConfigurationName())
	}
	if len(tables) != n {
		t.Fatalf("%d scopes, want %d", len(tables), n)
	}
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: rdsType, ResourceNamesSubscribe: tables})
	first := d.recv(rdsType)
	names, all := resourceBytes(first)
	if len(names) != n {
		t.Fatalf("first RDS delta has %d tables, want %d", len(names), n)
	}

	h.write("s17.yaml", strings.Replace(specYAML("s17", "s17.example.com", "10.0.0.1:80"), "match: {pathPrefix: /}", "match: {pathPrefix: /v2}", 1))
	next := d.recv(rdsType)
	names, one := resourceBytes(next)
	if len(names) != 1 || names[0] != "gatehouse_routes/s17" {
		t.Fatalf("RDS delta after changing s17 = %v, want just gatehouse_routes/s17", names)
	}
	if one*10 > all {
		t.Fatalf("the change sent %d bytes of routes, the whole table set is %d", one, all)
	}
	t.Logf("one spec's change: %d bytes of routes; all tables: %d bytes", one, all)
	select {
	case r := <-d.resps:
		if n, _ := resourceBytes(r); len(n) > 0 || len(r.GetRemovedResources()) > 0 {
			t.Fatalf("unexpected %s delta after the change: %v removed %v", r.GetTypeUrl(), n, r.GetRemovedResources())
		}
	case <-time.After(500 * time.Millisecond):
	}
}

// TestScopedGroupSotWNode: a SotW node (the front door's Envoy-like ADS
// client) of a scoped route group gets its scopes from the control plane
// (SRDS wildcard) and the route tables they name, and a changed spec's
// table reaches it.
func TestScopedGroupSotWNode(t *testing.T) {
	specs := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		specs[name+".yaml"] = specYAML(name, name+".example.com", "10.0.0.1:80")
	}
	h := startControlPlane(t, controlplane.Config{Compile: compile.Options{ScopedRouteGroups: []string{"edge"}}}, specs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node, err := frontdoor.StartNode(ctx, h.addr, "sotw-1", "edge", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if cfg, ok := node.WaitFor(ctx, 15*time.Second, func(c frontdoor.NodeConfig) bool {
		return len(c.Scopes) == 3 && len(c.Routes) == 3
	}); !ok {
		t.Fatalf("node holds %d scopes and tables %v, want 3 and 3", len(cfg.Scopes), cfg.Routes)
	}
	h.write("b.yaml", strings.Replace(specYAML("b", "b.example.com", "10.0.0.1:80"), "match: {pathPrefix: /}", "match: {pathPrefix: /v2}", 1))
	if _, ok := node.WaitFor(ctx, 15*time.Second, func(c frontdoor.NodeConfig) bool {
		return strings.Contains(c.Routes["gatehouse_routes/b"].String(), "/v2")
	}); !ok {
		t.Fatal("b's changed table never reached the node")
	}
}
