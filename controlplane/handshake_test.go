package controlplane

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestXDSTLSHandshakesBounded: with limitHandshakes(n) no more than n
// server TLS handshakes run at once however many nodes connect together,
// and every node is still served. The real credentials (mutual TLS, the
// node certificates of testenv's CA) are wrapped in a counter that holds
// each handshake a moment, so that unbounded handshakes overlap.
func TestXDSTLSHandshakesBounded(t *testing.T) {
	const slots, nodes = 2, 8
	pki := testenv.NewPKI(t)
	stc, err := pki.ServerTLS(t, "xds").Config("xds")
	if err != nil {
		t.Fatal(err)
	}
	counter := &concurrentHandshakes{TransportCredentials: credentials.NewTLS(stc), hold: 50 * time.Millisecond}
	addr := serveXDS(t, limitHandshakes(counter, slots, 10*time.Second), nil)

	ctc, err := pki.NodeTLS(t, "node", "group-a").Config("--xds")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for i := 0; i < nodes; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ctc.Clone())))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("node not served: %v", err)
	}
	if got := counter.handshakes.Load(); got < nodes {
		t.Fatalf("%d handshakes seen, want at least %d: the counter is not in the path", got, nodes)
	}
	if got := counter.max.Load(); got > slots {
		t.Errorf("%d TLS handshakes ran at once, want at most %d", got, slots)
	}
}

// concurrentHandshakes counts the server handshakes running at once; each
// waits hold before the real one starts.
type concurrentHandshakes struct {
	credentials.TransportCredentials
	hold                 time.Duration
	now, max, handshakes atomic.Int64
}

func (c *concurrentHandshakes) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	c.handshakes.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(c.hold)
	return c.TransportCredentials.ServerHandshake(raw)
}
