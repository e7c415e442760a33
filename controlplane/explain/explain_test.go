package explain

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

func compiled(t *testing.T) *compile.Result {
	t.Helper()
	var specs []source.Spec
	for _, f := range []string{"petstore.yaml", "status-page.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, source.Spec{Origin: f, Data: b})
	}
	c, err := compile.New(compile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(source.Revision{ID: "t", Specs: specs})
	if len(res.Failed()) > 0 {
		t.Fatal(res.Failed()[0].Err)
	}
	return res
}

func explain(t *testing.T, res *compile.Result, line string, engine *authz.Engine, headers ...string) *Result {
	t.Helper()
	req, err := ParseRequest(line, headers)
	if err != nil {
		t.Fatal(err)
	}
	req.ClientIP = "198.51.100.7"
	out, err := Explain(context.Background(), res, "any", req, engine)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExplainWithoutCredentials(t *testing.T) {
	res := compiled(t)
	out := explain(t, res, "GET https://petstore.example.com/pets?limit=3", nil)
	if out.Route != "petstore/list-pets" || out.Cluster != "petstore/api" {
		t.Fatalf("matched %q → %q", out.Route, out.Cluster)
	}
	if out.Auth.Mode != "enforce" || !out.Auth.ExtAuthz || out.Auth.ContextExtensions["gatehouse.route"] != "petstore/list-pets" || out.Auth.ContextExtensions["gatehouse.revision"] != res.GroupVersion("any") {
		t.Errorf("auth = %+v", out.Auth)
	}
	want := []Descriptor{
		{Limit: "per-user", Entries: [][]string{{"route", "petstore/list-pets"}, {"limit", "per-user"}, {"identity.subject", "<subject from ext_authz>"}}, Sent: true, Requests: 100, Window: "1m0s", Algorithm: "fixed-window", Scope: "shared"},
		{Limit: "per-ip", Entries: [][]string{{"route", "petstore/list-pets"}, {"limit", "per-ip"}, {"remote_address", "198.51.100.7"}}, Sent: true, Requests: 1000, Window: "1m0s", Algorithm: "sliding-window", Scope: "shared"},
	}
	if diff := cmp.Diff(want, out.RateLimits); diff != "" {
		t.Errorf("descriptors (-want +got):\n%s", diff)
	}

	// POST /pets matches no route (list-pets is GET/HEAD, adopt is /pets/adopt).
	if out := explain(t, res, "POST https://petstore.example.com/pets", nil); out.Route != "" || len(out.Notes) == 0 {
		t.Errorf("POST /pets matched %q", out.Route)
	}
	if out := explain(t, res, "GET https://petstore.example.com/healthz", nil); out.Route != "petstore/health" || out.Auth.ExtAuthz || out.Auth.Mode != "public" {
		t.Errorf("healthz = %+v %+v", out.Route, out.Auth)
	}
	if out := explain(t, res, "GET https://nobody.example.com/", nil); out.VirtualHost != "" {
		t.Errorf("unknown host matched %q", out.VirtualHost)
	}
}

func TestExplainWithAuthzDecision(t *testing.T) {
	res := compiled(t)
	engine, err := authz.NewEngine(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	// The demo key from deploy/examples/petstore.yaml (gold plan).
	out := explain(t, res, "GET https://petstore.example.com/pets", engine, "x-api-key: gh_demo_acme_0123456789")
	if out.Decision == nil || !out.Decision.Allow || out.Decision.Status != 200 {
		t.Fatalf("decision = %+v", out.Decision)
	}
	if got := out.RateLimits[0].Entries[2]; got[0] != "identity.subject" || got[1] != out.Decision.Metadata["subject"] || got[1] == "" {
		t.Errorf("per-user descriptor entry = %v, metadata %v", got, out.Decision.Metadata)
	}
	denied := explain(t, res, "GET https://petstore.example.com/pets", engine, "x-api-key: wrong")
	if denied.Decision == nil || denied.Decision.Allow || denied.Decision.Status != 401 {
		t.Fatalf("wrong key decision = %+v", denied.Decision)
	}
	if d := denied.RateLimits[0]; d.Sent {
		t.Errorf("per-user limit sent for an anonymous caller: %+v", d)
	}
}
