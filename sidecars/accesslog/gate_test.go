package accesslogsidecar_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// sendAs streams entries to the sidecar as an Envoy of the given node
// group would.
func sendAs(t *testing.T, addr, node, group string, entries []*alv3.HTTPAccessLogEntry) {
	t.Helper()
	sendFrom(t, addr, node, group, entries, nil)
}

// versioned are n entries of route served by version, with status.
func versioned(n int, route, version string, status uint32) []*alv3.HTTPAccessLogEntry {
	var out []*alv3.HTTPAccessLogEntry
	for _, e := range accesslogtest.Random(9, n, time.Now().Add(-time.Second), time.Second) {
		e.Route, e.Status, e.Decision, e.Flags = route, status, "allow", nil
		h := e.HTTP()
		h.GetCommonProperties().GetMetadata().GetFilterMetadata()[contract.ExtAuthzNamespace].Fields[contract.ConfigVersionKey] = structpb.NewStringValue(version)
		out = append(out, h)
	}
	return out
}

// TestOutcomeReportsDriveTheGate: a real control plane soaks a candidate
// at the canary group; the accesslog sidecar next to the canary receives
// ALS entries stamped with config versions, aggregates them and reports
// to the control plane over the xDS port; the canary's 5xx on the
// candidate against the fleet's clean traffic rolls the canary back with
// a reason naming the route.
func TestOutcomeReportsDriveTheGate(t *testing.T) {
	specDir := t.TempDir()
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(specDir, "petstore.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(petSpec)
	src, err := source.NewDir(specDir, source.Options{HoldOff: 10 * time.Millisecond, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp, err := controlplane.New(ctx, controlplane.Config{Source: src, Registry: prometheus.NewRegistry(), CanaryGroup: "canary",
		Soak: time.Hour, HoldOff: 20 * time.Millisecond, Gate: controlplane.Gate{MinRequests: 10}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(xds.ServerOptions()...)
	cp.RegisterXDS(gs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(l) }()
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	t.Cleanup(func() { cancel(); gs.Stop(); wg.Wait() })

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; rollout %+v", what, cp.State().Rollout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("first version", func() bool { return cp.Publisher().Good() != nil })
	v1 := cp.Publisher().Good().GroupVersion("us-east-1")
	write(strings.Replace(petSpec, "192.0.2.10:9080", "192.0.2.11:9080", 1))
	waitFor("soak", func() bool { return cp.State().Rollout.Phase == controlplane.PhaseSoaking })
	v2 := cp.State().Rollout.Candidate

	s := startSidecar(t, t.TempDir(), func(c *accesslogsidecar.Config) {
		c.SpecDir = ""
		c.XDSServer = l.Addr().String()
		c.NodeID = "accesslog-canary-1"
		c.NodeCluster = "canary"
		c.OutcomeInterval = 100 * time.Millisecond
	})
	sendAs(t, s.grpcAddr, "envoy-fleet-1", "us-east-1", versioned(100, "petstore/list-pets", v1, 200))
	breach := time.Now()
	sendAs(t, s.grpcAddr, "envoy-canary-1", "canary", versioned(30, "petstore/list-pets", v2, 503))
	waitFor("rollback", func() bool { return cp.State().Rollout.Phase == controlplane.PhaseRolledBack })
	// For docs/PERFORMANCE.md; not asserted (a loaded machine is slower).
	t.Logf("breach to rollback: %s (outcome interval 100ms)", time.Since(breach).Round(time.Millisecond))
	st := cp.State()
	if !strings.Contains(st.Rollout.Reason, "route petstore/list-pets") || !strings.Contains(st.Rollout.Reason, "5xx rate 100.0% (30/30)") {
		t.Fatalf("rollback reason = %q", st.Rollout.Reason)
	}
	if cp.Publisher().Good().GroupVersion("us-east-1") != v1 {
		t.Fatal("the fleet's version changed")
	}
	// The sidecar counts a report once its reply is back, which may be
	// after the control plane has already acted on it.
	waitFor("an outcome report counted as sent", func() bool {
		return metric(t, s.httpAddr, "gatehouse_accesslog_outcome_reports_total") >= 1
	})
}
