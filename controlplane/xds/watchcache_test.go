package xds

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// startServer serves a Server over real gRPC on 127.0.0.1, with the
// ServerOptions the control plane uses.
func startServer(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := New(ctx, Options{Registry: prometheus.NewRegistry()})
	gs := grpc.NewServer(ServerOptions()...)
	s.Register(gs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop(); cancel() })
	return s, conn
}

// cluster is an EDS cluster; pad makes its encoding bigger.
func cluster(name string, timeout time.Duration, pad int) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(timeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		AltStatName:          fmt.Sprintf("%0*d", pad, 0),
	}
}

func endpoints(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		}}}},
	}}}
}

func snapshot(t *testing.T, version string, clusters []types.Resource, cla []types.Resource) *cachev3.Snapshot {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[string][]types.Resource{
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: cla,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

type adsStream struct {
	t  *testing.T
	st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func (a adsStream) send(typeURL, version, nonce string, names ...string) {
	a.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names}
	if err := a.st.Send(req); err != nil {
		a.t.Fatal(err)
	}
}

func (a adsStream) recv() *discoveryv3.DiscoveryResponse {
	a.t.Helper()
	resp, err := a.st.Recv()
	if err != nil {
		a.t.Fatal(err)
	}
	return resp
}

// decoded checks that resp carries exactly want, in name order, each
// equal to the published message.
func decoded[M proto.Message](t *testing.T, resp *discoveryv3.DiscoveryResponse, newM func() M, want ...M) {
	t.Helper()
	if len(resp.GetResources()) != len(want) {
		t.Fatalf("%s: %d resources, want %d", resp.GetTypeUrl(), len(resp.GetResources()), len(want))
	}
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			t.Fatalf("resource %d has type %s in a %s response", i, a.GetTypeUrl(), resp.GetTypeUrl())
		}
		m := newM()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(m, want[i]) {
			t.Fatalf("resource %d = %v, want %v", i, m, want[i])
		}
	}
}

// TestSotwSharedResponses: state-of-the-world answers built from shared
// encodings read, over a real gRPC stream with the standard proto codec,
// exactly as the published resources; named requests get the named
// resources that exist; a newly subscribed name is answered at once at
// the same version; an up-to-date node waits for the next version.
func TestSotwSharedResponses(t *testing.T) {
	s, conn := startServer(t)
	// c-big pads the CDS body past sharedBodyMin: sent by reference.
	ca, cbig := cluster("c-a", time.Second, 0), cluster("c-big", 2*time.Second, 2*sharedBodyMin)
	ea, eb := endpoints("c-a", 9001), endpoints("c-big", 9002)
	if err := s.SetSnapshot(context.Background(), "edge", "v1", snapshot(t, "v1", []types.Resource{cbig, ca}, []types.Resource{ea, eb})); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := adsStream{t, st}
	newCluster := func() *clusterv3.Cluster { return &clusterv3.Cluster{} }
	newCLA := func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }

	a.send(resourcev3.ClusterType, "", "")
	cds := a.recv()
	if cds.GetVersionInfo() != "v1" || cds.GetNonce() == "" {
		t.Fatalf("CDS version %q nonce %q", cds.GetVersionInfo(), cds.GetNonce())
	}
	decoded(t, cds, newCluster, ca, cbig)

	a.send(resourcev3.EndpointType, "", "", "c-big", "no-such-cluster")
	eds := a.recv()
	decoded(t, eds, newCLA, eb)

	// ACK both; then subscribe one more name at the same version.
	a.send(resourcev3.ClusterType, "v1", cds.GetNonce())
	a.send(resourcev3.EndpointType, "v1", eds.GetNonce(), "c-big", "no-such-cluster")
	a.send(resourcev3.EndpointType, "v1", eds.GetNonce(), "c-big", "c-a")
	eds2 := a.recv()
	if eds2.GetTypeUrl() != resourcev3.EndpointType || eds2.GetVersionInfo() != "v1" {
		t.Fatalf("after subscribing c-a: %s %s", eds2.GetTypeUrl(), eds2.GetVersionInfo())
	}
	// Only what the node lacks: it ACKed v1 and holds c-big's (EDS may
	// be sent in part, see TestSotwSendsOnlyChangedRoutesAndEndpoints).
	decoded(t, eds2, newCLA, ea)
	a.send(resourcev3.EndpointType, "v1", eds2.GetNonce(), "c-big", "c-a")

	// Nothing is sent to a node that is up to date: the next message on
	// the stream is the v2 push, not a repeat of v1.
	ca2 := cluster("c-a", 3*time.Second, 0)
	if err := s.SetSnapshot(context.Background(), "edge", "v2", snapshot(t, "v2", []types.Resource{ca2, cbig}, []types.Resource{ea, eb})); err != nil {
		t.Fatal(err)
	}
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for len(got) < 2 {
		r := a.recv()
		if r.GetVersionInfo() != "v2" {
			t.Fatalf("%s at version %q after v1 was ACKed, want v2", r.GetTypeUrl(), r.GetVersionInfo())
		}
		got[r.GetTypeUrl()] = r
	}
	decoded(t, got[resourcev3.ClusterType], newCluster, ca2, cbig)
	// The endpoints did not change: v2 of EDS carries none.
	decoded(t, got[resourcev3.EndpointType], newCLA)
}

