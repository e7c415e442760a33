package explain

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestExplainScopedGroup: in a scoped route group explain follows the
// scope of the request's host to that spec's table (the revision the
// ext_authz check carries is the spec's route version), and a host no
// scope has, mixed case included, is Envoy's 404.
func TestExplainScopedGroup(t *testing.T) {
	var specs []source.Spec
	for _, f := range []string{"petstore.yaml", "status-page.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, source.Spec{Origin: f, Data: b})
	}
	c, err := compile.New(compile.Options{ScopedRouteGroups: []string{"edge"}})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "t", Specs: specs})
	if len(res.Failed()) > 0 {
		t.Fatal(res.Failed()[0].Err)
	}
	run := func(line string) *Result {
		t.Helper()
		req, err := ParseRequest(line, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Explain(context.Background(), res, "edge", req, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := run("GET https://petstore.example.com:443/pets?limit=3")
	if out.Route != "petstore/list-pets" {
		t.Fatalf("matched %q, notes %v", out.Route, out.Notes)
	}
	var pet *compile.Spec
	for _, s := range res.Published() {
		if s.Name == "petstore" {
			pet = s
		}
	}
	if got := out.Auth.ContextExtensions["gatehouse.revision"]; got != res.SpecRouteVersion(pet) {
		t.Errorf("revision %q, want the spec's route version %q", got, res.SpecRouteVersion(pet))
	}
	if out := run("GET https://status.example.com/"); !strings.HasPrefix(out.Route, "status-page/") {
		t.Fatalf("status host matched %q, notes %v", out.Route, out.Notes)
	}
	for _, line := range []string{"GET https://other.example.com/pets", "GET https://Petstore.example.com/pets"} {
		if out := run(line); out.Route != "" || len(out.Notes) != 1 || !strings.Contains(out.Notes[0], "Envoy answers 404") {
			t.Fatalf("%s: route %q notes %v, want 404", line, out.Route, out.Notes)
		}
	}
}
