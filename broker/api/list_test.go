package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// TestListingEndpoints: GET /gatehouse/v1/instances[/{id}[/bindings]]
// answer from the store: hosts, the revision the control plane reported
// live, its rejection as the last error, keys with id, provider, labels
// and creation time, never the key's hash; unknown ids are 404; without
// credentials 401.
func TestListingEndpoints(t *testing.T) {
	ctx := context.Background()
	a, s := newTestAPI(t, spec.Policy{})
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	specJSON := []byte(`{"metadata":{"name":"r1"},"spec":{"hosts":["r1.example.com"]}}`)
	if _, err := s.PutInstance(ctx, store.Instance{ID: "r1", SpecName: "r1", Spec: specJSON,
		Op: store.Operation{ID: "op1", Kind: store.OpProvision, State: store.StateSucceeded, CreatedAt: created}}); err != nil {
		t.Fatal(err)
	}
	rev, err := s.PutSpec(ctx, store.StoredSpec{Name: "r1", InstanceID: "r1", JSON: specJSON}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReportPublished(ctx, "r1", rev, nil); err != nil {
		t.Fatal(err)
	}
	const hash = "66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1"
	if _, err := s.PutBinding(ctx, store.Binding{InstanceID: "r1", ID: "b1", Provider: "partners", KeyID: "b1", SHA256: hash,
		Labels: map[string]string{"plan": "gold"}, Op: store.Operation{ID: "op2", Kind: store.OpBind, State: store.StateSucceeded, CreatedAt: created}}); err != nil {
		t.Fatal(err)
	}

	w := serve(a, "GET", "/gatehouse/v1/instances", nil)
	var list struct {
		Routes []api.RouteSummary `json:"routes"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &list) != nil || len(list.Routes) != 1 {
		t.Fatalf("GET instances: %d %s", w.Code, w.Body)
	}
	if r := list.Routes[0]; r.ID != "r1" || r.State != "succeeded" || r.LiveRevision != rev || len(r.Hosts) != 1 || r.Hosts[0] != "r1.example.com" || r.LastError != "" {
		t.Fatalf("GET instances: %+v", r)
	}
	w = serve(a, "GET", "/gatehouse/v1/instances/r1/bindings", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"provider":"partners"`) || !strings.Contains(w.Body.String(), `"plan":"gold"`) ||
		!strings.Contains(w.Body.String(), `"created":"2026-12-01T10:00:00Z"`) {
		t.Fatalf("GET bindings: %d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), hash) || strings.Contains(w.Body.String(), "sha256") {
		t.Fatalf("GET bindings shows the key's hash: %s", w.Body)
	}

	// The control plane rejects the next revision: its error is the last error.
	rev2, err := s.PutSpec(ctx, store.StoredSpec{Name: "r1", InstanceID: "r1", JSON: specJSON}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReportPublished(ctx, "r1", rev2, errors.New("spec.routes[0]: compile: boom")); err != nil {
		t.Fatal(err)
	}
	w = serve(a, "GET", "/gatehouse/v1/instances/r1", nil)
	var one api.RouteSummary
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &one) != nil || one.LastError != "spec.routes[0]: compile: boom" {
		t.Fatalf("GET instance after a rejection: %d %s", w.Code, w.Body)
	}

	for _, p := range []string{"/gatehouse/v1/instances/nosuch", "/gatehouse/v1/instances/nosuch/bindings"} {
		if w := serve(a, "GET", p, nil); w.Code != 404 || !strings.Contains(w.Body.String(), "instance nosuch does not exist") {
			t.Errorf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	req := httptest.NewRequest("GET", "/gatehouse/v1/instances", nil)
	req.Header.Set("X-Broker-API-Version", "2.17")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Fatalf("GET instances without credentials: %d", rec.Code)
	}
}