// TestSotwNodeBeforeSnapshot: a node that connects before its group has a
// snapshot is answered when the snapshot is set.
func TestSotwNodeBeforeSnapshot(t *testing.T) {
	s, conn := startServer(t)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := adsStream{t, st}
	a.send(resourcev3.ClusterType, "", "")
	// The watch is parked before the snapshot exists.
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Nodes()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c := cluster("c-a", time.Second, 0)
	if err := s.SetSnapshot(context.Background(), "edge", "v1", snapshot(t, "v1", []types.Resource{c}, nil)); err != nil {
		t.Fatal(err)
	}
	resp := a.recv()
	if resp.GetVersionInfo() != "v1" {
		t.Fatalf("version %q", resp.GetVersionInfo())
	}
	decoded(t, resp, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, c)
}

// TestDeltaSharedResponses: delta answers built from shared encodings
// read, over real gRPC, as the published resources with go-control-plane's
// content-hash versions; only changed resources and removals are sent; a
// first wildcard request is answered even when there is nothing.
func TestDeltaSharedResponses(t *testing.T) {
	s, conn := startServer(t)
	ca, cbig := cluster("c-a", time.Second, 0), cluster("c-big", 2*time.Second, 2*sharedBodyMin)
	eb := endpoints("c-big", 9002)
	if err := s.SetSnapshot(context.Background(), "edge", "v1", snapshot(t, "v1", []types.Resource{cbig, ca}, []types.Resource{eb})); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	check := func(r *discoveryv3.DeltaDiscoveryResponse, want []*clusterv3.Cluster, removed ...string) {
		t.Helper()
		if len(r.GetResources()) != len(want) {
			t.Fatalf("%d resources, want %d", len(r.GetResources()), len(want))
		}
		for i, res := range r.GetResources() {
			b, err := cachev3.MarshalResource(want[i])
			if err != nil {
				t.Fatal(err)
			}
			if res.GetName() != want[i].GetName() || res.GetVersion() != cachev3.HashResource(b) {
				t.Fatalf("resource %d = %s@%s, want %s@%s", i, res.GetName(), res.GetVersion(), want[i].GetName(), cachev3.HashResource(b))
			}
			c := &clusterv3.Cluster{}
			if err := res.GetResource().UnmarshalTo(c); err != nil || !proto.Equal(c, want[i]) {
				t.Fatalf("resource %d = %v (%v), want %v", i, c, err, want[i])
			}
		}
		if !slices.Equal(r.GetRemovedResources(), removed) {
			t.Fatalf("removed = %v, want %v", r.GetRemovedResources(), removed)
		}
	}
	node := &corev3.Node{Id: "n1", Cluster: "edge"}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	cds := recv()
	if cds.GetSystemVersionInfo() != "v1" || cds.GetTypeUrl() != resourcev3.ClusterType {
		t.Fatalf("CDS %s at %q", cds.GetTypeUrl(), cds.GetSystemVersionInfo())
	}
	check(cds, []*clusterv3.Cluster{ca, cbig})
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: cds.GetNonce()})

	// An empty wildcard type is still answered once.
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := recv()
	if lds.GetTypeUrl() != resourcev3.ListenerType || len(lds.GetResources()) != 0 {
		t.Fatalf("LDS = %v", lds)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: lds.GetNonce()})

	// v2 changes c-a, removes c-big, adds c-new: only those are sent.
	ca2, cnew := cluster("c-a", 3*time.Second, 0), cluster("c-new", time.Second, 0)
	if err := s.SetSnapshot(context.Background(), "edge", "v2", snapshot(t, "v2", []types.Resource{ca2, cnew}, []types.Resource{eb})); err != nil {
		t.Fatal(err)
	}
	cds2 := recv()
	if cds2.GetTypeUrl() != resourcev3.ClusterType || cds2.GetSystemVersionInfo() != "v2" {
		t.Fatalf("after v2: %s at %q", cds2.GetTypeUrl(), cds2.GetSystemVersionInfo())
	}
	check(cds2, []*clusterv3.Cluster{ca2, cnew}, "c-big")
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: cds2.GetNonce()})

	// v3 changes nothing the node holds: the next message is v4's.
	if err := s.SetSnapshot(context.Background(), "edge", "v3", snapshot(t, "v3", []types.Resource{ca2, cnew}, nil)); err != nil {
		t.Fatal(err)
	}
	cbig2 := cluster("c-big", 5*time.Second, 2*sharedBodyMin)
	if err := s.SetSnapshot(context.Background(), "edge", "v4", snapshot(t, "v4", []types.Resource{ca2, cnew, cbig2}, nil)); err != nil {
		t.Fatal(err)
	}
	cds4 := recv()
	if cds4.GetSystemVersionInfo() != "v4" {
		t.Fatalf("got %s at %q, want the v4 push", cds4.GetTypeUrl(), cds4.GetSystemVersionInfo())
	}
	check(cds4, []*clusterv3.Cluster{cbig2})
}

