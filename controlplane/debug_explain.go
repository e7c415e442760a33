package controlplane

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/controlplane/explain"
)

// ExplainRequest is the body of POST /debug/explain: one request to
// explain against the config a node group is served now. Headers may
// carry a credential; it is evaluated, never logged or echoed.
type ExplainRequest struct {
	Request   string   `json:"request"` // "METHOD https://host/path?query"
	Headers   []string `json:"headers,omitempty"`
	NodeGroup string   `json:"node_group,omitempty"` // default "default"
	ClientIP  string   `json:"client_ip,omitempty"`  // default 127.0.0.1
}

// ExplainResponse is the answer: the served version and the explanation.
type ExplainResponse struct {
	NodeGroup string          `json:"node_group"`
	Version   string          `json:"config_version"`
	Result    *explain.Result `json:"result"`
}

const maxExplainBody = 64 << 10

// debugExplain runs controlplane/explain against the served config, so
// keys issued by broker bindings (merged into the stored specs) count.
func (cp *ControlPlane) debugExplain(w http.ResponseWriter, r *http.Request) {
	var in ExplainRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExplainBody))
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("the body must be a JSON object {request, headers, node_group, client_ip} of at most %d bytes: %v", maxExplainBody, err)})
		return
	}
	if in.NodeGroup == "" {
		in.NodeGroup = "default"
	}
	req, err := explain.ParseRequest(in.Request, in.Headers)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "request: " + err.Error()})
		return
	}
	if in.ClientIP != "" {
		req.ClientIP = in.ClientIP
	}
	res := cp.pub.Served(in.NodeGroup)
	if res == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no version is published yet"})
		return
	}
	var engine *authz.Engine
	if len(req.Headers) > 0 {
		if engine, err = authz.NewEngine(authz.Options{Log: cp.log.With("component", "explain"), JWKSAllow: cp.cfg.JWKSAllow}); err != nil {
			cp.log.Error("explain: authz engine", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the authz engine could not start (details are in the control plane log)"})
			return
		}
		defer engine.Close()
	}
	out, err := explain.Explain(r.Context(), res, in.NodeGroup, req, engine)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ExplainResponse{NodeGroup: in.NodeGroup, Version: res.GroupVersion(in.NodeGroup), Result: out})
}
