package compile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// jwksSpec is a spec with one JWT provider per uri, serving groups (none:
// every group).
func jwksSpec(name string, groups []string, uris ...string) source.Spec {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: %s, team: t}\nspec:\n  hosts: [%s.example.com]\n", name, name)
	if len(groups) > 0 {
		fmt.Fprintf(&b, "  nodeGroups: [%s]\n", strings.Join(groups, ", "))
	}
	b.WriteString("  upstreams: [{name: api, endpoints: [\"10.0.0.5:8080\"]}]\n  identity:\n    jwt:\n")
	for i, u := range uris {
		fmt.Fprintf(&b, "      - {name: p%d, issuer: \"https://idp.test/\", audiences: [a], jwksUri: %q}\n", i, u)
	}
	b.WriteString("  routes: [{name: r, match: {pathPrefix: /}, upstream: api, auth: {anyOf: [p0]}}]\n")
	return source.Spec{Name: name, Origin: "broker:" + name, Data: []byte(b.String())}
}

func uris(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("https://%s%d.example.com/jwks", prefix, i))
	}
	return out
}

// TestJWKSURIsPerGroupCap: the specs of one node group may name at most
// MaxJWKSURIsPerGroup distinct JWKS URIs; the spec that would exceed it
// (the newest) is left out with an error naming the cap and the group,
// and the others still ship. Shared URIs count once; other groups have
// their own budget.
func TestJWKSURIsPerGroupCap(t *testing.T) {
	c, err := New(Options{MaxJWKSURIsPerGroup: 4})
	if err != nil {
		t.Fatal(err)
	}
	old := jwksSpec("old", nil, uris("a", 3)...)
	old.Revision = 1
	shared := jwksSpec("shared", nil, uris("a", 3)[0], uris("a", 3)[1]) // same URIs: no cost
	shared.Revision = 2
	west := jwksSpec("west", []string{"west"}, uris("w", 1)...) // 3 + 1 = 4 in west
	west.Revision = 3
	east := jwksSpec("east", []string{"east"}, uris("e", 2)...) // 3 + 2 = 5 in east: over
	east.Revision = 4
	// "aaa" sorts first but is the newest: it is the one left out.
	newest := jwksSpec("aaa", nil, uris("n", 2)...)
	newest.Revision = 5
	res := c.Compile(source.Revision{ID: "r1", Specs: []source.Spec{newest, east, west, shared, old}})
	status := map[string]error{}
	for _, s := range res.Specs {
		status[s.Name] = s.Err
	}
	for _, ok := range []string{"old", "shared", "west"} {
		if status[ok] != nil {
			t.Errorf("%s left out: %v", ok, status[ok])
		}
	}
	for name, group := range map[string]string{"east": `node group "east"`, "aaa": "every node group"} {
		err := status[name]
		if err == nil || !strings.Contains(err.Error(), group) || !strings.Contains(err.Error(), "--max-jwks-uris-per-group") || !strings.Contains(err.Error(), "spec.identity.jwt") {
			t.Errorf("%s: %v, want it left out for %s over the JWKS URI cap", name, err, group)
		}
	}
	if _, _, err := res.Resources("west"); err != nil {
		t.Fatalf("west resources: %v", err)
	}

	// Negative: no cap.
	c, err = New(Options{MaxJWKSURIsPerGroup: -1})
	if err != nil {
		t.Fatal(err)
	}
	res = c.Compile(source.Revision{ID: "r2", Specs: []source.Spec{newest, east, west, shared, old}})
	if f := res.Failed(); len(f) != 0 {
		t.Fatalf("without a cap %d specs failed: %v", len(f), f[0].Err)
	}
}
