package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestGOGCDefaults: the sidecars and the control plane run their
// collector at 400 unless told otherwise (--gogc, or GOGC, which wins).
func TestGOGCDefaults(t *testing.T) {
	for _, role := range []string{"authz", "ratelimit", "controlplane"} {
		cmd, _, err := newRootCmd().Find([]string{role})
		if err != nil {
			t.Fatal(err)
		}
		f := cmd.Flags().Lookup("gogc")
		if f == nil || f.DefValue != "400" {
			t.Errorf("%s --gogc: %+v, want default 400", role, f)
		}
	}
}

func TestApplyGOGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	applyGOGC(400)
	if got := debug.SetGCPercent(100); got != 400 {
		t.Fatalf("applyGOGC(400) without GOGC: percentage %d", got)
	}
	t.Setenv("GOGC", "")
	applyGOGC(400) // GOGC in the environment (even empty) wins
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, applyGOGC changed the percentage to %d", got)
	}
}
