package controlplane_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

// rejecter plays a fleet node that NACKs every CDS version carrying one
// of the bad clusters and ACKs the others, until done says stop. It
// returns the cluster names of the last version it ACKed. done is asked
// after every ACK, with whether the node has NACKed anything yet.
func (c *adsClient) rejecter(t *testing.T, bad []string, within time.Duration, done func(last []string, nacked bool) bool) []string {
	t.Helper()
	var last []string
	nacked := false
	var lastVersion string
	deadline := time.After(within)
	for {
		select {
		case r, ok := <-c.resps:
			if !ok {
				t.Fatal("stream closed")
			}
			got := names(t, r, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
			reject := ""
			for _, b := range bad {
				if slices.Contains(got, b) {
					reject = "cluster " + b + ": rejected by this node"
				}
			}
			if reject != "" {
				c.send(cdsType, nil, lastVersion, r.GetNonce(), reject)
				nacked = true
				continue
			}
			lastVersion, last = r.GetVersionInfo(), got
			c.send(cdsType, nil, lastVersion, r.GetNonce(), "")
			if done(last, nacked) {
				return last
			}
		case <-deadline:
			t.Fatalf("node did not settle within %s; last ACKed clusters %v", within, last)
		}
	}
}

func waitReport(t *testing.T, reps chan publishedReport, within time.Duration, ok func(publishedReport) bool) publishedReport {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case r := <-reps:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no matching report within %s", within)
		}
	}
}

// TestFleetNACKPrunesOnlyTheNewSpec: no canary; a node NACKs the version
// that brought spec b. b alone is pruned and reported failed with the
// node's message; the rest is republished and the node ACKs it.
func TestFleetNACKPrunesOnlyTheNewSpec(t *testing.T) {
	reps := make(chan publishedReport, 256)
	h := startControlPlane(t, controlplane.Config{Reporter: reportsTo(reps)},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	nextReport(t, reps, "first version")
	node := dialADS(t, h.addr, "fleet-1", "us-east-1")
	node.send(cdsType, nil, "", "", "")
	node.rejecter(t, nil, 10*time.Second, func(last []string, _ bool) bool { return slices.Contains(last, "a/api") })

	// b arrives; the node rejects it, then is served the rest and ACKs
	// it: a without b.
	h.write("b.yaml", specYAML("b", "b.example.com", "10.0.0.2:80"))
	last := node.rejecter(t, []string{"b/api"}, 15*time.Second, func(_ []string, nacked bool) bool { return nacked })
	if !slices.Contains(last, "a/api") || slices.Contains(last, "b/api") {
		t.Fatalf("node ACKed clusters %v, want a/api without b/api", last)
	}
	failed := waitReport(t, reps, 10*time.Second, func(r publishedReport) bool { return r.spec == "b" && r.err != nil })
	if msg := failed.err.Error(); !strings.Contains(msg, "fleet-1") || !strings.Contains(msg, "cluster b/api: rejected by this node") {
		t.Fatalf("b failed with %q: want the node and its message", msg)
	}
	waitReport(t, reps, 10*time.Second, func(r publishedReport) bool { return r.spec == "a" && r.err == nil })
	var bStatus *controlplane.SpecStatus
	for _, s := range h.cp.State().Specs {
		if s.Name == "b" {
			bStatus = &s
		}
	}
	if bStatus == nil || bStatus.Published || !strings.Contains(bStatus.Error, "rejected by this node") {
		t.Fatalf("/debug/specs entry for b = %+v, want not published with the node's message", bStatus)
	}
}

// TestFleetNACKBisects: a node that knows none of three specs rejects
// the version with all of them; bisection finds the one it rejects (c),
// prunes it, and a and b reach the node.
func TestFleetNACKBisects(t *testing.T) {
	reps := make(chan publishedReport, 256)
	h := startControlPlane(t, controlplane.Config{Reporter: reportsTo(reps)}, map[string]string{
		"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80"),
		"b.yaml": specYAML("b", "b.example.com", "10.0.0.2:80"),
		"c.yaml": specYAML("c", "c.example.com", "10.0.0.3:80"),
	})
	node := dialADS(t, h.addr, "fleet-1", "us-east-1")
	node.send(cdsType, nil, "", "", "")
	last := node.rejecter(t, []string{"c/api"}, 30*time.Second, func(last []string, _ bool) bool {
		return slices.Contains(last, "a/api") && slices.Contains(last, "b/api")
	})
	if slices.Contains(last, "c/api") {
		t.Fatalf("node ACKed %v", last)
	}
	failed := waitReport(t, reps, 10*time.Second, func(r publishedReport) bool { return r.err != nil })
	if failed.spec != "c" || !strings.Contains(failed.err.Error(), "cluster c/api: rejected by this node") {
		t.Fatalf("failed report %s: %v, want c with the node's message", failed.spec, failed.err)
	}
}
