package api_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newAPIWithPolicy(t *testing.T, pol spec.Policy) *api.API {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q, err := sqlitequeue.Open(ctx, filepath.Join(dir, "q.db"), sqlitequeue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	a, err := api.New(api.Config{Store: s, Queue: q, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), Username: "u", Password: "p", BindWait: -1, SpecPolicy: pol})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func provisionBody(endpoint string) []byte {
	return []byte(`{"service_id":"` + api.ServiceID + `","plan_id":"` + api.PlanID + `","organization_guid":"org-1","space_guid":"space-1","parameters":` +
		strings.Replace(validSpec, "10.0.0.1:80", endpoint, 1) + `}`)
}

// TestProvisionRefusesNodeUpstreams: the OSB API answers 400 with the
// field path for an upstream on the node (Envoy admin), and the
// operator's allow-list lifts exactly what it names.
func TestProvisionRefusesNodeUpstreams(t *testing.T) {
	a := newAPIWithPolicy(t, spec.Policy{})
	for _, ep := range []string{"127.0.0.1:9901", "169.254.169.254:80", "[::1]:80"} {
		w := serve(a, "PUT", "/v2/service_instances/fz?accepts_incomplete=true", provisionBody(ep))
		if w.Code != 400 || !strings.Contains(w.Body.String(), "spec.upstreams[0].endpoints[0]") || !strings.Contains(w.Body.String(), "InvalidParameters") {
			t.Errorf("provision with endpoint %s: HTTP %d %s, want 400 InvalidParameters naming spec.upstreams[0].endpoints[0]", ep, w.Code, w.Body)
		}
	}
	allowed := newAPIWithPolicy(t, spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: spec.MustParseUpstreamAllow("127.0.0.1:9080")}})
	if w := serve(allowed, "PUT", "/v2/service_instances/fz?accepts_incomplete=true", provisionBody("127.0.0.1:9080")); w.Code != 202 {
		t.Errorf("allowed endpoint: HTTP %d %s", w.Code, w.Body)
	}
	if w := serve(allowed, "PUT", "/v2/service_instances/fy?accepts_incomplete=true", provisionBody("127.0.0.1:9901")); w.Code != 400 {
		t.Errorf("endpoint the allow-list does not name: HTTP %d %s", w.Code, w.Body)
	}
}
