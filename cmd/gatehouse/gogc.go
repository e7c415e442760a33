package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"
)

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
