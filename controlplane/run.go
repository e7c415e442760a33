package controlplane

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// Listeners are where Run serves.
type Listeners struct {
	XDS   net.Listener // gRPC: ADS (SotW + delta) and the health service
	Admin net.Listener // HTTP: /metrics, /healthz, /readyz, /debug/...
}

// Listen opens both listeners.
func Listen(xdsAddr, adminAddr string) (Listeners, error) {
	x, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		return Listeners{}, fmt.Errorf("xds listener: %w", err)
	}
	a, err := net.Listen("tcp", adminAddr)
	if err != nil {
		x.Close()
		return Listeners{}, fmt.Errorf("admin listener: %w", err)
	}
	return Listeners{XDS: x, Admin: a}, nil
}

// Run is `gatehouse controlplane`: build the pipeline, serve xDS and the
// admin endpoints on l, and run until ctx ends.
func Run(ctx context.Context, cfg Config, l Listeners) error {
	cp, err := New(ctx, cfg)
	if err != nil {
		l.XDS.Close()
		l.Admin.Close()
		return err
	}
	return cp.Serve(ctx, l)
}

// Serve serves xDS (with cfg.TLS) and the admin endpoints on l and runs
// the pipeline until ctx ends. Plaintext xDS on a non-loopback address is
// refused unless cfg.TLS.Insecure.
func (cp *ControlPlane) Serve(ctx context.Context, l Listeners) error {
	cfg := cp.cfg
	log := cp.log
	if err := cfg.TLS.CheckListen("--xds-addr", l.XDS.Addr().String()); err != nil {
		l.XDS.Close()
		l.Admin.Close()
		return err
	}
	tc, err := cfg.TLS.Config("xds")
	if err != nil {
		l.XDS.Close()
		l.Admin.Close()
		return err
	}
	opts := xds.ServerOptions()
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		log.Info("xds: TLS on", "mutual", tc.ClientCAs != nil)
	}
	gs := telemetry.NewGRPCServer(log, opts...)
	cp.RegisterXDS(gs.Server)
	admin := telemetry.NewAdmin(log, cfg.Registry)
	cp.RegisterDebug(admin)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(ctx, l.XDS, 10*time.Second) })
	g.Go(func() error {
		log.Info("admin http listening", "addr", l.Admin.Addr().String())
		return telemetry.ServeHTTP(ctx, l.Admin, admin.Handler())
	})
	g.Go(func() error { return cp.Run(ctx) })
	return g.Wait()
}
