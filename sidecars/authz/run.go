package authzsidecar

import (
	"cmp"
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

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/sidecar"
	"github.com/gatehouse-edge/gatehouse/internal/specdir"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// ServiceName is the gRPC service Envoy calls; its health status turns
// SERVING once a policy set is loaded.
const ServiceName = "envoy.service.auth.v3.Authorization"

// ServerOptions are the gRPC server options of the sidecar on top of
// telemetry's defaults: a pool of stream workers, so Checks run on
// goroutines whose stacks have already grown instead of growing a fresh
// goroutine's stack on every request; and gRPC's proto codec, except that
// RegisterServer's Check requests are decoded by decodeRequest and its
// pre-encoded responses sent as they are (any other message, e.g. a health
// check's, or the do-nothing floor's of `make bench-authz`, goes through
// gRPC's proto codec as before).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))), grpc.ForceServerCodecV2(newCodec())}
}

// Config is the sidecar's configuration (`gatehouse authz` flags).
type Config struct {
	GRPCAddr  string // default 127.0.0.1:9001
	AdminAddr string // default 127.0.0.1:9091
	// Exactly one policy source: SpecDir, or XDSServer with NodeID.
	SpecDir string
	// SpecDir is watched (internal/specdir: file events after a 100ms
	// hold-off, plus a poll every SpecPoll, default 2s, for lost events);
	// a negative SpecPoll disables watching. A change that does not load
	// keeps the last good policies.
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
	log, reg := sidecar.Telemetry("authz", cfg.Log, cfg.Registry)
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

	var dirs []sidecar.Dir
	if cfg.SpecDir != "" {
		dirs = append(dirs, sidecar.Dir{Path: cfg.SpecDir, Source: "spec_dir", Reload: func() error {
			ps, err := LoadSpecDir(cfg.SpecDir)
			if err != nil {
				return err
			}
			if err := eng.Update(ps); err != nil {
				return fmt.Errorf("authz: spec dir %s: %w", cfg.SpecDir, err)
			}
			log.Info("spec dir loaded", "spec_dir", cfg.SpecDir, "specs", len(ps))
			return nil
		}})
	}
	return sidecar.Run(ctx, sidecar.Config{
		Name: "authz", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, TLS: cfg.TLS, XDSTLS: cfg.XDSTLS,
		ServerOptions: ServerOptions(),
		Register:      func(s *grpc.Server) { RegisterServer(s, NewServer(eng)) },
		HealthService: ServiceName, HasConfig: eng.Ready,
		Admin: func(admin *telemetry.Admin) {
			admin.AddReadyCheck("authz_policy", eng.Ready)
			admin.Handle("GET /debug/authz/routes", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				routes := eng.Routes()
				sort.Strings(routes)
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"routes": routes})
			}))
		},
		Dirs:    dirs,
		Watch:   specdir.Options{PollInterval: cmp.Or(cfg.SpecPoll, 2*time.Second)},
		NoWatch: cfg.SpecPoll < 0,
		XDS: sidecar.XDS{Server: cfg.XDSServer, NodeID: cfg.NodeID, NodeCluster: cfg.NodeCluster, Subscriptions: []sidecar.Subscription{{
			TypeURL: contract.ExtensionConfigType,
			Handler: func(version string, res []*anypb.Any) error {
				ps, err := PoliciesFromResources(res)
				if err == nil {
					err = eng.Update(ps)
				}
				if err != nil {
					log.Warn("authz policies rejected; keeping the last good set", "version", version, "error", err)
					return err
				}
				log.Info("authz policies accepted", "version", version, "specs", len(ps))
				return nil
			},
		}}},
		Log: log, Registry: reg, Listening: cfg.Ready,
	})
}
