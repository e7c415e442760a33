package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// stallTLS opens n TCP connections to addr that never start a TLS
// handshake (a slow or hostile client).
func stallTLS(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// TestXDSTLSStalledHandshakeIsCut: a client that connects to the xDS port
// and never completes its TLS handshake is disconnected after
// TLSHandshakeTimeout (it would otherwise hold its connection and a
// goroutine, or a handshake slot, for gRPC's 120 s connection timeout),
// with the default (no bound on handshakes) and with one slot.
func TestXDSTLSStalledHandshakeIsCut(t *testing.T) {
	for _, slots := range []int{0, 1} {
		t.Run(fmt.Sprintf("slots=%d", slots), func(t *testing.T) { testStalledHandshakeIsCut(t, slots) })
	}
}

func testStalledHandshakeIsCut(t *testing.T, slots int) {
	const timeout = 500 * time.Millisecond
	h := startTLSControlPlane(t, controlplane.Config{TLSHandshakes: slots, TLSHandshakeTimeout: timeout}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	for _, c := range stallTLS(t, h.addr, 3) { // with one slot: one in it, two waiting
		// The test's own deadline: far beyond the handshake timeout (and
		// its wait for a slot), far below gRPC's 120 s.
		if err := c.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection that never handshakes is still open after 15 s (handshake timeout %s)", timeout)
		}
		if err == nil {
			t.Fatal("the server sent bytes to a client that never started a handshake")
		}
	}
}

// TestXDSTLSHandshakeFloodDoesNotLockOutNodes: with every handshake slot
// taken by clients that never handshake, and more of them queued, a real
// node that connects after them is still served: stalled handshakes are
// cut after the timeout and the waiting ones give up, so the node gets a
// slot (on its first attempt or, if its own wait ran out, on gRPC's
// reconnect).
func TestXDSTLSHandshakeFloodDoesNotLockOutNodes(t *testing.T) {
	const slots = 2
	h := startTLSControlPlane(t, controlplane.Config{TLSHandshakes: slots, TLSHandshakeTimeout: 500 * time.Millisecond}, map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	stallTLS(t, h.addr, 3*slots)
	conn := dialXDSTLS(t, h.addr, h.pki.NodeTLS(t, "envoy-edge", "edge"))
	defer conn.Close()
	// Far beyond the flood's handshake timeouts, far below gRPC's 120 s
	// connection timeout, which would otherwise keep the slots.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	// Waiting for ready, the node reconnects (as Envoy does) when its
	// attempt is refused.
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("a node connecting behind a flood of stalled handshakes got no stream: %v", err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-0", Cluster: "edge"}, TypeUrl: cdsType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("a node connecting behind a flood of stalled handshakes was not served: %v", err)
	}
	t.Logf("served after %s", time.Since(start).Round(time.Millisecond))
}
