package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDevStopsCleanlyAndRestartReusesData: Ctrl-C (a cancelled context)
// stops every role without error, and a second start on the same data
// provisions nothing and serves what the first one stored.
func TestDevStopsCleanlyAndRestartReusesData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, out := devConfig(t)
	first, stop := runDev(t, ctx, cfg, out)
	if len(first.Provisioned) != 2 || !strings.Contains(out.String(), "provisioning petstore") {
		t.Fatalf("first start provisioned %v; output:\n%s", first.Provisioned, out.String())
	}
	if err := stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}

	out.mu.Lock()
	out.Reset()
	out.mu.Unlock()
	second, _ := runDev(t, ctx, cfg, out)
	if len(second.Provisioned) != 0 || strings.Contains(out.String(), "provisioning") {
		t.Fatalf("second start provisioned %v again; output:\n%s", second.Provisioned, out.String())
	}
	if second.BrokerPassword != first.BrokerPassword || second.AccessLogToken != first.AccessLogToken {
		t.Fatal("second start made new credentials")
	}
	node := startEnvoyNode(t, ctx, second.XDS, envoyTLS(t, second.PKI), "restart-envoy", second.NodeGroup)
	node.waitFor(t, 30*time.Second, "the stored specs served again", func(c nodeConfig) bool {
		rc := c.Routes["gatehouse_routes"]
		return rc != nil && selectVirtualHost(rc, "petstore.example.com") != nil && selectVirtualHost(rc, "status.example.com") != nil
	})
}
