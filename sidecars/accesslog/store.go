package accesslogsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
)

// maxStoreWriters bounds --store-writers: every writer holds up to
// --store-batch records in memory.
const maxStoreWriters = 8

// openStore opens the store named by cfg.Store and picks the spool dir.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (accesslog.Store, string, error) {
	if cfg.StoreWriters < 0 || cfg.StoreWriters > maxStoreWriters {
		return nil, "", fmt.Errorf("accesslog: --store-writers %d: want 1 to %d (each holds a store batch in memory while it is written)", cfg.StoreWriters, maxStoreWriters)
	}
	if cfg.StoreDelay < 0 {
		return nil, "", fmt.Errorf("accesslog: --store-delay %s: want a duration of 0 or more (0: the default)", cfg.StoreDelay)
	}
	spoolDir := cfg.SpoolDir
	switch {
	case strings.HasPrefix(cfg.Store, "duckdb:"):
		path := strings.TrimPrefix(cfg.Store, "duckdb:")
		if path == "" {
			return nil, "", fmt.Errorf("accesslog: --store duckdb:PATH needs a path")
		}
		s, err := duckstore.Open(ctx, duckstore.Config{Path: path, MemoryLimit: cfg.DuckDBMemoryLimit, Threads: cfg.DuckDBThreads, Writers: cfg.StoreWriters, Log: log})
		if err != nil {
			return nil, "", fmt.Errorf("accesslog: %w", err)
		}
		if spoolDir == "" {
			spoolDir = defaultSpool(path)
		}
		return s, spoolDir, nil
	case strings.HasPrefix(cfg.Store, "clickhouse://"):
		s, err := openClickHouse(ctx, cfg.Store, log)
		if err != nil {
			return nil, "", fmt.Errorf("accesslog: %w", err)
		}
		if spoolDir == "" {
			spoolDir = "gatehouse-accesslog.spool"
		}
		return s, spoolDir, nil
	case cfg.Store == "":
		return nil, "", fmt.Errorf("accesslog: --store is required: duckdb:PATH or clickhouse://HOST:PORT/DB")
	default:
		return nil, "", fmt.Errorf("accesslog: --store %q: want duckdb:PATH or clickhouse://HOST:PORT/DB", redactStoreURL(cfg.Store))
	}
}

// runRetention drops days older than keep at start and every hour.
func runRetention(ctx context.Context, ing *accesslog.Ingester, keep time.Duration, log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		cutoff := time.Now().UTC().Add(-keep).Truncate(24 * time.Hour)
		n, err := ing.DropBefore(ctx, cutoff)
		if err != nil {
			log.Error("retention failed", "cutoff", cutoff.Format(time.DateOnly), "error", err)
		} else if n > 0 {
			log.Info("retention dropped old access logs", "cutoff", cutoff.Format(time.DateOnly), "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
