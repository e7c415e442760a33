package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// grpcDefaultReadBuffer is grpc-go's default per-connection read buffer
// (ReadBufferSize), which over TLS is allocated per connection, unpooled.
const grpcDefaultReadBuffer = 32 << 10

// http2MaxFrame is the largest HTTP/2 frame payload a gRPC client sends
// by default: unbuffered, the server reads no more than a frame at a time.
const http2MaxFrame = 16 << 10

// TestXDSTLSReadBuffer: the xDS server's options over TLS read each
// connection with tlsReadBufferSize, not gRPC's 32 KiB default buffer
// (which over TLS every connection holds for as long as it lives). The
// server's credentials are wrapped to see the reads gRPC makes on the TLS
// connection: with a read buffer of n bytes gRPC reads n at a time;
// without one (0), one HTTP/2 frame's header or payload at a time.
func TestXDSTLSReadBuffer(t *testing.T) {
	pki := testenv.NewPKI(t)
	stc, err := pki.ServerTLS(t, "xds").Config("xds")
	if err != nil {
		t.Fatal(err)
	}
	rec := &readRecorder{TransportCredentials: credentials.NewTLS(stc)}
	addr := serveXDS(t, rec, nil)

	ctc, err := pki.NodeTLS(t, "node", "group-a").Config("--xds")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ctc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	for i := 0; i < 5; i++ {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health check over TLS: %v", err)
		}
	}
	if rec.conns.Load() == 0 || rec.max.Load() == 0 {
		t.Fatalf("no reads seen on the server's TLS connections (%d connections): the recorder is not in the path", rec.conns.Load())
	}
	limit := int64(max(tlsReadBufferSize, http2MaxFrame))
	if got := rec.max.Load(); got > limit || got >= grpcDefaultReadBuffer {
		t.Errorf("the xDS server read %d bytes at a time from a TLS connection: a read buffer of that size per connection (want at most %d: tlsReadBufferSize %d, or a frame at a time)", got, limit, tlsReadBufferSize)
	}
}

// readRecorder wraps server credentials to record the largest read gRPC
// makes on a handshaken connection.
type readRecorder struct {
	credentials.TransportCredentials
	conns, max atomic.Int64
}

func (r *readRecorder) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := r.TransportCredentials.ServerHandshake(c)
	if err != nil {
		return nil, nil, err
	}
	r.conns.Add(1)
	return &recordedConn{Conn: conn, max: &r.max}, ai, nil
}

type recordedConn struct {
	net.Conn
	max *atomic.Int64
}

func (c *recordedConn) Read(p []byte) (int, error) {
	for {
		m := c.max.Load()
		if int64(len(p)) <= m || c.max.CompareAndSwap(m, int64(len(p))) {
			break
		}
	}
	return c.Conn.Read(p)
}

// serveXDS serves a gRPC server with the xDS port's options
// (xdsServerOptions) and creds on 127.0.0.1:0, through wrap when set (as
// Serve wraps the listener), until the test ends, and returns its address.
func serveXDS(t *testing.T, creds credentials.TransportCredentials, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	gs := telemetry.NewGRPCServer(slog.New(slog.NewTextHandler(io.Discard, nil)), xdsServerOptions(creds)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	go func() { _ = gs.Server.Serve(l) }()
	t.Cleanup(gs.Server.Stop)
	return addr
}
