package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane"
)

type notedReport struct {
	spec string
	err  error
	note string
}

// noteReporter is a source.NoteReporter handing every report to c.
type noteReporter struct{ c chan notedReport }

func (r noteReporter) ReportPublished(_ context.Context, spec string, _ int64, err error) error {
	r.c <- notedReport{spec: spec, err: err}
	return nil
}

func (r noteReporter) ReportPublishedNote(_ context.Context, spec string, _ int64, note string) error {
	r.c <- notedReport{spec: spec, note: note}
	return nil
}

// nextReports collects one report per spec named.
func nextReports(t *testing.T, c chan notedReport, what string, specs ...string) map[string]notedReport {
	t.Helper()
	out := map[string]notedReport{}
	timeout := time.After(10 * time.Second)
	for len(out) < len(specs) {
		select {
		case r := <-c:
			out[r.spec] = r
		case <-timeout:
			t.Fatalf("%s: reports %v, want one for each of %v", what, out, specs)
		}
	}
	return out
}

// TestPublishedNoteNamesUnconnectedGroups: a spec served by a node group
// with no connected node is reported published with the note
// "published; no node of group G connected" (naming only the groups
// that serve it); once every group serving a spec has ACKed, the report
// has no note.
func TestPublishedNoteNamesUnconnectedGroups(t *testing.T) {
	reps := make(chan notedReport, 64)
	withGroups := func(yaml, groups string) string {
		return strings.Replace(yaml, "spec:\n", "spec:\n  nodeGroups: "+groups+"\n", 1)
	}
	a := withGroups(specYAML("a", "a.example.com", "10.0.0.1:80"), "[g1, edge-b]")
	b := withGroups(specYAML("b", "b.example.com", "10.0.0.2:80"), "[g1]")
	h := startControlPlane(t, controlplane.Config{Reporter: noteReporter{reps}}, map[string]string{"a.yaml": a, "b.yaml": b})
	got := nextReports(t, reps, "first version, no node connected", "a", "b")
	if r := got["a"]; r.err != nil || r.note != "published; no node of group edge-b, g1 connected" {
		t.Errorf("a: %+v, want published with note naming edge-b and g1", r)
	}
	if r := got["b"]; r.err != nil || r.note != "published; no node of group g1 connected" {
		t.Errorf("b: %+v, want published with note naming g1 only", r)
	}

	node := dialADS(t, h.addr, "fleet-1", "g1")
	node.send(cdsType, nil, "", "", "")
	v1 := node.recv(cdsType)
	node.send(cdsType, nil, v1.GetVersionInfo(), v1.GetNonce(), "")
	// v2 (a's cluster changes) reaches g1's node, which ACKs it.
	h.write("a.yaml", strings.Replace(a, `endpoints: ["10.0.0.1:80"]}]`, `endpoints: ["10.0.0.1:80"], connectTimeout: 9s}]`, 1))
	v2 := node.recv(cdsType)
	if v2.GetVersionInfo() == v1.GetVersionInfo() {
		t.Fatal("node got the same version")
	}
	node.send(cdsType, nil, v2.GetVersionInfo(), v2.GetNonce(), "")
	got = nextReports(t, reps, "after g1 ACKed", "a", "b")
	if r := got["a"]; r.err != nil || r.note != "published; no node of group edge-b connected" {
		t.Errorf("a after g1 ACKed: %+v, want published with note naming edge-b only", r)
	}
	if r := got["b"]; r.err != nil || r.note != "" {
		t.Errorf("b after g1 ACKed: %+v, want published without a note", r)
	}
}
