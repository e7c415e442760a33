package compile

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// readRevision loads the given spec files as one revision.
func readRevision(t testing.TB, files ...string) source.Revision {
	t.Helper()
	var specs []source.Spec
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, source.Spec{Origin: filepath.Base(f), Data: data})
	}
	return source.Revision{ID: "golden", Specs: specs}
}

func newCompiler(t testing.TB) *Compiler {
	t.Helper()
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGolden compiles testdata/golden/*.yaml together and compares each
// node group's resources with testdata/golden/<group>.json. Run with
// -update to rewrite them after an intended change, and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	res := newCompiler(t).Compile(readRevision(t, files...))
	for _, s := range res.Specs {
		if s.Err != nil {
			t.Fatalf("golden spec %s failed: %v", s.Origin, s.Err)
		}
	}
	// "us-east-1" is a group no spec names: it gets the specs without
	// nodeGroups. "eu-west-1" also gets billing.
	for _, group := range []string{"us-east-1", "eu-west-1"} {
		t.Run(group, func(t *testing.T) {
			r, warnings, err := res.Resources(group)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Render(group, res.GroupVersion(group), r, warnings)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/golden", group+".json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(bytes.TrimSpace(want)), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got); if intended, run go test ./controlplane/compile -update:\n%s", golden, diff)
			}
		})
	}
}

func TestGroupsGetTheirSpecsOnly(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	res := newCompiler(t).Compile(readRevision(t, files...))
	us, _, err := res.Resources("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	eu, _, err := res.Resources("eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	names := func(r Resources, typ string) string {
		var n []string
		for _, x := range r[typ] {
			n = append(n, x.(interface{ GetName() string }).GetName())
		}
		return strings.Join(n, ",")
	}
	const cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	if got := names(us, cds); strings.Contains(got, "billing/") {
		t.Errorf("us-east-1 clusters include billing's: %s", got)
	}
	if got := names(eu, cds); !strings.Contains(got, "billing/api") || !strings.Contains(got, "petstore/api") {
		t.Errorf("eu-west-1 clusters = %s, want billing's and petstore's", got)
	}
}

const goodSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: NAME, team: t}
spec:
  hosts: [HOST]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - name: r
      match: {pathPrefix: /}
      upstream: api
`

func specBytes(name, host string) []byte {
	return []byte(strings.NewReplacer("NAME", name, "HOST", host).Replace(goodSpec))
}

func TestBadSpecIsPrunedOthersShip(t *testing.T) {
	c := newCompiler(t)
	rev := source.Revision{ID: "r1", Specs: []source.Spec{
		{Origin: "a.yaml", Data: specBytes("a", "a.example.com")},
		{Origin: "b.yaml", Data: []byte("apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: b, team: t}\nspec:\n  hosts: [b.example.com]\n  upstreams: [{name: api, endpoints: [\"10.0.0.1:80\"]}]\n  routes:\n    - {name: r, match: {pathPrefix: /}, upstream: nope}\n")},
		{Origin: "c.yaml", Data: specBytes("c", "a.example.com")}, // host conflict with a
		{Origin: "d.yaml", Data: []byte("{not yaml")},
		{Origin: "e.yaml", Data: specBytes("a", "e.example.com")}, // duplicate name
	}}
	res := c.Compile(rev)
	if len(res.Published()) != 1 || res.Published()[0].Name != "a" {
		t.Fatalf("published = %v, want only a", res.Published())
	}
	wantErr := map[string]string{
		"b.yaml": "spec.routes[0].upstream",
		"c.yaml": `spec.hosts[0]: host "a.example.com" is already served by another EdgeRoute (a host belongs to one EdgeRoute only): EdgeRoute "a" (a.yaml)`,
		"d.yaml": "d.yaml",
		"e.yaml": `"a" is already the name of the EdgeRoute in a.yaml`,
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
	if _, _, err := res.Resources("any"); err != nil {
		t.Fatalf("the good spec's config does not build: %v", err)
	}
}

func TestIncrementalReusesUnchangedSpecs(t *testing.T) {
	c := newCompiler(t)
	r1 := c.Compile(source.Revision{ID: "1", Specs: []source.Spec{
		{Origin: "a.yaml", Data: specBytes("a", "a.example.com")},
		{Origin: "b.yaml", Data: specBytes("b", "b.example.com")},
	}})
	r2 := c.Compile(source.Revision{ID: "2", Specs: []source.Spec{
		{Origin: "a.yaml", Data: specBytes("a", "a.example.com")},
		{Origin: "b.yaml", Data: specBytes("b", "b2.example.com")},
	}})
	if r1.Published()[0].vhost != r2.Published()[0].vhost {
		t.Error("unchanged spec a was compiled again")
	}
	if r1.Published()[1].vhost == r2.Published()[1].vhost {
		t.Error("changed spec b was not compiled again")
	}
	if r1.Version == r2.Version {
		t.Error("version did not change with the content")
	}
	r3 := c.Compile(source.Revision{ID: "2", Specs: []source.Spec{
		{Origin: "b.yaml", Data: specBytes("b", "b2.example.com")},
		{Origin: "a.yaml", Data: specBytes("a", "a.example.com")},
	}})
	if r3.Version != r2.Version {
		t.Errorf("same content in another order: version %s, want %s", r3.Version, r2.Version)
	}
}

func TestValidateAllRecursesIntoAny(t *testing.T) {
	// A route whose per-filter ext_authz config carries an invalid
	// message (an empty context extension key is fine, but a CheckSettings
	// inside an ExtAuthzPerRoute with neither override is not): PGV on the
	// route alone passes, recursion must catch it.
	files, _ := filepath.Glob("testdata/golden/petstore.yaml")
	res := newCompiler(t).Compile(readRevision(t, files...))
	vh := res.Published()[0].vhost
	if err := vh.ValidateAll(); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	bad := cloneVH(vh)
	a := bad.Routes[0].TypedPerFilterConfig["envoy.filters.http.ext_authz"]
	a.Value = nil // ExtAuthzPerRoute with no override: violates its oneof "required"
	if err := bad.ValidateAll(); err != nil {
		t.Fatalf("PGV alone already rejects it (%v): the test would not show recursion", err)
	}
	err := ValidateAll(bad)
	if err == nil || !strings.Contains(err.Error(), "routes[0].typed_per_filter_config") {
		t.Fatalf("ValidateAll = %v, want an error at routes[0].typed_per_filter_config", err)
	}
	a.TypeUrl = "type.googleapis.com/unknown.Type"
	if err := ValidateAll(bad); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown Any type: %v", err)
	}
}

func cloneVH(vh *routev3.VirtualHost) *routev3.VirtualHost {
	return proto.Clone(vh).(*routev3.VirtualHost)
}
