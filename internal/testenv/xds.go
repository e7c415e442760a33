package testenv

import (
	"context"
	"net"
	"sync"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// XDS is a plain go-control-plane ADS server on loopback (ADS mode,
// snapshots keyed by node id) that records every request it gets: the
// independent control plane the sidecars' xDS clients are tested against.
type XDS struct {
	Addr  string
	cache cachev3.SnapshotCache
	stop  func()

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
}

// StartXDS serves on addr ("127.0.0.1:0" for a free port) until the test
// ends or Stop.
func StartXDS(t testing.TB, addr string) *XDS {
	t.Helper()
	x := &XDS{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	x.Addr = l.Addr().String()
	gs := grpc.NewServer()
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		x.mu.Lock()
		x.reqs = append(x.reqs, r)
		x.mu.Unlock()
		return nil
	}}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), x.cache, cb))
	go func() { _ = gs.Serve(l) }()
	x.stop = gs.Stop
	t.Cleanup(gs.Stop)
	return x
}

// Stop stops serving (connected clients see the stream end).
func (x *XDS) Stop() { x.stop() }

// Set publishes version of resources (by type URL) to node.
func (x *XDS) Set(t testing.TB, node, version string, resources map[string][]types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, resources)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// Find returns the first request ok accepts, or nil.
func (x *XDS) Find(ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.reqs {
		if ok(r) {
			return r
		}
	}
	return nil
}

// Acked reports whether a client ACKed version of typeURL (any type when
// typeURL is empty).
func (x *XDS) Acked(typeURL, version string) bool {
	return x.Find(func(r *discoveryv3.DiscoveryRequest) bool {
		return (typeURL == "" || r.GetTypeUrl() == typeURL) && r.GetVersionInfo() == version && r.GetErrorDetail() == nil && r.GetResponseNonce() != ""
	}) != nil
}

// NACK returns the first NACK received, or nil.
func (x *XDS) NACK() *discoveryv3.DiscoveryRequest {
	return x.Find(func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
}

// Extension is one resource of the ExtensionConfig type before wrapping:
// its name, payload type and value, as contract.Wrap takes them.
type Extension struct {
	Name, Type string
	Value      any
}

// WrapExtensions wraps each extension with contract.Wrap, failing the
// test on an error: the ExtensionConfig resources a sidecar test serves.
func WrapExtensions(t testing.TB, exts ...Extension) []types.Resource {
	t.Helper()
	out := make([]types.Resource, 0, len(exts))
	for _, e := range exts {
		tec, err := contract.Wrap(e.Name, e.Type, e.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tec)
	}
	return out
}
