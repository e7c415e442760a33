package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

type publishedReport struct {
	spec string
	err  error
}

func reportsTo(c chan publishedReport) source.Reporter {
	return source.ReporterFunc(func(_ context.Context, spec string, _ int64, err error) error {
		c <- publishedReport{spec, err}
		return nil
	})
}

func nextReport(t *testing.T, c chan publishedReport, what string) publishedReport {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("no report: %s", what)
	}
	return publishedReport{}
}

// TestPublishedMeansACKed: a spec is reported published only once a node
// of the group serving it has ACKed the version; a group with no
// connected node holds nothing back.
func TestPublishedMeansACKed(t *testing.T) {
	reps := make(chan publishedReport, 64)
	h := startControlPlane(t, controlplane.Config{Reporter: reportsTo(reps)},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	// No node connected: nothing holds the report back.
	if r := nextReport(t, reps, "first version with no node connected"); r.spec != "a" || r.err != nil {
		t.Fatalf("report %+v, want a published", r)
	}

	node := dialADS(t, h.addr, "fleet-1", "us-east-1")
	node.send(cdsType, nil, "", "", "")
	v1 := node.recv(cdsType)
	node.send(cdsType, nil, v1.GetVersionInfo(), v1.GetNonce(), "")

	// v2 reaches the node; until it ACKs, the spec is not reported.
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	v2 := node.recv(cdsType)
	if v2.GetVersionInfo() == v1.GetVersionInfo() {
		t.Fatal("node got the same version")
	}
	select {
	case r := <-reps:
		t.Fatalf("reported %+v before any node of us-east-1 ACKed %s", r, v2.GetVersionInfo())
	case <-time.After(500 * time.Millisecond):
	}
	if w, served := h.cp.State().AwaitingACK, h.cp.Publisher().State().Served["us-east-1"]; w["us-east-1"] != served {
		t.Fatalf("/debug/specs awaiting_ack = %v, want us-east-1 on %s", w, served)
	}
	node.send(cdsType, nil, v2.GetVersionInfo(), v2.GetNonce(), "")
	if r := nextReport(t, reps, "after the ACK"); r.spec != "a" || r.err != nil {
		t.Fatalf("report %+v, want a published", r)
	}
	if w := h.cp.State().AwaitingACK; len(w) != 0 {
		t.Fatalf("awaiting_ack after the ACK = %v", w)
	}
}

// TestPublishQuorum: with PublishQuorum 2 and two nodes of a group
// connected, one ACK is not enough.
func TestPublishQuorum(t *testing.T) {
	reps := make(chan publishedReport, 64)
	h := startControlPlane(t, controlplane.Config{Reporter: reportsTo(reps), PublishQuorum: 2},
		map[string]string{"a.yaml": specYAML("a", "a.example.com", "10.0.0.1:80")})
	nextReport(t, reps, "first version with no node connected")
	n1, n2 := dialADS(t, h.addr, "fleet-1", "g"), dialADS(t, h.addr, "fleet-2", "g")
	for _, n := range []*adsClient{n1, n2} {
		n.send(cdsType, nil, "", "", "")
		r := n.recv(cdsType)
		n.send(cdsType, nil, r.GetVersionInfo(), r.GetNonce(), "")
	}
	h.write("a.yaml", strings.Replace(specYAML("a", "a.example.com", "10.0.0.1:80"), `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	r1, r2 := n1.recv(cdsType), n2.recv(cdsType)
	n1.send(cdsType, nil, r1.GetVersionInfo(), r1.GetNonce(), "")
	select {
	case r := <-reps:
		t.Fatalf("reported %+v with one of two nodes ACKing (quorum 2)", r)
	case <-time.After(500 * time.Millisecond):
	}
	n2.send(cdsType, nil, r2.GetVersionInfo(), r2.GetNonce(), "")
	if r := nextReport(t, reps, "after the second ACK"); r.spec != "a" || r.err != nil {
		t.Fatalf("report %+v, want a published", r)
	}
}
