package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	rlsidecar "github.com/gatehouse-edge/gatehouse/sidecars/ratelimit"
)

func newRatelimitCmd() *cobra.Command {
	var (
		cfg  rlsidecar.Config
		logc telemetry.LogConfig
		gogc int
	)
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Run the rate-limit sidecar: Envoy RLS v3, drop-in for envoyproxy/ratelimit (fixed, sliding window, token bucket; memory or Redis)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			cfg.Log = log
			// The sidecar's live heap is a few MB, so with Go's default
			// GOGC=100 the collector runs every few milliseconds under
			// load and costs about a third of the CPU per request. An
			// explicit GOGC in the environment wins.
			applyGOGC(gogc)
			return rlsidecar.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:8081", "RLS v3 gRPC listen address")
	f.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:6070", "admin HTTP listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&cfg.ConfigDir, "config-dir", "", "envoyproxy/ratelimit YAML config directory (reloaded on change)")
	f.StringVar(&cfg.SpecDir, "spec-dir", "", "EdgeRoute spec directory, compiled to domain gatehouse (reloaded on change)")
	f.StringVar(&cfg.XDSServer, "xds-server", "", "control plane xDS address (host:port)")
	f.StringVar(&cfg.NodeID, "node-id", "", "xDS node id")
	f.StringVar(&cfg.NodeCluster, "node-cluster", "", "xDS node cluster (node group)")
	f.StringVar(&cfg.Backend, "backend", "memory", "counter backend: memory|redis")
	f.StringVar(&cfg.RedisURL, "redis-url", "", "redis://host:port[/db] (rediss:// for TLS), redis+sentinel://h:p[,h:p]/master, redis+cluster://h:p[,h:p]")
	f.StringVar(&cfg.RedisPasswordFile, "redis-password-file", "", "file holding the Redis AUTH password (wins over a password in --redis-url)")
	f.StringVar(&cfg.RedisCAFile, "redis-ca-file", "", "PEM CA bundle the server certificate of a rediss:// URL is verified against (default: system roots)")
	f.DurationVar(&cfg.RedisTimeout, "redis-timeout", 0, "deadline of every Redis call (0 = 50ms)")
	f.IntVar(&cfg.RedisWorkers, "redis-workers", 0, "Redis script calls in flight at once (0 = 2; fewer = larger batches)")
	f.IntVar(&cfg.RedisCacheSize, "redis-cache-size", 0, "keys in the over-limit cache (0 = 100000, negative disables)")
	f.StringVar(&cfg.FailureMode, "failure-mode", "allow", "answer when a hit cannot be counted (Redis fails or its queue is full, memory at --max-counters): allow|deny; a limit's onFailure overrides it")
	f.IntVar(&cfg.MaxCounters, "max-counters", ratelimit.DefaultMaxCounters, "most live counters kept in memory; when full, hits needing a new counter get the failure mode (metric gatehouse_ratelimit_memory_full_total)")
	f.BoolVar(&cfg.GlobalShadowMode, "shadow-mode", false, "count and report, never answer OVER_LIMIT")
	f.BoolVar(&cfg.ResponseHeaders, "response-headers", false, "add RateLimit-Limit/-Remaining/-Reset headers")
	f.StringVar(&cfg.KeyPrefix, "key-prefix", "", "prefix of every Redis key (envoyproxy's CACHE_KEY_PREFIX)")
	gogcFlag(f, &gogc, 400)
	tlsServerFlags(f, &cfg.TLS, "RLS gRPC")
	xdsClientTLSFlags(f, &cfg.XDSTLS)
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}
