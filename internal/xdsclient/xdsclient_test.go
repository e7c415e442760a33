package xdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// xdsServer is a real go-control-plane ADS server on loopback that records
// every request it gets.
type xdsServer struct {
	cache cachev3.SnapshotCache
	grpc  *grpc.Server
	addr  string

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
}

func startServer(t *testing.T, addr string, cache cachev3.SnapshotCache) *xdsServer {
	t.Helper()
	var l net.Listener
	var err error
	// After a restart the old port may take a moment to be free again.
	for i := 0; i < 50; i++ {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &xdsServer{cache: cache, grpc: grpc.NewServer(), addr: l.Addr().String()}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		return nil
	}}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(context.Background(), cache, cb))
	go s.grpc.Serve(l)
	t.Cleanup(s.grpc.Stop)
	return s
}

// waitRequest waits for a request matching ok and returns it.
func (s *xdsServer) waitRequest(t *testing.T, what string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, r := range s.reqs {
			if ok(r) {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s request reached the server", what)
	return nil
}

func ext(t *testing.T, name string, v int64) types.Resource {
	t.Helper()
	a, err := anypb.New(wrapperspb.Int64(v))
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: a}
}

func setSnapshot(t *testing.T, c cachev3.SnapshotCache, version string, res ...types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[string][]types.Resource{contract.ExtensionConfigType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSnapshot(context.Background(), "group-a", snap); err != nil {
		t.Fatal(err)
	}
}

// groupHash keys snapshots by node group, as the control plane does.
type groupHash struct{}

func (groupHash) ID(n *corev3.Node) string { return n.GetCluster() }

// recorder is a Handler that rejects resources named "bad" and remembers
// what it accepted.
type recorder struct {
	mu       sync.Mutex
	accepted []string // versions
	names    map[string][]string
	calls    int
}

func (r *recorder) handle(version string, res []*anypb.Any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	var names []string
	for _, a := range res {
		tec := &corev3.TypedExtensionConfig{}
		if err := a.UnmarshalTo(tec); err != nil {
			return fmt.Errorf("resource is not a TypedExtensionConfig: %w", err)
		}
		if tec.GetName() == "bad" {
			return errors.New("resource \"bad\" is invalid")
		}
		names = append(names, tec.GetName())
	}
	r.accepted = append(r.accepted, version)
	if r.names == nil {
		r.names = map[string][]string{}
	}
	r.names[version] = names
	return nil
}

func (r *recorder) waitAccepted(t *testing.T, version string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, v := range r.accepted {
			if v == version {
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("version %q never accepted", version)
}

func TestACKNACKAndReconnect(t *testing.T) {
	cache := cachev3.NewSnapshotCache(true, groupHash{}, nil)
	setSnapshot(t, cache, "v1", ext(t, "a", 1), ext(t, "b", 2))
	srv := startServer(t, "127.0.0.1:0", cache)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rec := &recorder{}
	go func() {
		done <- xdsclient.Run(ctx, xdsclient.Config{
			Server:         srv.addr,
			NodeID:         "sidecar-1",
			NodeCluster:    "group-a",
			TypeURL:        contract.ExtensionConfigType,
			InitialBackoff: 20 * time.Millisecond,
			MaxBackoff:     100 * time.Millisecond,
		}, rec.handle)
	}()

	// ACK of v1 with both resources.
	rec.waitAccepted(t, "v1")
	srv.waitRequest(t, "ACK of v1", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == "v1" && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
	})
	first := srv.waitRequest(t, "initial", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if first.GetNode().GetId() != "sidecar-1" || first.GetNode().GetCluster() != "group-a" || first.GetTypeUrl() != contract.ExtensionConfigType {
		t.Fatalf("initial request node/type = %v %q", first.GetNode(), first.GetTypeUrl())
	}
	rec.mu.Lock()
	if got := rec.names["v1"]; len(got) != 2 {
		t.Errorf("v1 resources = %v, want a and b", got)
	}
	rec.mu.Unlock()

	// v2 is rejected: the NACK carries the handler's message and the last
	// good version.
	setSnapshot(t, cache, "v2", ext(t, "a", 1), ext(t, "bad", 3))
	nack := srv.waitRequest(t, "NACK of v2", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if nack.GetVersionInfo() != "v1" {
		t.Errorf("NACK version_info = %q, want the last good v1", nack.GetVersionInfo())
	}
	if msg := nack.GetErrorDetail().GetMessage(); msg != `resource "bad" is invalid` {
		t.Errorf("NACK message = %q", msg)
	}

	// v3 is good again.
	setSnapshot(t, cache, "v3", ext(t, "a", 1), ext(t, "c", 4))
	rec.waitAccepted(t, "v3")

	// Restart the server on the same address with a fresh cache: the
	// client reconnects, announces v3 and gets v4.
	srv.grpc.Stop()
	cache2 := cachev3.NewSnapshotCache(true, groupHash{}, nil)
	setSnapshot(t, cache2, "v4", ext(t, "d", 5))
	srv2 := startServer(t, srv.addr, cache2)
	rec.waitAccepted(t, "v4")
	re := srv2.waitRequest(t, "re-subscription", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "" })
	if re.GetVersionInfo() != "v3" {
		t.Errorf("re-subscription version_info = %q, want the last accepted v3", re.GetVersionInfo())
	}

	rec.mu.Lock()
	for _, v := range rec.accepted {
		if v == "v2" {
			t.Errorf("the rejected v2 was recorded as accepted")
		}
	}
	rec.mu.Unlock()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunRejectsIncompleteConfig(t *testing.T) {
	err := xdsclient.Run(context.Background(), xdsclient.Config{Server: "127.0.0.1:1"}, func(string, []*anypb.Any) error { return nil })
	if err == nil {
		t.Fatal("Run without NodeID and TypeURL returned nil")
	}
}

func TestNamedSubscription(t *testing.T) {
	// ads=false: go-control-plane's ADS mode answers a named request only
	// when the snapshot holds nothing else.
	cache := cachev3.NewSnapshotCache(false, groupHash{}, nil)
	setSnapshot(t, cache, "v1", ext(t, "a", 1), ext(t, "b", 2))
	srv := startServer(t, "127.0.0.1:0", cache)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	go xdsclient.Run(ctx, xdsclient.Config{
		Server: srv.addr, NodeID: "n", NodeCluster: "group-a",
		TypeURL: contract.ExtensionConfigType, ResourceNames: []string{"b"},
	}, rec.handle)
	rec.waitAccepted(t, "v1")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.names["v1"]; len(got) != 1 || got[0] != "b" {
		t.Errorf("named subscription got %v, want [b]", got)
	}
}