// TestCodecKnowsEveryResponseField: the codec re-encodes a shared
// response's header field by field; a field added to DiscoveryResponse by
// a go-control-plane upgrade must be added there too.
func TestCodecKnowsEveryResponseField(t *testing.T) {
	fields := (&discoveryv3.DiscoveryResponse{}).ProtoReflect().Descriptor().Fields()
	var got []string
	for i := 0; i < fields.Len(); i++ {
		got = append(got, string(fields.Get(i).Name()))
	}
	want := []string{"version_info", "resources", "canary", "type_url", "nonce", "control_plane", "resource_errors"}
	if !slices.Equal(got, want) {
		t.Fatalf("DiscoveryResponse fields = %v; update codec.Marshal, which copies %v", got, want)
	}
	fields = (&discoveryv3.DeltaDiscoveryResponse{}).ProtoReflect().Descriptor().Fields()
	got = nil
	for i := 0; i < fields.Len(); i++ {
		got = append(got, string(fields.Get(i).Name()))
	}
	want = []string{"system_version_info", "resources", "type_url", "removed_resources", "removed_resource_names", "nonce", "control_plane", "resource_errors"}
	if !slices.Equal(got, want) {
		t.Fatalf("DeltaDiscoveryResponse fields = %v; update codec.Marshal, which copies %v", got, want)
	}
}
