package xds

import (
	"context"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

func routeTable(name, prefix string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{name + ".example.com"},
		Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c-a"}}}}}}}}
}

func fullSnapshot(t *testing.T, version string, clusters, cla, routes []types.Resource) *cachev3.Snapshot {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[string][]types.Resource{
		resourcev3.ClusterType: clusters, resourcev3.EndpointType: cla, resourcev3.RouteType: routes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// recvTypes reads responses until it has one of each type in want (the
// last of each type read).
func (a adsStream) recvTypes(want ...string) map[string]*discoveryv3.DiscoveryResponse {
	a.t.Helper()
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for {
		missing := false
		for _, w := range want {
			missing = missing || got[w] == nil
		}
		if !missing {
			return got
		}
		r := a.recv()
		got[r.GetTypeUrl()] = r
	}
}

// TestSotwSendsOnlyChangedRoutesAndEndpoints: over a real SotW ADS stream,
// a node that ACKed the last route tables and load assignments is sent,
// at the next version, only those whose content changed (the xDS protocol
// requires the complete state only for listeners and clusters, which are
// still sent whole). After a NACK the next version is sent whole; a route
// table unsubscribed and subscribed again is sent again; a new stream that
// presents the current version is sent nothing it holds.
func TestSotwSendsOnlyChangedRoutesAndEndpoints(t *testing.T) {
	s, conn := startServer(t)
	ctx := context.Background()
	ca, cb := cluster("c-a", time.Second, 0), cluster("c-b", time.Second, 0)
	ea, eb := endpoints("c-a", 9001), endpoints("c-b", 9002)
	ra, rb := routeTable("r-a", "/a"), routeTable("r-b", "/b")
	if err := s.SetSnapshot(ctx, "edge", "v1", fullSnapshot(t, "v1", []types.Resource{ca, cb}, []types.Resource{ea, eb}, []types.Resource{ra, rb})); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := adsStream{t, st}
	newCluster := func() *clusterv3.Cluster { return &clusterv3.Cluster{} }
	newCLA := func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }
	newRC := func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }

	a.send(resourcev3.ClusterType, "", "")
	a.send(resourcev3.EndpointType, "", "", "c-a", "c-b")
	a.send(resourcev3.RouteType, "", "", "r-a", "r-b")
	got := a.recvTypes(resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RouteType)
	decoded(t, got[resourcev3.EndpointType], newCLA, ea, eb)
	decoded(t, got[resourcev3.RouteType], newRC, ra, rb)
	a.send(resourcev3.ClusterType, "v1", got[resourcev3.ClusterType].GetNonce())
	a.send(resourcev3.EndpointType, "v1", got[resourcev3.EndpointType].GetNonce(), "c-a", "c-b")
	a.send(resourcev3.RouteType, "v1", got[resourcev3.RouteType].GetNonce(), "r-a", "r-b")

	// v2 changes a cluster, c-b's endpoints and r-a: clusters whole, one
	// load assignment, one route table.
	ca2, eb2, ra2 := cluster("c-a", 2*time.Second, 0), endpoints("c-b", 9003), routeTable("r-a", "/a2")
	if err := s.SetSnapshot(ctx, "edge", "v2", fullSnapshot(t, "v2", []types.Resource{ca2, cb}, []types.Resource{ea, eb2}, []types.Resource{ra2, rb})); err != nil {
		t.Fatal(err)
	}
	got = a.recvTypes(resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RouteType)
	for typ, r := range got {
		if r.GetVersionInfo() != "v2" {
			t.Fatalf("%s at %q, want v2", typ, r.GetVersionInfo())
		}
	}
	decoded(t, got[resourcev3.ClusterType], newCluster, ca2, cb)
	decoded(t, got[resourcev3.EndpointType], newCLA, eb2)
	decoded(t, got[resourcev3.RouteType], newRC, ra2)
	a.send(resourcev3.ClusterType, "v2", got[resourcev3.ClusterType].GetNonce())
	a.send(resourcev3.EndpointType, "v2", got[resourcev3.EndpointType].GetNonce(), "c-a", "c-b")

	// The node rejects v2's routes: v3, which changes r-b only, is sent
	// whole (the node may not hold r-a's v2).
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.RouteType, VersionInfo: "v1",
		ResponseNonce: got[resourcev3.RouteType].GetNonce(), ResourceNames: []string{"r-a", "r-b"}, ErrorDetail: &statuspb.Status{Message: "rejected"}}); err != nil {
		t.Fatal(err)
	}
	// Parked (the NACK of the current version waits for the next).
	waitParked(t, s, func(w sotwWatch) bool { return w.req.GetErrorDetail() != nil })
	rb3 := routeTable("r-b", "/b3")
	if err := s.SetSnapshot(ctx, "edge", "v3", fullSnapshot(t, "v3", []types.Resource{ca2, cb}, []types.Resource{ea, eb2}, []types.Resource{ra2, rb3})); err != nil {
		t.Fatal(err)
	}
	r := a.recvTypes(resourcev3.RouteType)[resourcev3.RouteType]
	if r.GetVersionInfo() != "v3" {
		t.Fatalf("routes at %q, want v3", r.GetVersionInfo())
	}
	decoded(t, r, newRC, ra2, rb3)
	a.send(resourcev3.RouteType, "v3", r.GetNonce(), "r-a", "r-b")

	// Unsubscribed, then subscribed again: r-b is sent again, alone.
	a.send(resourcev3.RouteType, "v3", r.GetNonce(), "r-a")
	a.send(resourcev3.RouteType, "v3", r.GetNonce(), "r-a", "r-b")
	r = a.recvTypes(resourcev3.RouteType)[resourcev3.RouteType]
	decoded(t, r, newRC, rb3)
	a.send(resourcev3.RouteType, "v3", r.GetNonce(), "r-a", "r-b")

	// A new stream presenting v3 holds v3's tables: v4, which changes
	// r-a, sends it r-a only.
	st2, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b := adsStream{t, st2}
	// Another node of the group (node n1's live stream makes the control
	// plane trust that stream's subscription instead).
	if err := st2.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n2", Cluster: "edge"}, TypeUrl: resourcev3.RouteType, VersionInfo: "v3", ResourceNames: []string{"r-a", "r-b"}}); err != nil {
		t.Fatal(err)
	}
	// Its watch is parked (at v3) before v4 is published.
	waitParked(t, s, func(w sotwWatch) bool { return w.req.GetNode().GetId() == "n2" })
	ra4 := routeTable("r-a", "/a4")
	if err := s.SetSnapshot(ctx, "edge", "v4", fullSnapshot(t, "v4", []types.Resource{ca2, cb}, []types.Resource{ea, eb2}, []types.Resource{ra4, rb3})); err != nil {
		t.Fatal(err)
	}
	r = b.recvTypes(resourcev3.RouteType)[resourcev3.RouteType]
	if r.GetVersionInfo() != "v4" {
		t.Fatalf("resumed stream: routes at %q, want v4", r.GetVersionInfo())
	}
	decoded(t, r, newRC, ra4)
}

// waitParked waits until a SotW watch of group edge that match accepts is
// parked in s's cache.
func waitParked(t *testing.T, s *Server, match func(sotwWatch) bool) {
	t.Helper()
	parked := func() bool {
		s.cache.mu.Lock()
		defer s.cache.mu.Unlock()
		for _, w := range s.cache.groups["edge"].watches {
			if match(w) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !parked(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch was never parked")
		}
	}
}
