package controlplane_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// fleetTypes are the types the nodes of TestPolicyChangeResendsOnlyChangedTypes
// subscribe to, all as wildcards (so the test does not depend on how the
// route configuration is split).
var fleetTypes = []string{ldsType, cdsType, edsType, rdsType, contract.ExtensionConfigType}

// typeCounts counts responses per type, per protocol.
type typeCounts map[string]map[string]int

func (c typeCounts) add(proto, typ string) {
	if c[proto] == nil {
		c[proto] = map[string]int{}
	}
	c[proto][typ]++
}

// TestPolicyChangeResendsOnlyChangedTypes: each resource type has its own
// version, so a change to one spec's authz policy is sent, to a SotW node
// and to a delta node, as the types it changed (the authz sidecar's
// extension configs, and routes) and nothing of LDS, CDS or EDS, which a
// rebuild left byte-identical. The nodes' ACKs of the changed types still
// map back to the new revision: the spec is reported published, and
// /debug/nodes shows both nodes on the revision served.
func TestPolicyChangeResendsOnlyChangedTypes(t *testing.T) {
	reps := make(chan publishedReport, 64)
	specs := examples(t)
	h := startControlPlane(t, controlplane.Config{Reporter: reportsTo(reps)}, specs)
	for range 2 { // petstore and status-page, with no node connected
		nextReport(t, reps, "the first version")
	}
	const group = "us-east-1"
	sotw := dialADS(t, h.addr, "sotw-1", group)
	delta := dialDelta(t, h.addr, "delta-1", group)
	for _, typ := range fleetTypes {
		sotw.send(typ, nil, "", "", "")
		delta.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ})
	}

	// pump ACKs every response and counts it until done says so, then
	// keeps ACKing for a while to see any late response.
	pump := func(what string, done func() bool) typeCounts {
		t.Helper()
		counts := typeCounts{}
		deadline := time.After(10 * time.Second)
		var quiet <-chan time.Time
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case r, ok := <-sotw.resps:
				if !ok {
					t.Fatalf("SotW stream closed: %v", <-sotw.errc)
				}
				counts.add("sotw", r.GetTypeUrl())
				sotw.send(r.GetTypeUrl(), nil, r.GetVersionInfo(), r.GetNonce(), "")
			case r := <-delta.resps:
				counts.add("delta", r.GetTypeUrl())
				delta.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
			case <-tick.C:
				if quiet == nil && done() {
					quiet = time.After(500 * time.Millisecond)
				}
			case <-quiet:
				return counts
			case <-deadline:
				t.Fatalf("%s: timed out; responses so far %v; nodes %+v", what, counts, h.cp.XDS().Nodes())
			}
		}
	}
	onServed := func() bool {
		served := h.cp.Publisher().State().Served[group]
		n := 0
		for _, ns := range h.cp.XDS().Nodes() {
			if ns.Revision == served && len(ns.Acked) == len(fleetTypes) {
				n++
			}
		}
		return served != "" && n == 2
	}
	initial := pump("initial sync", onServed)
	for _, p := range []string{"sotw", "delta"} {
		for _, typ := range []string{ldsType, cdsType, edsType, contract.ExtensionConfigType} {
			if initial[p][typ] == 0 {
				t.Fatalf("%s node got no %s at first: %v", p, typ, initial)
			}
		}
	}
	rev1 := h.cp.Publisher().State().Served[group]
	before := typeVersions(t, h.cp, group)

	// One spec's authz policy changes.
	changed := strings.Replace(specs["petstore.yaml"], `scopes: ["pets:read"]`, `scopes: ["pets:list"]`, 1)
	if changed == specs["petstore.yaml"] {
		t.Fatal("the example spec no longer has the rule this test changes")
	}
	h.write("petstore.yaml", changed)
	published := false // petstore reported published (every spec is reported)
	counts := pump("the policy change", func() bool {
		for {
			select {
			case r := <-reps:
				if r.err != nil {
					t.Fatalf("report %+v, want published", r)
				}
				published = published || r.spec == "petstore"
				continue
			default:
			}
			return published && onServed()
		}
	})
	rev2 := h.cp.Publisher().State().Served[group]
	if rev2 == rev1 {
		t.Fatalf("the policy change did not make a new revision (%s)", rev1)
	}
	after := typeVersions(t, h.cp, group)
	for _, typ := range []string{ldsType, cdsType, edsType} {
		if after[typ] != before[typ] {
			t.Errorf("%s version changed (%s → %s) although its resources did not", typ, before[typ], after[typ])
		}
	}
	if after[contract.ExtensionConfigType] == before[contract.ExtensionConfigType] {
		t.Errorf("the authz extension configs kept version %s across a policy change", before[contract.ExtensionConfigType])
	}
	for _, p := range []string{"sotw", "delta"} {
		for _, typ := range []string{ldsType, cdsType, edsType} {
			if n := counts[p][typ]; n != 0 {
				t.Errorf("%s node was sent %d %s responses for a change that left them unchanged (all: %v)", p, n, typ, counts[p])
			}
		}
		if counts[p][contract.ExtensionConfigType] == 0 {
			t.Errorf("%s node was not sent the changed policy: %v", p, counts[p])
		}
	}
	// /debug/nodes: each node's revision and per-type versions, and what
	// the group is served.
	admin := telemetry.NewAdmin(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	h.cp.RegisterDebug(admin)
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	var dbg struct {
		Count int `json:"count"`
		Nodes []struct {
			NodeID   string            `json:"node_id"`
			Revision string            `json:"revision"`
			Acked    map[string]string `json:"acked_versions"`
		} `json:"nodes"`
		Served map[string]struct {
			Revision string            `json:"revision"`
			Versions map[string]string `json:"versions"`
		} `json:"served"`
	}
	getJSON(t, srv.URL+"/debug/nodes", &dbg)
	if len(dbg.Nodes) != 2 || dbg.Served[group].Revision != rev2 || dbg.Served[group].Versions[ldsType] != before[ldsType] || dbg.Served[group].Versions[contract.ExtensionConfigType] != after[contract.ExtensionConfigType] {
		t.Fatalf("/debug/nodes = %+v, want 2 nodes and %s served revision %s", dbg, group, rev2)
	}
	for _, n := range dbg.Nodes {
		if n.Revision != rev2 || n.Acked[ldsType] != before[ldsType] || n.Acked[contract.ExtensionConfigType] != after[contract.ExtensionConfigType] {
			t.Errorf("/debug/nodes: %s runs %q with LDS %q, want revision %s with the unchanged LDS %s", n.NodeID, n.Revision, n.Acked[ldsType], rev2, before[ldsType])
		}
	}
	dbg.Nodes = nil
	getJSON(t, srv.URL+"/debug/nodes?nodes=0", &dbg)
	if dbg.Count != 2 || dbg.Nodes != nil || dbg.Served[group].Revision != rev2 {
		t.Errorf("/debug/nodes?nodes=0 = %+v, want the count and served only", dbg)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
