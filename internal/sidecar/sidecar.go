// Package sidecar is the one skeleton of the three gRPC sidecars (authz,
// ratelimit, accesslog): it opens the gRPC and admin HTTP listeners (with
// the mTLS of internal/tlsconfig), serves the admin endpoints of
// internal/telemetry (/metrics, /healthz, /readyz), binds the gRPC health
// status of the sidecar's service to whether it has config, follows its
// config sources — spec directories through internal/specdir, the control
// plane through internal/xdsclient — and runs everything in one errgroup
// that stops gracefully when the context ends.
//
// A sidecar package keeps only its policy: how a directory or an xDS
// response becomes config (Dir.Reload, Subscription.Handler), what it
// registers on the gRPC server, and what "has config" means (HasConfig).
// Every source delivers through those callbacks; a callback's error keeps
// the last good config (and NACKs, for xDS).
//
// It must not import the control plane, cmd/ or any sidecar, nor the
// policy libraries (authn, authz, ratelimit, accesslog).
package sidecar

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// GracePeriod is how long in-flight RPCs get when the sidecar stops.
const GracePeriod = 10 * time.Second

// Dir is a watched directory source.
type Dir struct {
	Path string
	// Source names it in logs (e.g. "spec_dir", "config_dir").
	Source string
	// Reload reads the directory and applies it; an error leaves the
	// previous config in force. Run calls it once before listening (an
	// error then stops the start) unless Loaded says the caller already
	// did, and again after every change the watcher sees.
	Reload func() error
	Loaded bool
}

// Subscription is one xDS resource type and what to do with a response.
type Subscription struct {
	TypeURL string
	Handler xdsclient.Handler
}

// XDS is the control-plane source; Server empty means none.
type XDS struct {
	Server, NodeID, NodeCluster string
	Subscriptions               []Subscription
}

// Config describes one sidecar.
type Config struct {
	// Name is the role ("authz"): the prefix of errors, the log component.
	Name string
	// GRPCAddr and AdminAddr are listened on unless the listeners are
	// given (gatehouse dev and tests pre-open them).
	GRPCAddr, AdminAddr         string
	GRPCListener, AdminListener net.Listener
	// TLS is the gRPC port's server TLS; AdminTLS, when set, the admin
	// port's (accesslog's query API). Without them a port must be on
	// loopback (or Insecure). XDSTLS is the client TLS toward the
	// control plane.
	TLS      tlsconfig.Server
	AdminTLS *tlsconfig.Server
	XDSTLS   tlsconfig.Client
	// AdminFlag and AdminWhat name the admin port in AdminTLS errors
	// (default "--admin-addr" and "<Name> admin").
	AdminFlag, AdminWhat string

	ServerOptions []grpc.ServerOption // after telemetry's defaults and the TLS options
	Register      func(*grpc.Server)  // registers the sidecar's service
	// HealthService is the gRPC service whose health status is SERVING
	// exactly when HasConfig returns nil; it is checked at start and
	// after every source callback.
	HealthService string
	HasConfig     func() error

	// Admin adds ready checks and endpoints to the admin server;
	// AdminHandler, when set, builds the admin port's handler around
	// the admin endpoints (default: the admin endpoints alone).
	Admin        func(*telemetry.Admin)
	AdminHandler func(admin http.Handler) http.Handler
	AdminLimits  []telemetry.ServerLimits

	Dirs []Dir
	// Watch configures the directory watchers; NoWatch loads the
	// directories once and never again.
	Watch   specdir.Options
	NoWatch bool
	XDS     XDS

	// Tasks run next to the servers and stop with them; an error from
	// one stops the sidecar.
	Tasks []func(context.Context) error

	Log      *slog.Logger         // with the component already set
	Registry *prometheus.Registry // default: telemetry.NewRegistry()
	// Listening, when set, is called with the bound addresses once both
	// listeners are open.
	Listening func(grpcAddr, adminAddr net.Addr)
}

// Telemetry returns the logger and registry of the sidecar name: log with
// component=name (a discarding logger when nil), and reg (a fresh
// telemetry.NewRegistry when nil).
func Telemetry(name string, log *slog.Logger, reg *prometheus.Registry) (*slog.Logger, *prometheus.Registry) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	return log.With("component", name), reg
}

