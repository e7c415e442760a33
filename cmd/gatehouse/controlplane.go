package main

import (
	"fmt"
	"github.com/gatehouse-edge/gatehouse/authn"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newControlplaneCmd() *cobra.Command {
	var (
		cfg                controlplane.Config
		xdsAddr, adminAddr string
		ref                string
		srcOpts            source.Options
		logc               telemetry.LogConfig
		gogc               int
		rlFailure          string
		jwksAllow          []string
		cflags             compileFlags
	)
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the xDS control plane: compile EdgeRoutes into Envoy and sidecar config and serve it over ADS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			if ref == "" {
				return fmt.Errorf("--source is required (file:DIR, s3://bucket/prefix or broker:<store URL>; env GATEHOUSE_CONTROLPLANE_SOURCE)")
			}
			if len(jwksAllow) > 0 {
				allow, err := authn.ParseAllowList(jwksAllow)
				if err != nil {
					return fmt.Errorf("--jwks-allow: %w", err)
				}
				cfg.JWKSAllow = allow
			}
			switch rlFailure {
			case "allow":
			case "deny":
				cfg.Compile.RateLimitFailureModeDeny = true
			default:
				return fmt.Errorf("--ratelimit-failure-mode %q: want allow or deny", rlFailure)
			}
			// Pushing a change to thousands of nodes allocates per stream;
			// with Go's default GOGC=100 the collector takes a fifth of
			// the CPU of a push (docs/PERFORMANCE.md, fleet convergence).
			applyGOGC(gogc)
			if err := cflags.load(&cfg.Compile); err != nil {
				return err
			}
			cfg.Compile.NodeServices = []spec.NodeService{{Addr: xdsAddr, What: "the control plane's xDS"}, {Addr: adminAddr, What: "the control plane's admin server"}}
			ctx := cmd.Context()
			srcOpts.Log = log
			src, rep, err := source.Open(ctx, ref, srcOpts)
			if err != nil {
				return err
			}
			cfg.Source, cfg.Reporter, cfg.Log = src, rep, log
			cfg.Registry = telemetry.NewRegistry()
			if err := cfg.TLS.CheckListen("--xds-addr", xdsAddr); err != nil {
				return err
			}
			l, err := controlplane.Listen(xdsAddr, adminAddr)
			if err != nil {
				return err
			}
			return controlplane.Run(ctx, cfg, l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsAddr, "xds-addr", contract.DefaultXDSAddr, "xDS (ADS gRPC) listen address")
	f.StringVar(&adminAddr, "admin-addr", contract.DefaultControlPlaneAdminAddr, "admin HTTP listen address (/metrics, /healthz, /readyz, /debug/...)")
	f.StringVar(&ref, "source", "", "where specs come from: file:DIR, s3://bucket/prefix or broker:<store URL>")
	f.DurationVar(&srcOpts.PollInterval, "poll-interval", 0, "how often S3/the broker store are polled (0 = 5s; a directory is re-read every 30s besides its events)")
	f.StringVar(&srcOpts.S3Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible stores (path-style addressing); credentials come from the AWS environment")
	f.StringVar(&srcOpts.S3Region, "s3-region", "", "S3 region (default: from the AWS environment)")
	f.DurationVar(&cfg.HoldOff, "hold-off", 100*time.Millisecond, "batch source changes for this long before one rebuild")
	f.StringVar(&cfg.CanaryGroup, "canary-group", "", "node group that gets every new version first (empty: no staged rollout)")
	f.DurationVar(&cfg.Soak, "soak", time.Minute, "how long the canary group must run a new version without NACK before the fleet gets it")
	f.IntVar(&cfg.PublishQuorum, "publish-quorum", 1, "connected nodes of each node group that must ACK a version before its specs are reported published (a group with fewer needs all; with none, holds nothing back)")
	cflags.register(f, &cfg.Compile)
	f.DurationVar(&cfg.CertPoll, "cert-poll", 10*time.Second, "how often --cert-dir is checked for renewed or new certificates, which are then pushed over SDS (negative: never)")
	f.StringSliceVar(&jwksAllow, "jwks-allow", nil, jwksAllowUsage+" (for /debug/explain)")
	f.StringVar(&rlFailure, "ratelimit-failure-mode", "allow", "what Envoy does when the ratelimit sidecar cannot answer: allow (requests pass, limits off) or deny (500, limits stay on); see docs/RUNBOOK.md")
	f.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the admin port")
	tlsServerFlags(f, &cfg.TLS, "xDS")
	f.IntVar(&cfg.TLSHandshakes, "xds-tls-handshakes", 0, "TLS handshakes the xDS port runs at once, others waiting their turn (0: unbounded)")
	f.DurationVar(&cfg.TLSHandshakeTimeout, "xds-tls-handshake-timeout", controlplane.DefaultTLSHandshakeTimeout, "how long an xDS connection's TLS handshake may take (and, with --xds-tls-handshakes, how long it may wait for its turn)")
	f.DurationVar(&cfg.ReleaseAfter, "release-memory-after", controlplane.DefaultReleaseAfter, "return the free heap to the OS once no node has connected and no rebuild has run for this long after one did (negative: never)")
	f.StringSliceVar(&cfg.NodeGroups, "node-groups", nil, "serve exactly these node groups (empty: the groups specs name, the groups node certificates name, and up to --max-node-groups others from nodes without a certificate)")
	f.IntVar(&cfg.MaxNodeGroups, "max-node-groups", controlplane.DefaultMaxNodeGroups, "most node groups nodes without a client certificate may create (without --node-groups)")
	f.DurationVar(&cfg.GroupGrace, "node-group-grace", controlplane.DefaultGroupGrace, "a node group with no connected node is dropped after this long")
	f.IntVar(&cfg.CanaryMinNACKs, "canary-min-nacks", 2, "distinct authenticated canary nodes that must NACK a new version before it is rolled back")
	gateFlags(f, &cfg.Gate)
	gogcFlag(f, &gogc, 400)
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}
