package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/sidecars/authz"
)

func newAuthzCmd() *cobra.Command {
	var (
		cfg  authzsidecar.Config
		logc telemetry.LogConfig
		gogc int
	)
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Run the authz sidecar: Envoy ext_authz v3 (JWT/JWKS, API keys, mTLS, per-route rules)",
		Long: `Run the authz sidecar: Envoy's ext_authz v3 Check service on --grpc-addr, deciding
each request by the policy of the route named in its gatehouse.route context
extension. Policies come from --spec-dir (reloaded on change) or from the control
plane over xDS (--xds-server with --node-id). Admin (/metrics, /healthz, /readyz)
on --admin-addr. Every flag has an environment twin GATEHOUSE_AUTHZ_<FLAG>
(e.g. GATEHOUSE_AUTHZ_SPEC_DIR); a flag on the command line wins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			cfg.Log = log
			// Every Check of a token not seen before verifies a signature
			// and leaves a few KB of garbage; with Go's default GOGC=100
			// the collector costs about a tenth of the CPU per Check on
			// such traffic (docs/PERFORMANCE.md). The live heap is a few
			// MB (the token caches), so 400 costs little memory. An
			// explicit GOGC in the environment wins.
			applyGOGC(gogc)
			return authzsidecar.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", contract.DefaultAuthzAddr, "ext_authz gRPC listen address")
	f.StringVar(&cfg.AdminAddr, "admin-addr", contract.DefaultAuthzAdminAddr, "admin HTTP listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&cfg.SpecDir, "spec-dir", "", "load EdgeRoute specs from this directory instead of the control plane")
	f.DurationVar(&cfg.SpecPoll, "spec-poll", 2*time.Second, "--spec-dir reloads on file events; this is how often it is also polled, for lost events (negative: never reload)")
	xdsNodeFlags(f, &cfg.XDSServer, &cfg.NodeID, &cfg.NodeCluster)
	f.StringSliceVar(&cfg.JWKSAllow, "jwks-allow", nil, jwksAllowUsage)
	f.BoolVar(&cfg.KeepCredential, "keep-credential", false, "forward the Authorization / API-key header upstream instead of removing it")
	f.IntVar(&cfg.MaxTokenSize, "max-token-size", 8<<10, "largest bearer token accepted, in bytes")
	gogcFlag(f, &gogc, 400)
	f.IntVar(&cfg.TokenCacheSize, "token-cache-size", 10000, "verified-token cache entries (negative disables)")
	f.DurationVar(&cfg.TokenCacheTTL, "token-cache-ttl", 0, "longest a verified token is cached (0 = 5m; never past its exp)")
	tlsServerFlags(f, &cfg.TLS, "ext_authz gRPC")
	xdsClientTLSFlags(f, &cfg.XDSTLS)
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}

// jwksAllowUsage documents --jwks-allow (authz, explain, dev).
const jwksAllowUsage = "internal JWKS endpoints fetches may reach, comma-separated: CIDR, IP, IP:port, host or host:port " +
	"(default none: a jwksUri must be public https; loopback, link-local and private addresses are refused after DNS)"
