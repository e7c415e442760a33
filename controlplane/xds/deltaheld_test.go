package xds

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestDeltaWildcardStreamsShareHeldVersions: over real delta ADS streams,
// a wildcard stream that holds every cluster of its group keeps one token
// for them (the group keeps the versions once), not a name → version
// entry per cluster per stream; and the deltas stay right: one changed and
// one removed cluster are all a change sends, and a cluster explicitly
// unsubscribed from a wildcard stream is sent again.
func TestDeltaWildcardStreamsShareHeldVersions(t *testing.T) {
	s, conn := startServer(t)
	ctx := context.Background()
	var clusters []types.Resource
	for i := range 50 {
		clusters = append(clusters, cluster(fmt.Sprintf("c-%02d", i), time.Second, 0))
	}
	if err := s.SetSnapshot(ctx, "edge", "v1", snapshot(t, "v1", clusters, nil)); err != nil {
		t.Fatal(err)
	}
	type stream = discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	var streams []stream
	for _, id := range []string{"n1", "n2"} {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
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
		if len(r.GetResources()) != 50 {
			t.Fatalf("%s: first CDS delta has %d clusters, want 50", id, len(r.GetResources()))
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	// Both ACKs parked: each stream's returned resources are one token.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.cache.mu.Lock()
		var sizes []int
		for _, w := range s.cache.groups["edge"].deltas {
			sizes = append(sizes, len(w.sub.ReturnedResources()))
		}
		s.cache.mu.Unlock()
		if len(sizes) == 2 {
			if !slices.Equal(sizes, []int{1, 1}) {
				t.Fatalf("returned resources per stream = %v entries, want 1 each (a token, not 50 names)", sizes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 watches parked", len(sizes))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// v2 changes c-07 and removes c-49.
	next := slices.Clone(clusters[:49])
	next[7] = cluster("c-07", 2*time.Second, 0)
	if err := s.SetSnapshot(ctx, "edge", "v2", snapshot(t, "v2", next, nil)); err != nil {
		t.Fatal(err)
	}
	for i, st := range streams {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "c-07" || !slices.Equal(r.GetRemovedResources(), []string{"c-49"}) {
			t.Fatalf("stream %d: v2 delta = %d resources, removed %v; want c-07 and c-49 removed", i, len(r.GetResources()), r.GetRemovedResources())
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}

	// n1 names c-03 next to its wildcard, then unsubscribes from it: the
	// protocol wants c-03 sent again (it still exists).
	st := streams[0]
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"c-03"}}); err != nil {
		t.Fatal(err)
	}
	// (A wildcard request without a nonce is answered, here with nothing.)
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 0 {
		t.Fatalf("subscribing c-03 it holds: %d resources sent", len(r.GetResources()))
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(), ResourceNamesUnsubscribe: []string{"c-03"}}); err != nil {
		t.Fatal(err)
	}
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "c-03" {
		t.Fatalf("after unsubscribing c-03: %d resources, want c-03 again", len(r.GetResources()))
	}
}

// TestDeltaForgottenTokenStillRemoves: a wildcard delta node more than
// heldVersions encodings behind (it did not ACK while they were
// published) is sent every cluster again, and the removal of the one
// deleted meanwhile.
func TestDeltaForgottenTokenStillRemoves(t *testing.T) {
	s, conn := startServer(t)
	ctx := context.Background()
	var clusters []types.Resource
	for i := range 10 {
		clusters = append(clusters, cluster(fmt.Sprintf("c-%02d", i), time.Second, 0))
	}
	if err := s.SetSnapshot(ctx, "edge", "v1", snapshot(t, "v1", clusters, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n1", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || len(r.GetResources()) != 10 {
		t.Fatalf("first CDS delta: %v, %d clusters", err, len(r.GetResources()))
	}
	// Another node keeps up (its answers are what the group remembers).
	st2, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n2", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	ack2 := func() {
		t.Helper()
		r2, err := st2.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st2.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r2.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ack2()
	// n1 does not ACK: heldVersions+1 encodings are published meanwhile,
	// the first of which deletes c-09.
	clusters = clusters[:9]
	for v := 2; v <= heldVersions+2; v++ {
		waitDeltaParked(t, s, "n2")
		clusters[0] = cluster("c-00", time.Duration(v)*time.Second, 0)
		if err := s.SetSnapshot(ctx, "edge", fmt.Sprintf("v%d", v), snapshot(t, fmt.Sprintf("v%d", v), slices.Clone(clusters), nil)); err != nil {
			t.Fatal(err)
		}
		ack2()
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 9 || !slices.Equal(r.GetRemovedResources(), []string{"c-09"}) {
		t.Fatalf("catching up: %d clusters, removed %v; want 9 and c-09", len(r.GetResources()), r.GetRemovedResources())
	}
}

// waitDeltaParked waits until node's delta watch is parked in group edge.
func waitDeltaParked(t *testing.T, s *Server, node string) {
	t.Helper()
	parked := func() bool {
		s.cache.mu.Lock()
		defer s.cache.mu.Unlock()
		for _, w := range s.cache.groups["edge"].deltas {
			if w.req.GetNode().GetId() == node {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !parked(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's delta watch was never parked", node)
		}
	}
}
