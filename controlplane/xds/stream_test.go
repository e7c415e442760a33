package xds

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sotwAs is a SotW ADS stream of node id in group edge.
type sotwAs struct {
	adsStream
	id string
}

func openSotw(t *testing.T, ctx context.Context, conn *grpc.ClientConn, id string) sotwAs {
	t.Helper()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sotwAs{adsStream{t, st}, id}
}

func (a sotwAs) req(typeURL, version, nonce string, nack string, names ...string) {
	a.t.Helper()
	r := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: a.id, Cluster: "edge"}, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names}
	if nack != "" {
		r.ErrorDetail = &statuspb.Status{Message: nack}
	}
	if err := a.st.Send(r); err != nil {
		a.t.Fatal(err)
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%02d", prefix, i))
	}
	return out
}

// edsSnapshot has clusters and load assignments c-00.. (n of each); the
// endpoint port of c-00 is port.
func edsSnapshot(t *testing.T, version string, n int, port uint32) *cachev3.Snapshot {
	t.Helper()
	var cl, ep []types.Resource
	for i, name := range names("c", n) {
		cl = append(cl, cluster(name, time.Second, 0))
		p := uint32(9000 + i)
		if i == 0 {
			p = port
		}
		ep = append(ep, endpoints(name, p))
	}
	return snapshot(t, version, cl, ep)
}

// parked waits until the group edge has want parked watches of typeURL
// (SotW or delta) and returns their subscriptions, by node id.
func parked(t *testing.T, s *Server, typeURL string, delta bool, want int) map[string]cachev3.Subscription {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]cachev3.Subscription{}
		s.cache.mu.Lock()
		if g := s.cache.groups["edge"]; g != nil {
			if delta {
				for _, w := range g.deltas {
					if w.req.GetTypeUrl() == typeURL {
						got[w.req.GetNode().GetId()] = w.sub
					}
				}
			} else {
				for _, w := range g.watches {
					if w.req.GetTypeUrl() == typeURL {
						got[w.req.GetNode().GetId()] = w.sub
					}
				}
			}
		}
		s.cache.mu.Unlock()
		if len(got) == want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d parked %s watches, want %d", len(got), typeURL, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func samePtr(a, b any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func resourceNames(r *discoveryv3.DiscoveryResponse) []string {
	var out []string
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			panic(err)
		}
		out = append(out, cachev3.GetResourceName(m))
	}
	return out
}

// TestStreamLoopSotw: the stream loop over real gRPC, SotW: ACK and the
// next version; a NACK of the current version is not answered with it
// again; a request with a nonce older than the last response is ignored
// (else the node would get the version it holds once more); a node that
// reconnects presenting the current version is sent nothing until the
// next one.
func TestStreamLoopSotw(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	set := func(v string) {
		t.Helper()
		if err := s.SetSnapshot(context.Background(), "edge", v, edsSnapshot(t, v, 3, 9100)); err != nil {
			t.Fatal(err)
		}
	}
	set("v1")
	a := openSotw(t, ctx, conn, "n1")
	a.req(resourcev3.ClusterType, "", "", "")
	r1 := a.recv()
	if r1.GetVersionInfo() != "v1" || len(r1.GetResources()) != 3 {
		t.Fatalf("first answer %q with %d clusters, want v1 with 3", r1.GetVersionInfo(), len(r1.GetResources()))
	}
	a.req(resourcev3.ClusterType, "v1", r1.GetNonce(), "") // ACK
	set("v2")
	r2 := a.recv()
	if r2.GetVersionInfo() != "v2" {
		t.Fatalf("after the ACK: %q, want v2", r2.GetVersionInfo())
	}
	// A request carrying v1's nonce is stale now: ignored.
	a.req(resourcev3.ClusterType, "v1", r1.GetNonce(), "")
	// NACK v2: not sent again.
	a.req(resourcev3.ClusterType, "v1", r2.GetNonce(), "cluster rejected")
	set("v3")
	r3 := a.recv()
	if r3.GetVersionInfo() != "v3" {
		t.Fatalf("after a stale request and a NACK of v2: got %q, want v3 next", r3.GetVersionInfo())
	}
	a.req(resourcev3.ClusterType, "v3", r3.GetNonce(), "")
	var nacks int
	for _, n := range s.Nodes() {
		if n.LastNACK != nil && n.LastNACK.TypeVersion == "v2" {
			nacks++
		}
	}
	if nacks != 1 {
		t.Fatalf("NACK of v2 recorded on %d streams, want 1", nacks)
	}

	// Reconnect presenting v3: nothing until v4.
	b := openSotw(t, ctx, conn, "n2")
	b.req(resourcev3.ClusterType, "v3", "", "")
	parked(t, s, resourcev3.ClusterType, false, 2)
	set("v4")
	if r := b.recv(); r.GetVersionInfo() != "v4" || len(r.GetResources()) != 3 {
		t.Fatalf("resumed stream: got %q with %d clusters, want v4 with 3 (nothing at v3)", r.GetVersionInfo(), len(r.GetResources()))
	}
}

