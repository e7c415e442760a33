package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// GRPCServer is a grpc.Server with the standard health service and the
// keepalive settings Envoy's gRPC clients expect.
type GRPCServer struct {
	*grpc.Server
	Health *health.Server
	log    *slog.Logger
}

// NewGRPCServer builds a server; extra options (interceptors, limits) are
// appended after the defaults.
func NewGRPCServer(log *slog.Logger, opts ...grpc.ServerOption) *GRPCServer {
	base := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.MaxConcurrentStreams(10000),
	}
	s := grpc.NewServer(append(base, opts...)...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	return &GRPCServer{Server: s, Health: h, log: log}
}

// Serve serves on l until ctx ends, then marks every service NOT_SERVING
// and stops gracefully, forcing a stop after grace.
func (s *GRPCServer) Serve(ctx context.Context, l net.Listener, grace time.Duration) error {
	s.log.Info("grpc listening", "addr", l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.Stop()
		<-done
	}
	<-errc
	return nil
}

// ListenAndServe listens on addr and calls Serve.
func (s *GRPCServer) ListenAndServe(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	return s.Serve(ctx, l, 10*time.Second)
}
