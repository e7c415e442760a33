package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
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
