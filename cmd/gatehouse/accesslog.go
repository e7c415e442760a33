package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

func newAccesslogCmd() *cobra.Command {
	var (
		cfg       accesslogsidecar.Config
		logc      telemetry.LogConfig
		retention string
	)
	cmd := &cobra.Command{
		Use:   "accesslog",
		Short: "Run the accesslog sidecar: Envoy ALS v3 receiver, redaction, log store, query API and web page",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(os.Stderr, logc)
			if err != nil {
				return err
			}
			if cfg.Retention, err = parseRetention(retention); err != nil {
				return err
			}
			cfg.Log = log
			// The query API is HTTPS with the same certificate; its
			// login stays the bearer tokens.
			cfg.HTTPTLS = tlsconfig.Server{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, Insecure: cfg.TLS.Insecure}
			ctx, stop := telemetry.SignalContext(cmd.Context())
			defer stop()
			return accesslogsidecar.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", contract.DefaultAccessLogAddr, "ALS gRPC listen address")
	f.StringVar(&cfg.HTTPAddr, "http-addr", contract.DefaultAccessLogHTTPAddr, "query API, web page, /metrics (bearer token required), /healthz, /readyz listen address")
	f.StringVar(&cfg.Store, "store", "duckdb:gatehouse-accesslog.duckdb", "log store: duckdb:PATH or clickhouse://[USER@]HOST:PORT/DB[?password_file=F]")
	f.StringVar(&cfg.SpoolDir, "spool-dir", "", "on-disk segment log (default: <duckdb file>.spool)")
	f.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", 1<<30, "bound of the spooled entries' bytes; beyond it entries are dropped and counted (the files take up to four segments more: the active one and free ones prepared ahead)")
	f.StringVar(&cfg.DuckDBMemoryLimit, "duckdb-memory-limit", "512MB", "DuckDB memory_limit")
	f.IntVar(&cfg.DuckDBThreads, "duckdb-threads", 2, "DuckDB threads")
	f.StringVar(&cfg.Archive, "archive", "", "hourly Parquet archive: s3://bucket/prefix (AWS credentials from the standard chain)")
	f.StringVar(&cfg.ArchiveEndpoint, "archive-endpoint", "", "S3 endpoint URL override (path-style), e.g. for MinIO or s3rver")
	f.StringVar(&cfg.ArchiveRegion, "archive-region", "", "S3 region (default from the AWS configuration)")
	f.StringVar(&retention, "retention", "", "drop whole days older than this (30d, 720h); empty keeps everything")
	f.StringVar(&cfg.SpecDir, "spec-dir", "", "compile redaction settings from EdgeRoute specs in this directory")
	xdsNodeFlags(f, &cfg.XDSServer, &cfg.NodeID, &cfg.NodeCluster)
	f.DurationVar(&cfg.OutcomeInterval, "outcome-interval", time.Second, "how often traffic outcomes per (node group, config version, route) are reported to the control plane at --xds-server for its rollout gate (negative: never)")
	f.StringVar(&cfg.APITokenFile, "api-token-file", "", "bearer tokens for the query API, one per line (required; mode 0600, 0640 with a warning)")
	f.StringVar(&cfg.RedactHMACKeyFile, "redact-hmac-key-file", "", "keep HMAC-SHA256 of masked values with this key, for correlation (mode 0600)")
	f.StringVar(&cfg.ChainKeyFile, "chain-key-file", "", "key ring of the log hash chain, \"<key id> <secret>\" per line, the last key signs (mode 0600; see RUNBOOK for rotation)")
	f.BoolVar(&cfg.ChainAllowUnkeyedPrefix, "chain-allow-unkeyed-prefix", false, "/v1/verify accepts unkeyed batches at the start of a chain (written before --chain-key-file was set) and the pruned flags of the retention before prune records")
	f.IntVar(&cfg.BatchSize, "batch-size", 10000, "most entries per spool frame")
	f.IntVar(&cfg.StoreBatch, "store-batch", 200000, "most entries per store batch (consecutive spool frames are combined; above DuckDB's 122,880-row row group, full row groups skip the WAL)")
	f.IntVar(&cfg.StoreWriters, "store-writers", 2, "store batches written at once (DuckDB: one connection each; batches commit in order)")
	f.DurationVar(&cfg.StoreDelay, "store-delay", 2*time.Second, "longest a spooled entry waits for its store batch to fill up to --store-batch; a quarter of it after the last entry when the input pauses (entries are crash-safe in the spool meanwhile; queries see them later)")
	f.DurationVar(&cfg.FlushInterval, "flush-interval", 100*time.Millisecond, "longest an entry waits in memory before it is fsynced to the spool")
	tlsServerFlags(f, &cfg.TLS, "ALS gRPC and query API (HTTPS; the client CA applies to gRPC only)")
	xdsClientTLSFlags(f, &cfg.XDSTLS)
	logFlags(f, &logc, "info", "debug|info|warn|error")
	return cmd
}

// parseRetention reads "30d" or a Go duration; empty is 0 (keep all).
func parseRetention(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("--retention %q: want a number of days (30d) or a duration (720h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 24*time.Hour {
		return 0, fmt.Errorf("--retention %q: want a number of days (30d) or a duration of at least 24h", s)
	}
	return d, nil
}
