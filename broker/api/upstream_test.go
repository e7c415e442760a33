package api_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func newAPIWithPolicy(t *testing.T, pol spec.Policy) *api.API {
	a, _ := newTestAPI(t, pol)
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
