package main

import (
	"context"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
)

// TestControlplaneRatelimitFailureMode: GATEHOUSE_CONTROLPLANE_RATELIMIT_FAILURE_MODE=deny
// (the twin of --ratelimit-failure-mode) sets failure_mode_deny on the
// ratelimit filter of the listener Envoy receives.
func TestControlplaneRatelimitFailureMode(t *testing.T) {
	hcm := listenerHCM(t, "GATEHOUSE_CONTROLPLANE_RATELIMIT_FAILURE_MODE", "deny")
	for _, f := range hcm.GetHttpFilters() {
		rl := &ratelimitv3.RateLimit{}
		if f.GetTypedConfig().UnmarshalTo(rl) == nil {
			if !rl.GetFailureModeDeny() {
				t.Fatal("ratelimit filter without failure_mode_deny")
			}
			return
		}
	}
	t.Fatal("no ratelimit filter in the listener")
}

func TestRatelimitFailureFlagsRefuseBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"controlplane", "--source", "file:" + t.TempDir(), "--ratelimit-failure-mode", "maybe"},
		{"ratelimit", "--config-dir", t.TempDir(), "--max-counters", "-5"},
	} {
		root := newRootCmd()
		root.SetArgs(args)
		err := root.ExecuteContext(context.Background())
		flag := args[len(args)-2]
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: err = %v, want one naming %s", args, err, flag)
		}
	}
}
