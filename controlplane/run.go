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

// tlsReadBufferSize is the xDS server's read buffer per connection when
// it serves TLS. gRPC's default (32 KiB) comes from a pool shared by all
// connections only when it can read the socket directly (plaintext); over
// TLS each connection holds its own 32 KiB for as long as it lives, most
// of a node's memory on a control plane with thousands of nodes
// connected. crypto/tls already buffers a whole record per connection, so
// gRPC reads frames from it unbuffered (0).
const tlsReadBufferSize = 0

// xdsServerOptions are the xDS gRPC server's options: the ADS codec's
// and, with creds (TLS), the credentials and tlsReadBufferSize.
func xdsServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	opts := xds.ServerOptions()
	if creds != nil {
		opts = append(opts, grpc.Creds(creds), grpc.ReadBufferSize(tlsReadBufferSize))
	}
	return opts
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
	var creds credentials.TransportCredentials
	if tc != nil {
		lim := limitHandshakes(credentials.NewTLS(tc), cfg.TLSHandshakes, cfg.TLSHandshakeTimeout)
		lim.waits = cp.metrics.handshakeWaits
		creds = lim
		log.Info("xds: TLS on", "mutual", tc.ClientCAs != nil, "handshakes", cap(lim.slots), "handshake_timeout", lim.timeout.String())
	}
	gs := telemetry.NewGRPCServer(log, xdsServerOptions(creds)...)
	cp.RegisterXDS(gs.Server)
	admin := telemetry.NewAdmin(log, cfg.Registry)
	cp.RegisterDebug(admin)
	g, ctx := errgroup.WithContext(ctx)
	xl := l.XDS
	if cfg.ReleaseAfter >= 0 {
		quiet := cfg.ReleaseAfter
		if quiet == 0 {
			quiet = DefaultReleaseAfter
		}
		cp.release = newMemRelease(quiet, cfg.Registry)
		xl = touchListener{Listener: l.XDS, r: cp.release}
		g.Go(func() error { cp.release.run(ctx); return nil })
	}
	g.Go(func() error { return gs.Serve(ctx, xl, 10*time.Second) })
	g.Go(func() error {
		log.Info("admin http listening", "addr", l.Admin.Addr().String())
		return telemetry.ServeHTTP(ctx, l.Admin, admin.Handler())
	})
	g.Go(func() error { return cp.Run(ctx) })
	return g.Wait()
}
