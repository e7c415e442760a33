package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/sidecars/ratelimit"
)

func newRatelimitCmd() *cobra.Command {
	var (
		cfg  ratelimitsidecar.Config
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
			return ratelimitsidecar.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", contract.DefaultRateLimitAddr, "RLS v3 gRPC listen address")
	f.StringVar(&cfg.AdminAddr, "admin-addr", contract.DefaultRateLimitAdminAddr, "admin HTTP listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&cfg.ConfigDir, "config-dir", "", "envoyproxy/ratelimit YAML config directory (reloaded on change)")
	f.StringVar(&cfg.SpecDir, "spec-dir", "", "EdgeRoute spec directory, compiled to domain gatehouse (reloaded on change)")
	xdsNodeFlags(f, &cfg.XDSServer, &cfg.NodeID, &cfg.NodeCluster)
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
	f.BoolVar(&cfg.ResponseHeaders, "response-headers", false, "add the limit, remaining and reset headers of the descriptor closest to its limit (envoyproxy's LIMIT_RESPONSE_HEADERS_ENABLED)")
	f.StringVar(&cfg.LimitHeader, "limit-header", ratelimit.DefaultLimitHeader, "name of the limit header (envoyproxy's LIMIT_LIMIT_HEADER)")
	f.StringVar(&cfg.RemainingHeader, "remaining-header", ratelimit.DefaultRemainingHeader, "name of the remaining header (envoyproxy's LIMIT_REMAINING_HEADER)")
	f.StringVar(&cfg.ResetHeader, "reset-header", ratelimit.DefaultResetHeader, "name of the reset header (envoyproxy's LIMIT_RESET_HEADER)")
	f.BoolVar(&cfg.MergeDomainConfig, "merge-domain-config", false, "let several --config-dir files declare one domain and merge them (envoyproxy's MERGE_DOMAIN_CONFIG)")
	f.BoolVar(&cfg.GlobalQuotaMode, "quota-mode", false, "treat every descriptor as quota_mode (envoyproxy's QUOTA_MODE)")
	f.BoolVar(&cfg.ResponseDynamicMetadata, "response-dynamic-metadata", false, "return domain, descriptors, hits addend and the descriptors' metadata as dynamic metadata (envoyproxy's RESPONSE_DYNAMIC_METADATA)")
	f.BoolVar(&cfg.BoundedMetricLabels, "bounded-metric-labels", false, "label detailed_metric/value_to_metric limits by their config rule, not by envoyproxy's stat name with request values")
	f.IntVar(&cfg.MaxDetailedMetrics, "max-detailed-metrics", ratelimit.DefaultMaxDetailedSeries, "most metric names with request values (detailed_metric, value_to_metric); later ones count under their rule")
	f.StringVar(&cfg.KeyPrefix, "key-prefix", "", "prefix of every Redis key (envoyproxy's CACHE_KEY_PREFIX)")
	gogcFlag(f, &gogc, 400)
	tlsServerFlags(f, &cfg.TLS, "RLS gRPC")
	xdsClientTLSFlags(f, &cfg.XDSTLS)
	logFlags(f, &logc, "info", "debug|info|warn|error")
	cmd.PreRunE = func(c *cobra.Command, _ []string) error { return applyUpstreamEnv(c.Flags(), ratelimitUpstreamEnv) }
	cmd.AddCommand(newRatelimitValidateCmd())
	return cmd
}

// ratelimitUpstreamEnv maps envoyproxy/ratelimit's environment settings to
// the flags that do the same. Precedence: the flag, its
// GATEHOUSE_RATELIMIT_* twin, then the envoyproxy name.
var ratelimitUpstreamEnv = map[string]string{
	"MERGE_DOMAIN_CONFIG":            "merge-domain-config",
	"QUOTA_MODE":                     "quota-mode",
	"SHADOW_MODE":                    "shadow-mode",
	"LIMIT_RESPONSE_HEADERS_ENABLED": "response-headers",
	"LIMIT_LIMIT_HEADER":             "limit-header",
	"LIMIT_REMAINING_HEADER":         "remaining-header",
	"LIMIT_RESET_HEADER":             "reset-header",
	"RESPONSE_DYNAMIC_METADATA":      "response-dynamic-metadata",
	"CACHE_KEY_PREFIX":               "key-prefix",
}

// applyUpstreamEnv sets every flag not set yet (on the command line or by
// its GATEHOUSE_* twin) from its envoyproxy/ratelimit variable; a bad
// value fails with the variable's name.
func applyUpstreamEnv(f *pflag.FlagSet, names map[string]string) error {
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, env := range keys {
		fl := f.Lookup(names[env])
		if fl == nil || fl.Changed {
			continue
		}
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Set(fl.Name, v); err != nil {
				return fmt.Errorf("environment variable %s (envoyproxy/ratelimit's name for --%s): %w", env, fl.Name, err)
			}
		}
	}
	return nil
}

func newRatelimitValidateCmd() *cobra.Command {
	var merge bool
	cmd := &cobra.Command{
		Use:   "validate DIR...",
		Short: "Check envoyproxy/ratelimit config directories offline; print every problem as file:line: reason",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			problems := 0
			for _, dir := range args {
				ds, err := config.LoadDirWith(dir, config.LoadOptions{MergeDomains: merge})
				if err == nil {
					_, err = ratelimit.NewRules(ds, nil)
				}
				if err != nil {
					var l config.ErrorList
					if errors.As(err, &l) {
						for _, p := range l {
							fmt.Fprintln(cmd.ErrOrStderr(), p)
						}
						problems += len(l)
					} else {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						problems++
					}
					continue
				}
				names := make([]string, len(ds))
				for i, d := range ds {
					names[i] = fmt.Sprintf("%s (%d descriptors)", d.Name, len(d.Descriptors))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok %s: %d domain(s): %s\n", dir, len(ds), strings.Join(names, ", "))
			}
			if problems > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d problem(s)\n", problems)
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&merge, "merge-domain-config", false, "let several files declare one domain (envoyproxy's MERGE_DOMAIN_CONFIG)")
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		return applyUpstreamEnv(c.Flags(), map[string]string{"MERGE_DOMAIN_CONFIG": "merge-domain-config"})
	}
	return cmd
}
