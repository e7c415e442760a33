package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// TestControlplaneScopedRouteGroups: GATEHOUSE_CONTROLPLANE_SCOPED_ROUTE_GROUPS
// (the twin of --scoped-route-groups) gives that node group's listener
// scoped routes instead of the one RDS table.
func TestControlplaneScopedRouteGroups(t *testing.T) {
	hcm := listenerHCM(t, "GATEHOUSE_CONTROLPLANE_SCOPED_ROUTE_GROUPS", "us-east-1")
	if name := hcm.GetScopedRoutes().GetName(); name != "gatehouse_scopes" {
		t.Fatalf("listener scoped routes = %q, want gatehouse_scopes", name)
	}
}

// listenerHCM starts `gatehouse controlplane` on the example specs with
// env=value set and returns the connection manager of the first listener
// node group us-east-1 receives over xDS.
func listenerHCM(t *testing.T, env, value string) *hcmv3.HttpConnectionManager {
	t.Helper()
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("GATEHOUSE_CONTROLPLANE_SOURCE", "file:../../deploy/examples")
	t.Setenv(env, value)
	startRole(t, adminAddr, "controlplane", "--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--log-level", "warn")

	got := make(chan *hcmv3.HttpConnectionManager, 1)
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
				select {
				case got <- hcm:
				default:
				}
			}
			return nil
		})
	select {
	case hcm := <-got:
		return hcm
	case <-time.After(20 * time.Second):
		t.Fatal("no listener from gatehouse controlplane")
		return nil
	}
}
