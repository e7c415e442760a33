// Package benchspec generates realistic EdgeRoute specs in bulk for the
// control plane's benchmarks and for `make bench-xds`: each spec has two
// upstreams (static with EDS, DNS with TLS), JWT and API-key identity and
// three routes (enforced with rules and two limits, a regex route with a
// header match and a token bucket, a public health route). It is only for
// benchmarks and tests. It sits below the compiler it feeds: it must not
// import the compile, envoy, snapshot or xds packages.
package benchspec

import (
	"fmt"
	"strings"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// Group is the node group of spec i among n groups; every GlobalEvery-th
// spec (i%GlobalEvery == 0) has no nodeGroups and is served everywhere.
func Group(i, groups int) string { return fmt.Sprintf("group-%02d", i%groups) }

// GlobalEvery spaces the specs served by every node group.
const GlobalEvery = 50

// Name is the metadata.name of spec i.
func Name(i int) string { return fmt.Sprintf("svc-%04d", i) }

// Options vary the generated specs.
type Options struct {
	// ExactHosts leaves out each spec's wildcard host
	// (*.svc-NNNN.example.com), so every host can be a route scope and a
	// node group served scoped routes (controlplane --scoped-route-groups)
	// gets one route table per spec instead of one for the group.
	ExactHosts bool
}

// Spec renders spec i; variant changes its endpoints (a one-spec change).
func Spec(i, groups, variant int) []byte { return Options{}.Spec(i, groups, variant) }

// Spec renders spec i with o; variant changes its endpoints.
func (o Options) Spec(i, groups, variant int) []byte {
	ng := fmt.Sprintf("\n  nodeGroups: [%s]", Group(i, groups))
	if i%GlobalEvery == 0 {
		ng = ""
	}
	hosts := `[NAME.example.com, "*.NAME.example.com"]`
	if o.ExactHosts {
		hosts = `[NAME.example.com, api.NAME.example.com]`
	}
	r := strings.NewReplacer(
		"NAME", Name(i),
		"NODEGROUPS", ng,
		"EP1", fmt.Sprintf("10.%d.%d.1:8080", i/250, i%250),
		"EP2", fmt.Sprintf("10.%d.%d.2:%d", i/250, i%250, 8080+variant),
	)
	return []byte(r.Replace(strings.Replace(template, "HOSTS", hosts, 1)))
}

// Revision is n specs as one source revision; changed (if >= 0) is
// rendered with variant.
func Revision(n, groups, changed, variant int) source.Revision {
	specs := make([]source.Spec, n)
	for i := range specs {
		v := 0
		if i == changed {
			v = variant
		}
		specs[i] = source.Spec{Origin: Name(i) + ".yaml", Data: Spec(i, groups, v)}
	}
	return source.Revision{ID: fmt.Sprintf("bench-%d-%d", changed, variant), Specs: specs}
}

const template = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata:
  name: NAME
  team: bench
spec:
  hosts: HOSTSNODEGROUPS
  upstreams:
    - name: api
      endpoints: ["EP1", "EP2"]
    - name: search
      dns: NAME-search.internal:8443
      tls: {sni: NAME-search.internal}
  identity:
    jwt:
      - name: corp
        issuer: https://idp.example.com/
        audiences: [NAME]
        jwksUri: https://idp.example.com/.well-known/jwks.json
    apiKeys:
      - name: partners
        header: x-api-key
        keys:
          - {id: acme, sha256: "66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1", labels: {plan: gold}}
  routes:
    - name: list
      match: {pathPrefix: /api, methods: [GET, HEAD]}
      upstream: api
      timeout: 5s
      auth:
        anyOf: [corp, partners]
        rules:
          - {allow: true, scopes: ["items:read"]}
          - {allow: true, when: 'identity.kind == "apiKey" && identity.labels.plan == "gold"'}
      rateLimits:
        - {name: per-user, by: [identity.subject], limit: 100/minute}
        - {name: per-ip, by: [client.ip], limit: 1000/minute}
      accessLog:
        headers: [user-agent, x-request-id]
    - name: item
      match:
        pathRegex: "^/items/[0-9]+$"
        headers: [{name: x-tenant, prefix: "t-"}]
      upstream: search
      rewritePrefix: /v2/items
      auth:
        anyOf: [partners]
        rules:
          - {allow: true, claims: {plan: gold}}
      rateLimits:
        - {name: per-tenant, by: [header.x-tenant], limit: 5000/hour, algorithm: token-bucket, burst: 100}
    - name: health
      match: {path: /healthz}
      upstream: api
`
