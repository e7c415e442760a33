package compile

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func upstreamRevision(endpoint string) source.Revision {
	return source.Revision{ID: "r", Specs: []source.Spec{{Origin: "t.yaml", Data: []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: t, team: t}
spec:
  hosts: [t.example.com]
  upstreams: [{name: api, endpoints: ["` + endpoint + `"]}]
  routes:
    - {name: r, match: {pathPrefix: /}, upstream: api}
`)}}}
}

// compileErr compiles one spec whose only endpoint is endpoint and returns
// why it was left out ("" when published).
func compileErr(t *testing.T, o Options, endpoint string) string {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(upstreamRevision(endpoint))
	if len(res.Specs) != 1 {
		t.Fatalf("got %d specs", len(res.Specs))
	}
	if s := res.Specs[0]; s.Err != nil {
		return s.Err.Error()
	}
	return ""
}

// TestEndpointEqualToASidecarIsRefused: a spec endpoint equal to a sidecar
// address of the compiler's options is refused, even when the operator's
// allow-list covers its range.
func TestEndpointEqualToASidecarIsRefused(t *testing.T) {
	o := Options{UpstreamAllow: spec.MustParseUpstreamAllow("127.0.0.0/8")}
	for ep, what := range map[string]string{
		envoy.DefaultSidecars.Authz:     "the authz sidecar",
		envoy.DefaultSidecars.RateLimit: "the ratelimit sidecar",
		envoy.DefaultSidecars.AccessLog: "the accesslog sidecar",
		contract.DefaultEnvoyAdminAddr:  "Envoy admin",
	} {
		got := compileErr(t, o, ep)
		if !strings.Contains(got, "spec.upstreams[0].endpoints[0]") || !strings.Contains(got, what) {
			t.Errorf("endpoint %s: error %q, want one on spec.upstreams[0].endpoints[0] naming %s", ep, got, what)
		}
	}
	// The same range, another port: the allow-list lets it through.
	if got := compileErr(t, o, "127.0.0.1:9080"); got != "" {
		t.Errorf("127.0.0.1:9080 with 127.0.0.0/8 allowed: %s", got)
	}

	// Sidecars on a private (allowed by default) address, as in a pod.
	pod := Options{Sidecars: envoy.Sidecars{Authz: "10.1.2.3:9001", RateLimit: "10.1.2.3:8081", AccessLog: "10.1.2.3:9002"}}
	if got := compileErr(t, pod, "10.1.2.3:9001"); !strings.Contains(got, "the authz sidecar") {
		t.Errorf("endpoint = the pod's authz sidecar: %q", got)
	}
	if got := compileErr(t, pod, "10.1.2.4:9001"); got != "" {
		t.Errorf("another pod's port 9001: %s", got)
	}
}

// TestEnvoyAdminOnEveryAddressReservesItsPort: an Envoy admin bound to
// 0.0.0.0 answers on every node's address; no upstream may use its port.
func TestEnvoyAdminOnEveryAddressReservesItsPort(t *testing.T) {
	o := Options{EnvoyAdmin: "0.0.0.0:9901"}
	if got := compileErr(t, o, "10.0.0.7:9901"); !strings.Contains(got, "Envoy admin") {
		t.Errorf("10.0.0.7:9901 with admin on 0.0.0.0:9901: %q", got)
	}
	if got := compileErr(t, o, "10.0.0.7:9902"); got != "" {
		t.Errorf("10.0.0.7:9902: %s", got)
	}
}

// TestUpstreamPolicyOfTheOptions: loopback is refused by default and
// allowed exactly by the allow-list; the role's own addresses are refused
// even then; the checker (the broker worker's) applies the same policy.
func TestUpstreamPolicyOfTheOptions(t *testing.T) {
	if got := compileErr(t, Options{}, "127.0.0.1:9080"); !strings.Contains(got, "loopback") {
		t.Errorf("default options: %q", got)
	}
	o := Options{
		UpstreamAllow: spec.MustParseUpstreamAllow("127.0.0.1:9080", "127.0.0.1:18000"),
		NodeServices:  []spec.NodeService{{Addr: "127.0.0.1:18000", What: "the control plane's xDS"}},
	}
	if got := compileErr(t, o, "127.0.0.1:9080"); got != "" {
		t.Errorf("allowed 127.0.0.1:9080: %s", got)
	}
	if got := compileErr(t, o, "127.0.0.1:18000"); !strings.Contains(got, "xDS") {
		t.Errorf("the control plane's own address: %q", got)
	}
	k, err := NewChecker(Options{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := spec.Parse("t.yaml", upstreamRevision("169.254.169.254:80").Specs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Check(docs[0], ""); err == nil || !strings.Contains(err.Error(), "link-local") {
		t.Errorf("checker: %v", err)
	}
}
