package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// TestControlplaneRatelimitFailureMode: GATEHOUSE_CONTROLPLANE_RATELIMIT_FAILURE_MODE=deny
// (the twin of --ratelimit-failure-mode) sets failure_mode_deny on the
// ratelimit filter of the listener Envoy receives.
func TestControlplaneRatelimitFailureMode(t *testing.T) {
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("GATEHOUSE_CONTROLPLANE_SOURCE", "file:../../deploy/examples")
	t.Setenv("GATEHOUSE_CONTROLPLANE_RATELIMIT_FAILURE_MODE", "deny")
	startRole(t, adminAddr, "controlplane", "--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--log-level", "warn")

	got := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go xdsclient.Run(ctx, xdsclient.Config{Server: xdsAddr, NodeID: "t", NodeCluster: "us-east-1",
		TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", InitialBackoff: 20 * time.Millisecond},
		func(_ string, res []*anypb.Any) error {
			for _, a := range res {
				l := &listenerv3.Listener{}
				hcm := &hcmv3.HttpConnectionManager{}
				if err := a.UnmarshalTo(l); err != nil {
					return err
				}
				if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
					return err
				}
				for _, f := range hcm.GetHttpFilters() {
					rl := &ratelimitv3.RateLimit{}
					if f.GetTypedConfig().UnmarshalTo(rl) == nil {
						select {
						case got <- rl.GetFailureModeDeny():
						default:
						}
					}
				}
			}
			return nil
		})
	select {
	case deny := <-got:
		if !deny {
			t.Fatal("ratelimit filter without failure_mode_deny")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no listener from gatehouse controlplane")
	}
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
