package xds

import (
	"context"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"time"
)

// TestResumeOnlyOnANewStream: presenting the current version counts as
// holding its resources only on a stream that has been sent nothing of
// the type. On a stream that got an answer without a resource (it named
// one that does not exist), subscribing to an existing name at the same
// version still gets that resource at once.
func TestResumeOnlyOnANewStream(t *testing.T) {
	s, conn := startServer(t)
	ea := endpoints("c-a", 9001)
	if err := s.SetSnapshot(context.Background(), "edge", "v1", snapshot(t, "v1", []types.Resource{cluster("c-a", time.Second, 0)}, []types.Resource{ea})); err != nil {
		t.Fatal(err)
	}
	// A missing answer ends the stream (and the test) instead of hanging.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := adsStream{t, st}
	a.send(resourcev3.EndpointType, "", "", "c-missing")
	r := a.recv()
	if r.GetVersionInfo() != "v1" || len(r.GetResources()) != 0 {
		t.Fatalf("got version %q with %d resources, want v1 with none", r.GetVersionInfo(), len(r.GetResources()))
	}
	a.send(resourcev3.EndpointType, "v1", r.GetNonce(), "c-missing", "c-a")
	r = a.recv()
	if r.GetVersionInfo() != "v1" || len(r.GetResources()) != 1 {
		t.Fatalf("got version %q with %d resources, want v1 with c-a", r.GetVersionInfo(), len(r.GetResources()))
	}
}
