package compile

import (
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// celSpec is a spec whose one route has an allow rule with the given
// `when` (single-quoted in YAML).
func celSpec(name, host, when string) []byte {
	return []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: ` + name + `, team: t}
spec:
  hosts: [` + host + `]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  identity:
    apiKeys:
      - name: partners
        header: x-api-key
        keys: [{id: acme, sha256: "` + strings.Repeat("ab", 32) + `"}]
  routes:
    - name: r
      match: {pathPrefix: /}
      upstream: api
      auth:
        anyOf: [partners]
        rules:
          - allow: true
            when: '` + when + `'
`)
}

// TestCompileRefusesWhenTheSidecarCannotLoad: the control plane's compile
// prunes a spec whose `when` has a literal matches pattern that the authz
// sidecar refuses (a syntax error) or that is over the RE2 bound of path
// regexes, or a conversion of a constant that fails, with an error naming
// the spec field and the reason; the specs beside it ship, and so does a
// spec whose pattern is built from request data (checked at run time).
func TestCompileRefusesWhenTheSidecarCannotLoad(t *testing.T) {
	c := newCompiler(t)
	rev := source.Revision{ID: "r1", Specs: []source.Spec{
		{Origin: "good.yaml", Data: celSpec("good", "good.example.com", `request.path.matches("^/pets/[0-9]+$")`)},
		{Origin: "dynamic.yaml", Data: celSpec("dynamic", "dynamic.example.com", `request.path.matches(request.headers["x-re"])`)},
		{Origin: "syntax.yaml", Data: celSpec("syntax", "syntax.example.com", `request.method == "GET" && request.path.matches("(")`)},
		{Origin: "global.yaml", Data: celSpec("global", "global.example.com", `identity.scopes.exists(s, matches(s, "(a{10}){10}"))`)},
		{Origin: "conv.yaml", Data: celSpec("conv", "conv.example.com", `request.path == "/" || timestamp("yesterday") < timestamp("2026-01-01T00:00:00Z")`)},
	}}
	res := c.Compile(rev)
	const field = "spec.routes[0].auth.rules[0].when: CEL does not compile: "
	wantErr := map[string]string{
		"syntax.yaml": "syntax.yaml:20: " + field + `the pattern "(" of matches (line 1, column 49) is an invalid regex: error parsing regexp: missing closing ): ` + "`(`",
		"global.yaml": "global.yaml:20: " + field + `the pattern "(a{10}){10}" of matches (line 1, column 38) is an invalid regex: too complex for Envoy: its RE2 program size is about`,
		"conv.yaml":   "conv.yaml:20: " + field + `a constant part cannot be evaluated (the authz sidecar evaluates conversions of constants when it loads the rule, and would refuse the policy): invalid RFC 3339 timestamp "yesterday"`,
	}
	for _, s := range res.Specs {
		want, bad := wantErr[s.Origin]
		switch {
		case !bad && s.Err != nil:
			t.Errorf("%s: unexpected error %v", s.Origin, s.Err)
		case bad && (s.Err == nil || !strings.Contains(s.Err.Error(), want)):
			t.Errorf("%s: error %v, want one containing %q", s.Origin, s.Err, want)
		}
	}
	var published []string
	for _, p := range res.Published() {
		published = append(published, p.Name)
	}
	if strings.Join(published, ",") != "dynamic,good" && strings.Join(published, ",") != "good,dynamic" {
		t.Fatalf("published = %v, want good and dynamic only", published)
	}
	if _, _, err := res.Resources("any"); err != nil {
		t.Fatalf("the good specs' config does not build: %v", err)
	}
}
