package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/snapshot"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// RegisterDebug adds /debug/nodes, /debug/config, /debug/specs and
// POST /debug/explain (and
// /debug/pprof/ with Config.Pprof) to an admin server, and a readiness check that passes once a version is
// published.
func (cp *ControlPlane) RegisterDebug(a *telemetry.Admin) {
	a.Handle("GET /debug/nodes", http.HandlerFunc(cp.debugNodes))
	a.Handle("GET /debug/config", http.HandlerFunc(cp.debugConfig))
	a.Handle("GET /debug/specs", http.HandlerFunc(cp.debugSpecs))
	a.Handle("POST /debug/explain", http.HandlerFunc(cp.debugExplain))
	// Profiles, for `make bench-xds` and production triage, only with
	// --pprof (the admin port binds loopback by default).
	if cp.cfg.Pprof {
		a.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		a.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	}
	a.AddReadyCheck("controlplane", func() error {
		if cp.pub.Good() == nil {
			return errors.New("no version published yet")
		}
		return nil
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// debugNodes: connected nodes, node group, the revision each runs, ACKed
// version per type, last NACK; and what each node group is served now
// (revision and per-type versions). ?nodes=0 leaves out the node list
// (for a fleet of thousands, when only "served" is wanted).
func (cp *ControlPlane) debugNodes(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Count  int                        `json:"count"`
		Nodes  []xds.NodeStatus           `json:"nodes"`
		Served map[string]xds.GroupServed `json:"served"`
	}{Served: cp.xds.Served()}
	if r.URL.Query().Get("nodes") == "0" {
		out.Count = cp.xds.Streams()
	} else {
		out.Nodes = cp.xds.Nodes()
		out.Count = len(out.Nodes)
	}
	writeJSON(w, http.StatusOK, out)
}

// debugConfig: the resources a node group is served, as JSON.
func (cp *ControlPlane) debugConfig(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("node_group")
	if group == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "node_group is required, e.g. /debug/config?node_group=us-east-1", "served": cp.pub.State().Served})
		return
	}
	res := cp.pub.Served(group)
	if res == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no version is published yet"})
		return
	}
	resources, warnings, err := res.Resources(group)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	out, err := compile.Render(group, res.GroupVersion(group), resources, warnings)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "%s\n", out)
}

// debugSpecs: revision, per-spec status and errors, publishing and rollout.
func (cp *ControlPlane) debugSpecs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		State
		Publishing snapshot.State `json:"publishing"`
	}{cp.State(), cp.pub.State()})
}
