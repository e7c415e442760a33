package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
)

// TestRoleConfigDefaultsLogAndRegistry: like every role, the broker's API
// and worker run without a logger or a registry (a discarding logger and a
// new registry), instead of refusing to start.
func TestRoleConfigDefaultsLogAndRegistry(t *testing.T) {
	st, q := openStoreQueue(t)
	a, err := api.New(api.Config{Store: st, Queue: q, Username: "u", Password: "p"})
	if err != nil {
		t.Fatalf("api.New without Log and Registry: %v", err)
	}
	// It serves (and logs and counts) without them.
	req := httptest.NewRequest(http.MethodGet, "/v2/catalog", nil)
	req.SetBasicAuth("u", "p")
	req.Header.Set("X-Broker-API-Version", "2.17")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v2/catalog = %d %s", rec.Code, rec.Body)
	}
	if _, err := worker.New(worker.Config{Store: st, Queue: q}); err != nil {
		t.Fatalf("worker.New without Log and Registry: %v", err)
	}
}
