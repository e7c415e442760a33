package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/gatehouse-edge/gatehouse/frontdoor"
)

// The test's Envoy node is the front door package's: it follows the xDS an
// Envoy of the group receives and plays its filters on that config alone.
type (
	httpRequest = frontdoor.Request
	nodeConfig  = frontdoor.NodeConfig
)

var (
	selectVirtualHost = frontdoor.SelectVirtualHost
	matchRoute        = frontdoor.MatchRoute
)

type envoyNode struct{ *frontdoor.Node }

// startEnvoyNode starts the test's Envoy node on xdsAddr; creds is its
// transport (envoyTLS for an Envoy of the dev node group).
func startEnvoyNode(t *testing.T, ctx context.Context, xdsAddr string, creds grpc.DialOption, id, group string) *envoyNode {
	t.Helper()
	n, err := frontdoor.StartNode(ctx, xdsAddr, id, group, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &envoyNode{n}
}

func (n *envoyNode) config() nodeConfig { return n.Config() }

// waitFor polls the node's config until ok holds.
func (n *envoyNode) waitFor(t *testing.T, within time.Duration, what string, ok func(nodeConfig) bool) nodeConfig {
	t.Helper()
	c, held := n.WaitFor(context.Background(), within, ok)
	if !held {
		t.Fatalf("envoy node %s: %s not reached within %s; versions %v", n.ID(), what, within, c.Versions)
	}
	return c
}
