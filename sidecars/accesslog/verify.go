package accesslogsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
)

// VerifyStore checks the hash chain of a store directly: duckdb:PATH is
// opened read-only (only while no sidecar writes it), clickhouse:// is
// read over the network. opts.Keys is the chain key ring (LoadChainKeys).
func VerifyStore(ctx context.Context, store string, opts accesslog.VerifyOptions, log *slog.Logger) (accesslog.VerifyResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var s accesslog.Store
	var err error
	switch {
	case strings.HasPrefix(store, "duckdb:"):
		s, err = duckstore.Open(ctx, duckstore.Config{Path: strings.TrimPrefix(store, "duckdb:"), ReadOnly: true, Log: log})
		if err != nil {
			return accesslog.VerifyResult{}, fmt.Errorf("verify: %w (is the accesslog sidecar still writing it? use --server then)", err)
		}
	case strings.HasPrefix(store, "clickhouse://"):
		s, err = openClickHouse(ctx, store, log)
	default:
		return accesslog.VerifyResult{}, fmt.Errorf("verify: --store %q: want duckdb:PATH or clickhouse://HOST:PORT/DB", redactStoreURL(store))
	}
	if err != nil {
		return accesslog.VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	defer s.Close()
	return accesslog.Verify(ctx, s, opts)
}
