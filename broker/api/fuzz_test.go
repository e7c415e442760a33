package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newAPI(t testing.TB) *api.API {
	a, _ := newTestAPI(t, spec.Policy{})
	return a
}

// openStoreQueue is a SQLite store and queue of the test's own, closed
// when it ends.
func openStoreQueue(t testing.TB) (*sqlitestore.Store, *sqlitequeue.Queue) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q, err := sqlitequeue.Open(ctx, filepath.Join(dir, "q.db"), sqlitequeue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return st, q
}

// newTestAPI is the OSB API over a SQLite store and queue of its own (no
// worker), with the validation policy pol; it returns the store too.
func newTestAPI(t testing.TB, pol spec.Policy) (*api.API, *sqlitestore.Store) {
	st, q := openStoreQueue(t)
	a, err := api.New(api.Config{Store: st, Queue: q, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), Username: "u", Password: "p", BindWait: -1, SpecPolicy: pol})
	if err != nil {
		t.Fatal(err)
	}
	return a, st
}

const validSpec = `{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"fz","team":"t"},
"spec":{"hosts":["fz.example.com"],"upstreams":[{"name":"api","endpoints":["10.0.0.1:80"]}],
"identity":{"apiKeys":[{"name":"k","header":"x-api-key"}]},
"routes":[{"name":"r","match":{"pathPrefix":"/"},"upstream":"api"}]}}`

func serve(a http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.SetBasicAuth("u", "p")
	req.Header.Set("X-Broker-API-Version", "2.17")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, req)
	return w
}

// FuzzProvisionBody feeds arbitrary PUT bodies to the OSB API: it never
// answers 5xx, every error has a JSON description, and it accepts (202)
// only bodies whose parameters the spec package itself accepts.
func FuzzProvisionBody(f *testing.F) {
	for _, seed := range []string{
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"o","space_guid":"s","parameters":` + validSpec + `}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":{"apiVersion":"gatehouse/v1"}}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"x","parameters":{}}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":"kind: EdgeRoute"}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":null}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"o","space_guid":"s","context":{"platform":"cloudfoundry","organization_guid":"o","space_guid":"s"},"parameters":` + strings.Replace(validSpec, `"fz.example.com"`, `"*.co.uk"`, 1) + `}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"o","space_guid":"s","context":["x"],"parameters":` + validSpec + `}`,
		`{}`, `[]`, `null`, `{"service_id":1}`, ``, `{"parameters":{"spec":{"routes":[{"auth":{"rules":[{"when":"1 +"}]}}]}}}`,
	} {
		f.Add([]byte(seed))
	}
	a := newAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := serve(a, "PUT", "/v2/service_instances/fz?accepts_incomplete=true", body)
		switch w.Code {
		case 200, 202, 400, 409, 422:
		default:
			t.Fatalf("HTTP %d for %q: %s", w.Code, body, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("HTTP %d with a non-JSON body %q", w.Code, w.Body)
		}
		if w.Code >= 400 {
			if d, _ := out["description"].(string); d == "" {
				t.Fatalf("HTTP %d without a description: %s", w.Code, w.Body)
			}
			return
		}
		var req struct {
			Parameters json.RawMessage `json:"parameters"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("accepted (%d) a body that is not JSON: %q", w.Code, body)
		}
		docs, err := spec.Parse("parameters", req.Parameters)
		if err == nil {
			err = spec.Validate(docs)
		}
		if err != nil || len(docs) != 1 {
			t.Fatalf("accepted (%d) parameters the spec package rejects (%v): %s", w.Code, err, req.Parameters)
		}
	})
}

// FuzzBindBody: binding bodies never cause a 5xx and errors are described.
func FuzzBindBody(f *testing.F) {
	for _, seed := range []string{
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":{"provider":"k","labels":{"a":"b"}}}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":{"provider":"nope"}}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":{"provider":"k","extra":1}}`,
		`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","parameters":{"labels":[1]}}`,
		`{}`, `x`,
	} {
		f.Add([]byte(seed))
	}
	a := newAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := serve(a, "PUT", "/v2/service_instances/none/service_bindings/b?accepts_incomplete=true", body)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d for %q: %s", w.Code, body, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || (w.Code >= 400 && out["description"] == "") {
			t.Fatalf("HTTP %d with body %q", w.Code, w.Body)
		}
	})
}
