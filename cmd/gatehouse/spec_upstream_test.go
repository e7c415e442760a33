package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecValidateUpstreamRules: with no flags `spec validate` applies the
// production rules (an upstream on the node is refused with its field
// path); --upstream-allow (or its environment twin) lifts exactly what it
// names, and the node's own services stay refused.
func TestSpecValidateUpstreamRules(t *testing.T) {
	dir := t.TempDir()
	file := func(endpoint string) string {
		f := filepath.Join(dir, strings.NewReplacer(":", "_", ".", "_").Replace(endpoint)+".yaml")
		data := "apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: t, team: t}\nspec:\n  hosts: [t.example.com]\n" +
			"  upstreams: [{name: api, endpoints: [\"" + endpoint + "\"]}]\n  routes: [{name: r, match: {pathPrefix: /}, upstream: api}]\n"
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	echo, admin := file("127.0.0.1:9080"), file("127.0.0.1:9901")
	_, errOut, code := run(t, "spec", "validate", echo)
	if code != 1 || !strings.Contains(errOut, "spec.upstreams[0].endpoints[0]") || !strings.Contains(errOut, "loopback") {
		t.Fatalf("no flags: exit %d, stderr:\n%s", code, errOut)
	}
	if _, errOut, code := run(t, "spec", "validate", "--upstream-allow", "127.0.0.1:9080,10.0.0.0/8", echo); code != 0 {
		t.Fatalf("--upstream-allow: exit %d, stderr:\n%s", code, errOut)
	}
	t.Setenv("GATEHOUSE_SPEC_VALIDATE_UPSTREAM_ALLOW", "127.0.0.0/8")
	if _, errOut, code := run(t, "spec", "validate", echo); code != 0 {
		t.Fatalf("environment twin: exit %d, stderr:\n%s", code, errOut)
	}
	if _, errOut, code := run(t, "spec", "validate", admin); code != 1 || !strings.Contains(errOut, "Envoy admin") {
		t.Fatalf("Envoy admin with 127.0.0.0/8 allowed: exit %d, stderr:\n%s", code, errOut)
	}
	if _, errOut, code := run(t, "spec", "validate", "--upstream-allow", "bogus", echo); code != 1 || !strings.Contains(errOut, `"bogus"`) {
		t.Fatalf("bad allow-list: exit %d, stderr:\n%s", code, errOut)
	}
}
