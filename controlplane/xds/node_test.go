package xds

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// bigNode is a node as Envoy sends it in every request by default, its
// metadata standing in for the build, locality and extension list: about
// size bytes once decoded.
func bigNode(id string, size int) *corev3.Node {
	md, err := structpb.NewStruct(map[string]any{"pad": strings.Repeat("x", size)})
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Cluster: "edge", UserAgentName: "envoy", Metadata: md}
}

// liveHeap is the heap in use after two collections.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestStreamKeepsOneNode: a node repeating a large node in every request
// of every type (SotW and delta, over real gRPC) costs one copy of it per
// stream, not one per type watch: each stream's kept requests share its
// first node.
func TestStreamKeepsOneNode(t *testing.T) {
	const streams, nodeSize = 8, 256 << 10
	typeURLs := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			s, conn := startServer(t)
			if err := s.SetSnapshot(context.Background(), "edge", "v1", snapshot(t, "v1", []types.Resource{cluster("a", time.Second, 0)}, []types.Resource{endpoints("a", 80)})); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
			before := liveHeap()
			var keep []any // the client streams stay open
			for i := 0; i < streams; i++ {
				id := "n" + string(rune('a'+i))
				if delta {
					st, err := client.DeltaAggregatedResources(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for _, ty := range typeURLs {
						if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: bigNode(id, nodeSize), TypeUrl: ty}); err != nil {
							t.Fatal(err)
						}
					}
					for j := 0; j < 2; j++ { // CDS and EDS are answered; LDS and RDS watches wait
						if _, err := st.Recv(); err != nil {
							t.Fatal(err)
						}
					}
					keep = append(keep, st)
					continue
				}
				st, err := client.StreamAggregatedResources(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, ty := range typeURLs {
					if err := st.Send(&discoveryv3.DiscoveryRequest{Node: bigNode(id, nodeSize), TypeUrl: ty}); err != nil {
						t.Fatal(err)
					}
				}
				for j := 0; j < 2; j++ {
					if _, err := st.Recv(); err != nil {
						t.Fatal(err)
					}
				}
				keep = append(keep, st)
			}
			// Every request has been handled once its type is answered or
			// watched: wait until the last stream's last request is in.
			for deadline := time.Now().Add(10 * time.Second); len(s.Nodes()) < streams; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d streams known, want %d", len(s.Nodes()), streams)
				}
			}
			time.Sleep(200 * time.Millisecond)
			grew := int64(liveHeap()) - int64(before)
			perStream := grew / streams
			runtime.KeepAlive(keep)
			t.Logf("live heap per stream: %d KiB (node %d KiB, %d types)", perStream>>10, nodeSize>>10, len(typeURLs))
			if perStream > 2*nodeSize {
				t.Errorf("each stream keeps %d KiB for a %d KiB node sent with %d types: more than one copy of its node", perStream>>10, nodeSize>>10, len(typeURLs))
			}
		})
	}
}
