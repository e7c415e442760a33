package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecValidateHostRules: `spec validate` refuses, with the file, line
// and field path, the host names no tenant may claim (what the broker
// answers 400 for and the control plane prunes), so a team learns before
// provisioning; ordinary names and wildcards below a registrable domain
// stay valid.
func TestSpecValidateHostRules(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, hosts ...string) string {
		f := filepath.Join(dir, name+".yaml")
		data := "apiVersion: gatehouse/v1\nkind: EdgeRoute\nmetadata: {name: " + name + ", team: t}\nspec:\n  hosts:\n"
		for _, h := range hosts {
			data += "  - \"" + h + "\"\n"
		}
		data += "  upstreams: [{name: api, endpoints: [\"10.0.0.5:8080\"]}]\n  routes: [{name: r, match: {pathPrefix: /}, upstream: api}]\n"
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if out, errOut, code := run(t, "spec", "validate", file("fine", "shop.example.com", "*.shop.example.com", "*.team.example.co.uk")); code != 0 || !strings.Contains(out, "ok fine") {
		t.Fatalf("valid hosts: exit %d, stderr:\n%s", code, errOut)
	}
	for i, c := range []struct{ host, why string }{
		{"*.com", "top-level domain"},
		{"*.co.uk", "public suffix"},
		{"co.uk", "public suffix"},
		{"com", "single-label"},
		{"intranet", "single-label"},
		{"localhost", "localhost"},
		{"api.localhost", "localhost"},
		{"10.0.0.1", "IP address"},
		{"*.github.io", "public suffix"},
	} {
		f := file("hostile"+string(rune('a'+i)), "ok.example.com", c.host)
		out, errOut, code := run(t, "spec", "validate", f)
		// hosts[1] is on line 7 of the file.
		if want := f + ":7: spec.hosts[1]"; code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, c.why) || !strings.Contains(errOut, `"`+c.host+`"`) {
			t.Fatalf("host %q: exit %d, want 1 and %q (%s); stdout %q, stderr:\n%s", c.host, code, want, c.why, out, errOut)
		}
	}
}