// Run serves until ctx ends (or a server, a source or a task fails), then
// stops the gRPC server gracefully and returns.
func Run(ctx context.Context, cfg Config) (err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	fail := func(err error) error { return fmt.Errorf("%s: %w", cfg.Name, err) }
	// Given listeners are ours to close, whatever happens.
	for _, l := range []net.Listener{cfg.GRPCListener, cfg.AdminListener} {
		if l != nil {
			defer l.Close()
		}
	}
	tlsOpts, adminTLS, xdsDial, err := cfg.tls()
	if err != nil {
		return err
	}

	// Watch first, load second: a file written during the load is seen.
	var watchers []*specdir.Watcher
	defer func() {
		for _, w := range watchers {
			w.Close()
		}
	}()
	for _, d := range cfg.Dirs {
		if !cfg.NoWatch {
			wo := cfg.Watch
			wo.Log = log
			w, err := specdir.Start(d.Path, wo)
			if err != nil {
				return fail(err)
			}
			watchers = append(watchers, w)
		}
		if !d.Loaded {
			if err := d.Reload(); err != nil {
				return err
			}
		}
	}

	gl, al, err := listen(cfg)
	if err != nil {
		return fail(err)
	}
	defer gl.Close()
	defer al.Close()
	if adminTLS != nil {
		al = tls.NewListener(al, adminTLS)
	}

	gs := telemetry.NewGRPCServer(log, append(tlsOpts, cfg.ServerOptions...)...)
	if cfg.Register != nil {
		cfg.Register(gs.Server)
	}
	health := func() {
		if cfg.HealthService == "" {
			return
		}
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if cfg.HasConfig == nil || cfg.HasConfig() == nil {
			st = healthpb.HealthCheckResponse_SERVING
		}
		gs.Health.SetServingStatus(cfg.HealthService, st)
	}
	health()
	admin := telemetry.NewAdmin(log, reg)
	if cfg.Admin != nil {
		cfg.Admin(admin)
	}
	var handler http.Handler = admin.Handler()
	if cfg.AdminHandler != nil {
		handler = cfg.AdminHandler(handler)
	}
	log.Info(cfg.Name+" admin listening", "addr", al.Addr().String())
	if cfg.Listening != nil {
		cfg.Listening(gl.Addr(), al.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(gctx, gl, GracePeriod) })
	g.Go(func() error { return telemetry.ServeHTTP(gctx, al, handler, cfg.AdminLimits...) })
	for i, w := range watchers {
		d := cfg.Dirs[i]
		g.Go(func() error {
			return w.Run(gctx, func() {
				if err := d.Reload(); err != nil {
					log.Warn(d.Source+" reload failed; keeping the last good config", "dir", d.Path, "error", err)
				}
				health()
			})
		})
	}
	watchers = nil // Run closes them
	if cfg.XDS.Server != "" {
		for _, sub := range cfg.XDS.Subscriptions {
			h := sub.Handler
			g.Go(func() error {
				return xdsclient.Run(gctx, xdsclient.Config{
					Server: cfg.XDS.Server, NodeID: cfg.XDS.NodeID, NodeCluster: cfg.XDS.NodeCluster,
					TypeURL: sub.TypeURL, Log: log.With("type_url", sub.TypeURL), DialOptions: xdsDial,
				}, func(version string, res []*anypb.Any) error {
					defer health()
					return h(version, res)
				})
			})
		}
	}
	for _, task := range cfg.Tasks {
		g.Go(func() error { return task(gctx) })
	}
	return g.Wait()
}

// Check applies the TLS rules Run applies first (plaintext only on
// loopback, certificate files that load), for a sidecar that has work to
// do before Run and should refuse a bad port before doing it.
func (cfg Config) Check() error {
	_, _, _, err := cfg.tls()
	return err
}

// tls checks TLS before anything listens: plaintext is refused on a
// public address before the port is bound.
func (cfg Config) tls() (opts []grpc.ServerOption, admin *tls.Config, dial []grpc.DialOption, err error) {
	fail := func(err error) error { return fmt.Errorf("%s: %w", cfg.Name, err) }
	if opts, err = cfg.TLS.GRPCServerOptions(cfg.Name+" gRPC", "--grpc-addr", addrOf(cfg.GRPCListener, cfg.GRPCAddr)); err != nil {
		return nil, nil, nil, fail(err)
	}
	if cfg.AdminTLS != nil {
		if err := cfg.AdminTLS.CheckListen(cmp.Or(cfg.AdminFlag, "--admin-addr"), addrOf(cfg.AdminListener, cfg.AdminAddr)); err != nil {
			return nil, nil, nil, fail(err)
		}
		if admin, err = cfg.AdminTLS.Config(cmp.Or(cfg.AdminWhat, cfg.Name+" admin")); err != nil {
			return nil, nil, nil, fail(err)
		}
	}
	if dial, err = cfg.XDSTLS.GRPCDialOptions("--xds"); err != nil {
		return nil, nil, nil, fail(err)
	}
	return opts, admin, dial, nil
}

func addrOf(l net.Listener, addr string) string {
	if l != nil {
		return l.Addr().String()
	}
	return addr
}

func listen(cfg Config) (gl, al net.Listener, err error) {
	gl, al = cfg.GRPCListener, cfg.AdminListener
	if gl == nil {
		if gl, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, nil, fmt.Errorf("gRPC listener %s: %w", cfg.GRPCAddr, err)
		}
	}
	if al == nil {
		if al, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			gl.Close()
			return nil, nil, fmt.Errorf("admin listener %s: %w", cfg.AdminAddr, err)
		}
	}
	return gl, al, nil
}
