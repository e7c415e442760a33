package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Flags every long-running role has.

// logFlags adds --log-format and --log-level (default level def, help text
// levels) to f.
func logFlags(f *pflag.FlagSet, c *telemetry.LogConfig, def, levels string) {
	f.StringVar(&c.Format, "log-format", "text", "text|json")
	f.StringVar(&c.Level, "log-level", def, levels)
}

// gogcFlag adds --gogc with the role's default to f; applyGOGC sets it
// unless GOGC is in the environment, which wins.
func gogcFlag(f *pflag.FlagSet, p *int, def int) {
	f.IntVar(p, "gogc", def, "garbage-collector target percentage for this process (Go's GOGC; the GOGC variable wins; 0 keeps Go's default)")
}

func applyGOGC(gogc int) {
	if _, set := os.LookupEnv("GOGC"); !set && gogc != 0 {
		debug.SetGCPercent(gogc)
	}
}

// upstreamAllowFlag adds --upstream-allow (controlplane, worker, broker,
// spec validate); parseUpstreamAllow reads it.
func upstreamAllowFlag(f *pflag.FlagSet, p *[]string) {
	f.StringSliceVar(p, "upstream-allow", nil, "upstreams specs may name although they point at the node or the platform (loopback, link-local, localhost, ...): comma-separated CIDRs and host:port; the node's own services stay refused")
}

func parseUpstreamAllow(list []string) (spec.UpstreamAllow, error) {
	a, err := spec.ParseUpstreamAllow(list)
	if err != nil {
		return a, fmt.Errorf("--upstream-allow: %w", err)
	}
	return a, nil
}
