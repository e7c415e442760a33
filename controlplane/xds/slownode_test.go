package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSlowNodeDelaysNoOne: nodes that never read their streams (one SotW,
// one delta, each on its own connection, as every Envoy has) hold up
// neither setting a snapshot nor the nodes that do read: version after
// version of a config far larger than gRPC's flow-control windows, the
// reading node gets each one. 10 s is a failure timeout, not a speed
// requirement.
func TestSlowNodeDelaysNoOne(t *testing.T) {
	s, conn := startServer(t)
	dial := func() *grpc.ClientConn {
		c, err := grpc.NewClient(conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// 16 clusters of 64 KiB each: 1 MiB per version.
	config := func(v int) []types.Resource {
		var out []types.Resource
		for i := range 16 {
			c := cluster(fmt.Sprintf("c-%d", i), time.Duration(v+1)*time.Second, 64<<10)
			out = append(out, c)
		}
		return out
	}
	set := func(v int) {
		t.Helper()
		name := fmt.Sprintf("v%d", v)
		done := make(chan error, 1)
		go func() {
			done <- s.SetSnapshot(context.Background(), "edge", name, snapshot(t, name, config(v), nil))
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("SetSnapshot(%s) blocked on a node that does not read", name)
		}
	}
	set(0)

	// The slow nodes subscribe and never read.
	slow, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial()).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "slow-sotw", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	slowDelta, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial()).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := slowDelta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "slow-delta", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}

	// The reading node.
	fast, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial()).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoveryv3.DiscoveryResponse, 1)
	go func() {
		for {
			r, err := fast.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- r
		}
	}()
	next := func(want string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		select {
		case r, ok := <-resps:
			if !ok {
				t.Fatal("the reading node's stream ended")
			}
			if r.GetVersionInfo() != want {
				t.Fatalf("reading node got %s, want %s", r.GetVersionInfo(), want)
			}
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("the reading node never got %s", want)
		}
		return nil
	}
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "fast", Cluster: "edge"}, TypeUrl: resourcev3.ClusterType}
	if err := fast.Send(req); err != nil {
		t.Fatal(err)
	}
	r := next("v0")
	for v := 1; v <= 8; v++ {
		if err := fast.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		set(v)
		r = next(fmt.Sprintf("v%d", v))
	}
	// The slow nodes are connected and have ACKed nothing.
	for _, n := range s.Nodes() {
		if (n.NodeID == "slow-sotw" || n.NodeID == "slow-delta") && len(n.Acked) != 0 {
			t.Fatalf("slow node %s ACKed %v", n.NodeID, n.Acked)
		}
	}
	if got := len(s.Nodes()); got != 3 {
		t.Fatalf("%d streams, want 3", got)
	}
}