// TestStreamLoopDelta: the stream loop over real gRPC, delta, named
// subscriptions: subscribing adds names and sends only them,
// unsubscribing stops the updates of a name, subscribing again sends it
// again.
func TestStreamLoopDelta(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.SetSnapshot(context.Background(), "edge", "v1", edsSnapshot(t, "v1", 3, 9100)); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(nonce string, sub, unsub []string) {
		t.Helper()
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.EndpointType,
			ResponseNonce: nonce, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() ([]string, []string, string) {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range r.GetResources() {
			got = append(got, x.GetName())
		}
		slices.Sort(got)
		return got, r.GetRemovedResources(), r.GetNonce()
	}
	send("", []string{"c-00", "c-01"}, nil)
	got, _, nonce := recv()
	if !slices.Equal(got, []string{"c-00", "c-01"}) {
		t.Fatalf("subscribing c-00, c-01: got %v", got)
	}
	send(nonce, nil, nil) // ACK
	send("", []string{"c-02"}, nil)
	if got, _, nonce = recv(); !slices.Equal(got, []string{"c-02"}) {
		t.Fatalf("subscribing c-02 too: got %v, want c-02 only", got)
	}
	send(nonce, nil, nil)
	send("", nil, []string{"c-00"})
	parked(t, s, resourcev3.EndpointType, true, 1)
	// v2 changes every load assignment (c-00's port): c-00 is no longer
	// subscribed.
	next := edsSnapshot(t, "v2", 3, 9200)
	for i, n := range names("c", 3) {
		next.Resources[types.Endpoint].Items[n] = types.ResourceWithTTL{Resource: endpoints(n, uint32(9300+i))}
	}
	if err := s.SetSnapshot(context.Background(), "edge", "v2", next); err != nil {
		t.Fatal(err)
	}
	if got, _, nonce = recv(); !slices.Equal(got, []string{"c-01", "c-02"}) {
		t.Fatalf("v2 after unsubscribing c-00: got %v, want c-01, c-02", got)
	}
	send(nonce, nil, nil)
	send("", []string{"c-00"}, nil)
	if got, _, _ = recv(); !slices.Equal(got, []string{"c-00"}) {
		t.Fatalf("subscribing c-00 again: got %v, want c-00", got)
	}
}

// TestStreamsShareSubscriptionState: streams of a group that ask for the
// same names hold one subscribed-name map and one returned-resources map
// between them (SotW and delta), not one each; a stream that drops a
// name gets its own map and leaves the shared one as it was (the other
// stream is sent, at the next version, only what changed).
func TestStreamsShareSubscriptionState(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const n = 20
	if err := s.SetSnapshot(context.Background(), "edge", "v1", edsSnapshot(t, "v1", n, 9100)); err != nil {
		t.Fatal(err)
	}
	all := names("c", n)
	var streams []sotwAs
	var nonces []string
	for _, id := range []string{"n1", "n2"} {
		a := openSotw(t, ctx, conn, id)
		a.req(resourcev3.EndpointType, "", "", "", all...)
		r := a.recv()
		if len(r.GetResources()) != n {
			t.Fatalf("%s: %d load assignments, want %d", id, len(r.GetResources()), n)
		}
		a.req(resourcev3.EndpointType, "v1", r.GetNonce(), "", all...)
		streams = append(streams, a)
		nonces = append(nonces, r.GetNonce())
	}
	subs := parked(t, s, resourcev3.EndpointType, false, 2)
	if !samePtr(subs["n1"].SubscribedResources(), subs["n2"].SubscribedResources()) {
		t.Errorf("SotW: the two streams hold two maps of the same %d subscribed names", n)
	}
	if len(subs["n1"].ReturnedResources()) != n || !samePtr(subs["n1"].ReturnedResources(), subs["n2"].ReturnedResources()) {
		t.Errorf("SotW: the two streams hold two maps of the same %d returned resources", n)
	}

	// n1 drops c-19 (and is sent nothing: it holds the rest).
	streams[0].req(resourcev3.EndpointType, "v1", nonces[0], "", all[:n-1]...)
	deadline := time.Now().Add(10 * time.Second)
	for len(parked(t, s, resourcev3.EndpointType, false, 2)["n1"].SubscribedResources()) != n-1 {
		if time.Now().After(deadline) {
			t.Fatal("n1's request without c-19 not parked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(parked(t, s, resourcev3.EndpointType, false, 2)["n2"].ReturnedResources()); got != n {
		t.Fatalf("n1 dropping c-19 changed what n2 holds: %d returned resources, want %d", got, n)
	}
	// v2 changes c-00 only: each node is sent c-00 alone.
	if err := s.SetSnapshot(context.Background(), "edge", "v2", edsSnapshot(t, "v2", n, 9200)); err != nil {
		t.Fatal(err)
	}
	for _, a := range streams {
		if got := resourceNames(a.recv()); !slices.Equal(got, []string{"c-00"}) {
			t.Fatalf("%s at v2: sent %v, want c-00 only", a.id, got)
		}
	}

	// Delta: two streams naming the same load assignments.
	for _, id := range []string{"d1", "d2"} {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: "edge"}, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: all}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ds := parked(t, s, resourcev3.EndpointType, true, 2)
	if !samePtr(ds["d1"].SubscribedResources(), ds["d2"].SubscribedResources()) {
		t.Errorf("delta: the two streams hold two maps of the same %d subscribed names", n)
	}
	if len(ds["d1"].ReturnedResources()) != n || !samePtr(ds["d1"].ReturnedResources(), ds["d2"].ReturnedResources()) {
		t.Errorf("delta: the two streams hold two maps of the same %d resource versions", n)
	}

	// Delta wildcard: the streams' held-encoding tokens are one map.
	for _, id := range []string{"w1", "w2"} {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ws := parked(t, s, resourcev3.ClusterType, true, 2)
	if len(ws["w1"].ReturnedResources()) != 1 || !samePtr(ws["w1"].ReturnedResources(), ws["w2"].ReturnedResources()) {
		t.Errorf("delta wildcard: the two streams hold two tokens for the same encoding")
	}
}

// TestNameSetsForgetUnused: an interned name set no stream holds any
// more is dropped from the table.
func TestNameSetsForgetUnused(t *testing.T) {
	sets := newNameSets()
	a := sets.get([]string{"x", "y"})
	if b := sets.get([]string{"x", "y"}); a != b {
		t.Fatal("the same names interned twice")
	}
	if c := sets.get([]string{"y", "x"}); c == a {
		t.Fatal("names in another order are another list")
	}
	runtime.KeepAlive(a)
	deadline := time.Now().Add(10 * time.Second)
	for sets.size() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sets still interned with no holder", sets.size())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// xdsGoroutines counts the goroutines running this package's code (not
// its tests').
func xdsGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "controlplane/xds.") && !strings.Contains(g, "_test.go:") {
			n++
		}
	}
	return n
}

// TestIdleStreamHoldsOneGoroutine: a stream that has been answered and
// waits for the next version holds one goroutine of the server's (its
// handler, reading requests); the goroutine that sent its answers has
// ended. SotW and delta.
func TestIdleStreamHoldsOneGoroutine(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.SetSnapshot(context.Background(), "edge", "v1", edsSnapshot(t, "v1", 3, 9100)); err != nil {
		t.Fatal(err)
	}
	// The streams of earlier tests' servers end first.
	deadline := time.Now().Add(10 * time.Second)
	for xdsGoroutines() != 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<22)
			t.Fatalf("%d goroutines of earlier servers still run:\n%s", xdsGoroutines(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	const n = 20
	for i := range n {
		a := openSotw(t, ctx, conn, fmt.Sprintf("s%d", i))
		a.req(resourcev3.ClusterType, "", "", "")
		r := a.recv()
		a.req(resourcev3.ClusterType, r.GetVersionInfo(), r.GetNonce(), "")
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("d%d", i), Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		d, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: d.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	parked(t, s, resourcev3.ClusterType, false, n)
	parked(t, s, resourcev3.ClusterType, true, n)
	deadline = time.Now().Add(10 * time.Second)
	for {
		got := xdsGoroutines()
		if got == 2*n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle streams hold %d goroutines of the server's, want %d (one each)", 2*n, got, 2*n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerContextEndsStreams: when the Server's context ends, its
// streams end (the handler reads requests itself, so this needs
// ServerOptions' tap), SotW and delta.
func TestServerContextEndsStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(ctx, Options{Registry: prometheus.NewRegistry()})
	gs := grpc.NewServer(ServerOptions()...)
	s.Register(gs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := s.SetSnapshot(context.Background(), "edge", "v1", edsSnapshot(t, "v1", 3, 9100)); err != nil {
		t.Fatal(err)
	}
	a := openSotw(t, t.Context(), conn, "n1")
	a.req(resourcev3.ClusterType, "", "", "")
	a.recv()
	d, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "d1", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	ended := make(chan error, 2)
	go func() { _, err := a.st.Recv(); ended <- err }()
	go func() { _, err := d.Recv(); ended <- err }()
	for range 2 {
		select {
		case err := <-ended:
			if err == nil {
				t.Fatal("a stream sent a response after the server's context ended")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream did not end when the server's context ended")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Streams() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still tracked", s.Streams())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWildcardAndNamedShareNoReturnedMap: a wildcard and a named SotW
// endpoint subscription that get the same names hold different returned
// resources (the named one also the content hash of each, for partial
// answers): the named node, answered after the wildcard one, is sent at
// the next version only the load assignment that changed.
func TestWildcardAndNamedShareNoReturnedMap(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.SetSnapshot(context.Background(), "edge", "v1", edsSnapshot(t, "v1", 5, 9100)); err != nil {
		t.Fatal(err)
	}
	w := openSotw(t, ctx, conn, "wild")
	w.req(resourcev3.EndpointType, "", "", "")
	if r := w.recv(); len(r.GetResources()) != 5 {
		t.Fatalf("wildcard: %d load assignments, want 5", len(r.GetResources()))
	}
	n := openSotw(t, ctx, conn, "named")
	all := names("c", 5)
	n.req(resourcev3.EndpointType, "", "", "", all...)
	r := n.recv()
	n.req(resourcev3.EndpointType, r.GetVersionInfo(), r.GetNonce(), "", all...)
	parked(t, s, resourcev3.EndpointType, false, 1)
	if err := s.SetSnapshot(context.Background(), "edge", "v2", edsSnapshot(t, "v2", 5, 9200)); err != nil {
		t.Fatal(err)
	}
	if got := resourceNames(n.recv()); !slices.Equal(got, []string{"c-00"}) {
		t.Fatalf("named node at v2: sent %v, want c-00 only", got)
	}
}
