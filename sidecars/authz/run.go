package authzsidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// ServiceName is the gRPC service Envoy calls; its health status turns
// SERVING once a policy set is loaded.
const ServiceName = "envoy.service.auth.v3.Authorization"

// ServerOptions are the gRPC server options of the sidecar on top of
// telemetry's defaults: a pool of stream workers, so Checks run on
// goroutines whose stacks have already grown instead of growing a fresh
// goroutine's stack on every request.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0)))}
}

// Config is the sidecar's configuration (`gatehouse authz` flags).
type Config struct {
	GRPCAddr  string // default 127.0.0.1:9001
	AdminAddr string // default 127.0.0.1:9091
	// Exactly one policy source: SpecDir, or XDSServer with NodeID.
	SpecDir string
	// SpecPoll is how often SpecDir is checked for changes (default 2s;
	// negative disables). A change that does not load keeps the last good
	// policies.
	SpecPoll    time.Duration
	XDSServer   string
	NodeID      string
	NodeCluster string
	// TLS is the gRPC port's TLS (mutual with a client CA); without it
	// the port must be on loopback (or TLS.Insecure). XDSTLS is the
	// client TLS toward the control plane.
	TLS    tlsconfig.Server
	XDSTLS tlsconfig.Client

	KeepCredential bool          // forward the credential upstream
	MaxTokenSize   int           // bytes; default 8 KiB
	TokenCacheSize int           // default 10,000; negative disables
	TokenCacheTTL  time.Duration // default 5m

	Log      *slog.Logger         // default: discard
	Registry *prometheus.Registry // default: telemetry.NewRegistry()
	// JWKSAllow (--jwks-allow) lists the internal JWKS endpoints fetches
	// may reach: CIDRs, IPs, IP:port, host names, host:port (see
	// authn.AllowList). Without it a jwksUri must be public https.
	JWKSAllow []string
	// HTTPClient fetches JWKS (default: authn.NewJWKSClient with JWKSAllow).
	HTTPClient *http.Client
	// Ready, when set, is called with the bound addresses once both
	// listeners are open (tests use ":0").
	Ready func(grpcAddr, adminAddr net.Addr)
}

// Run serves ext_authz until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = contract.DefaultAuthzAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = contract.DefaultAuthzAdminAddr
	}
	switch {
	case cfg.SpecDir != "" && cfg.XDSServer != "":
		return errors.New("authz: set either --spec-dir or --xds-server, not both")
	case cfg.SpecDir == "" && cfg.XDSServer == "":
		return errors.New("authz: a policy source is required: --spec-dir DIR or --xds-server HOST:PORT --node-id ID")
	case cfg.XDSServer != "" && cfg.NodeID == "":
		return errors.New("authz: --xds-server needs --node-id")
	}
	tlsOpts, err := cfg.TLS.GRPCServerOptions("authz gRPC", "--grpc-addr", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	xdsDial, err := cfg.XDSTLS.GRPCDialOptions("--xds")
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "authz")
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	allow, err := authn.ParseAllowList(cfg.JWKSAllow)
	if err != nil {
		return fmt.Errorf("authz: --jwks-allow: %w", err)
	}
	if len(cfg.JWKSAllow) > 0 {
		log.Info("jwks fetches may reach internal endpoints", "jwks_allow", allow.String())
	}
	eng, err := authz.NewEngine(authz.Options{
		Log: log, Registry: reg, HTTPClient: cfg.HTTPClient, JWKSAllow: allow, KeepCredential: cfg.KeepCredential,
		MaxTokenSize: cfg.MaxTokenSize, TokenCacheSize: cfg.TokenCacheSize, TokenCacheTTL: cfg.TokenCacheTTL,
	})
	if err != nil {
		return err
	}
	defer eng.Close()

	var specDirState string
	if cfg.SpecDir != "" {
		// Fingerprint first, load second: a file written during the load
		// makes the watcher's first comparison differ, so it is reloaded.
		specDirState, _ = dirState(cfg.SpecDir)
		ps, err := LoadSpecDir(cfg.SpecDir)
		if err != nil {
			return err
		}
		if err := eng.Update(ps); err != nil {
			return fmt.Errorf("authz: spec dir %s: %w", cfg.SpecDir, err)
		}
	}

	gs := telemetry.NewGRPCServer(log, append(ServerOptions(), tlsOpts...)...)
	authv3.RegisterAuthorizationServer(gs.Server, NewServer(eng))
	if eng.Ready() == nil {
		gs.Health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	} else {
		gs.Health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	admin := telemetry.NewAdmin(log, reg)
	admin.AddReadyCheck("authz_policy", eng.Ready)
	admin.Handle("GET /debug/authz/routes", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		routes := eng.Routes()
		sort.Strings(routes)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"routes": routes})
	}))

	update := func(ps []*authz.SpecPolicy) error {
		if err := eng.Update(ps); err != nil {
			return err
		}
		gs.Health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
		return nil
	}

	gl, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		gs.Stop()
		return fmt.Errorf("authz: grpc listener %s: %w", cfg.GRPCAddr, err)
	}
	al, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		gl.Close()
		gs.Stop()
		return fmt.Errorf("authz: admin listener %s: %w", cfg.AdminAddr, err)
	}
	log.Info("authz admin listening", "addr", al.Addr().String())
	if cfg.Ready != nil {
		cfg.Ready(gl.Addr(), al.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(gctx, gl, 10*time.Second) })
	g.Go(func() error { return telemetry.ServeHTTP(gctx, al, admin.Handler()) })
	if cfg.SpecDir != "" && cfg.SpecPoll >= 0 {
		g.Go(func() error { watchSpecDir(gctx, cfg.SpecDir, specDirState, cfg.SpecPoll, update, log); return nil })
	}
	if cfg.XDSServer != "" {
		g.Go(func() error {
			return xdsclient.Run(gctx, xdsclient.Config{
				Server: cfg.XDSServer, NodeID: cfg.NodeID, NodeCluster: cfg.NodeCluster,
				TypeURL: contract.ExtensionConfigType, Log: log, DialOptions: xdsDial,
			}, func(version string, res []*anypb.Any) error {
				ps, err := PoliciesFromResources(res)
				if err == nil {
					err = update(ps)
				}
				if err != nil {
					log.Warn("authz policies rejected; keeping the last good set", "version", version, "error", err)
					return err
				}
				log.Info("authz policies accepted", "version", version, "specs", len(ps))
				return nil
			})
		})
	}
	return g.Wait()
}
