package spec

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// routeSpec is a valid spec with the given route lines (indented for a
// list item under routes:) and extra spec lines.
func routeSpec(route string) []byte {
	return []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: t, team: t}
spec:
  hosts: [t.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  identity:
    jwt:
      - {name: corp, issuer: "https://idp.example.com/", audiences: [t], jwks: '{"keys":[{"kty":"OKP"}]}'}
  routes:
    - name: r
      upstream: api
` + route)
}

// TestEnvoyRefusalsRefusedWithPath: what Envoy would refuse (or what could
// never match) is a validation error on the exact field path.
func TestEnvoyRefusalsRefusedWithPath(t *testing.T) {
	long := strings.Repeat("a", MaxMatchBytes)
	for _, tc := range []struct{ name, route, path, want string }{
		{name: "timeout over the cap", route: "      match: {pathPrefix: /}\n      timeout: 1h\n", path: "spec.routes[0].timeout", want: "at most 5m0s"},
		{name: "timeout absurd", route: "      match: {pathPrefix: /}\n      timeout: 2562047h\n", path: "spec.routes[0].timeout", want: "at most"},
		{name: "header value with newline", route: "      match: {pathPrefix: /, headers: [{name: x-a, exact: \"a\\r\\nx-admin: 1\"}]}\n", path: "spec.routes[0].match.headers[0].exact", want: "control character"},
		{name: "header prefix with NUL", route: "      match: {pathPrefix: /, headers: [{name: x-a, prefix: \"a\\0\"}]}\n", path: "spec.routes[0].match.headers[0].prefix", want: "control character"},
		{name: "header value too long", route: "      match: {pathPrefix: /, headers: [{name: x-a, exact: " + long + "x}]}\n", path: "spec.routes[0].match.headers[0].exact", want: "over the limit"},
		{name: "header name upper case", route: "      match: {pathPrefix: /, headers: [{name: X-A, exact: a}]}\n", path: "spec.routes[0].match.headers[0].name", want: "lower-case"},
		{name: "header name with colon", route: "      match: {pathPrefix: /, headers: [{name: \":authority\", exact: a}]}\n", path: "spec.routes[0].match.headers[0].name", want: "lower-case"},
		{name: "path with newline", route: "      match: {path: \"/a\\nb\"}\n", path: "spec.routes[0].match.path", want: "control character"},
		{name: "path prefix with space", route: "      match: {pathPrefix: \"/a b\"}\n", path: "spec.routes[0].match.pathPrefix", want: "whitespace"},
		{name: "path with query", route: "      match: {path: \"/a?b=1\"}\n", path: "spec.routes[0].match.path", want: "query string"},
		{name: "rewrite with CR", route: "      match: {pathPrefix: /}\n      rewritePrefix: \"/v1\\r\"\n", path: "spec.routes[0].rewritePrefix", want: "control character"},
		{name: "regex too long", route: "      match: {pathRegex: \"^/" + long + "$\"}\n", path: "spec.routes[0].match.pathRegex", want: "over the limit"},
		{name: "forward claim into host", route: "      match: {pathPrefix: /}\n", path: "spec.identity.jwt[0].forwardClaims.sub", want: "reserves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := routeSpec(tc.route)
			if tc.name == "forward claim into host" {
				data = []byte(strings.Replace(string(data), "jwks: '", "forwardClaims: {sub: host}, jwks: '", 1))
			}
			at, all := problemsAt(t, Policy{}, data, tc.path)
			if len(at) == 0 || !strings.Contains(at[0], tc.want) {
				t.Fatalf("problems at %s = %q, want one saying %q; all: %v", tc.path, at, tc.want, all)
			}
		})
	}
	// Within the caps: fine.
	if _, err := problemsAt(t, Policy{}, routeSpec("      match: {pathPrefix: /, headers: [{name: x-a, exact: \"a b\\tc\"}]}\n      timeout: 5m\n"), ""); err != nil {
		t.Fatal(err)
	}
}

func TestReservedHeadersRefused(t *testing.T) {
	for _, tc := range []struct{ fragment, path string }{
		{"forwardClaims: {sub: x-envoy-upstream-rq-timeout-ms}, ", "spec.identity.jwt[0].forwardClaims.sub"},
		{"forwardClaims: {sub: transfer-encoding}, ", "spec.identity.jwt[0].forwardClaims.sub"},
	} {
		data := []byte(strings.Replace(string(routeSpec("      match: {pathPrefix: /}\n")), "jwks: '", tc.fragment+"jwks: '", 1))
		if at, all := problemsAt(t, Policy{}, data, tc.path); len(at) == 0 {
			t.Errorf("%s: no problem at %s; all: %v", tc.fragment, tc.path, all)
		}
	}
	for _, tc := range []struct{ provider, path string }{
		{"{name: k, header: host}", "spec.identity.apiKeys[0].header"},
		{"{name: k, query: \"a&b\"}", "spec.identity.apiKeys[0].query"},
		{"{name: k, query: \"api%5Fkey\"}", "spec.identity.apiKeys[0].query"},
	} {
		data := []byte(strings.Replace(string(routeSpec("      match: {pathPrefix: /}\n")), "  routes:\n", "    apiKeys: ["+tc.provider+"]\n  routes:\n", 1))
		if at, all := problemsAt(t, Policy{}, data, tc.path); len(at) == 0 {
			t.Errorf("%s: no problem at %s; all: %v", tc.provider, tc.path, all)
		}
	}
}

// TestSpecCaps: each cap refuses one more than it allows, on the list's
// path.
func TestSpecCaps(t *testing.T) {
	list := func(n int, f func(i int) string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = f(i)
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	base := func() string { return string(routeSpec("      match: {pathPrefix: /}\n")) }
	for _, tc := range []struct {
		name, old, new, path string
	}{
		{name: "routes", old: "  routes:\n    - name: r\n      upstream: api\n      match: {pathPrefix: /}\n",
			new: "  routes: " + list(MaxRoutes+1, func(i int) string { return fmt.Sprintf("{name: r%d, upstream: api, match: {pathPrefix: /}}", i) }) + "\n", path: "spec.routes"},
		{name: "hosts", old: "hosts: [t.example.com]", new: "hosts: " + list(MaxHosts+1, func(i int) string { return fmt.Sprintf("h%d.example.com", i) }), path: "spec.hosts"},
		{name: "upstreams", old: "upstreams: [{name: api, endpoints: [\"10.0.0.1:80\"]}]",
			new: "upstreams: " + list(MaxUpstreams+1, func(i int) string {
				if i == 0 {
					return "{name: api, endpoints: [\"10.0.0.1:80\"]}"
				}
				return fmt.Sprintf("{name: u%d, endpoints: [\"10.0.0.1:80\"]}", i)
			}), path: "spec.upstreams"},
		{name: "endpoints", old: "endpoints: [\"10.0.0.1:80\"]", new: "endpoints: " + list(MaxEndpoints+1, func(i int) string { return fmt.Sprintf("\"10.0.%d.%d:80\"", i/200, i%200+1) }), path: "spec.upstreams[0].endpoints"},
		{name: "keys", old: "  routes:\n", new: "    apiKeys: [{name: k, header: x-k, keys: " + list(MaxAPIKeys+1, func(i int) string { return fmt.Sprintf("{id: k%d, sha256: %064x}", i, i) }) + "}]\n  routes:\n", path: "spec.identity.apiKeys"},
		{name: "rate limits", old: "      match: {pathPrefix: /}\n", new: "      match: {pathPrefix: /}\n      rateLimits: " + list(MaxRateLimits+1, func(i int) string { return fmt.Sprintf("{name: l%d, by: [], limit: 1/second}", i) }) + "\n", path: "spec.routes[0].rateLimits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			if !strings.Contains(b, tc.old) {
				t.Fatalf("base spec lacks %q", tc.old)
			}
			data := []byte(strings.Replace(b, tc.old, tc.new, 1))
			at, all := problemsAt(t, Policy{}, data, tc.path)
			if len(at) == 0 || !strings.Contains(at[0], "over the limit") {
				t.Fatalf("problems at %s = %q; all: %.2000v", tc.path, at, all)
			}
		})
	}
}

// TestAliasBombRefusedQuickly: nested YAML aliases that would walk
// routes x rateLimits x by a billion times are refused, fast.
func TestAliasBombRefusedQuickly(t *testing.T) {
	rep := func(alias string, n int) string { return strings.TrimSuffix(strings.Repeat(alias+", ", n), ", ") }
	doc := `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: t, team: t}
spec:
  hosts: [t.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.1:80"]}]
  routes:
    - &R {name: r, upstream: api, match: {pathPrefix: /}, rateLimits: [&L {name: l, limit: 1/second, by: [&B client.ip, ` + rep("*B", 999) + `]}, ` + rep("*L", 999) + `]}
    - ` + strings.Repeat("*R\n    - ", 999) + `*R
`
	done := make(chan error, 1)
	go func() {
		_, err := Parse("bomb.yaml", []byte(doc))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "alias bomb") {
			t.Fatalf("Parse(alias bomb) = %.500v, want the alias bomb refused", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Parse of an alias bomb still running after 20s")
	}
	// Ordinary alias use is fine.
	ok := string(routeSpec("      match: {pathPrefix: /}\n      rateLimits: [&L {name: l, by: [client.ip], limit: 1/second}]\n")) +
		"    - {name: r2, upstream: api, match: {pathPrefix: /b}, rateLimits: [*L]}\n"
	if _, err := problemsAt(t, Policy{}, []byte(ok), ""); err != nil {
		t.Fatal(err)
	}
}

// TestLongNamesRefused: Envoy refuses an SNI over 255 bytes (the cluster,
// not just the spec, would fail); DNS names stop at 253.
func TestLongNamesRefused(t *testing.T) {
	long := strings.Repeat("a.", 127) + "com" // 257 bytes of valid labels
	for _, tc := range []struct{ upstream, path string }{
		{"dns: api.internal:443\n      tls: {sni: " + long + "}", "spec.upstreams[0].tls.sni"},
		{"dns: " + long + ":443", "spec.upstreams[0].dns"},
	} {
		if at, all := problemsAt(t, Policy{}, upstreamSpec(tc.upstream), tc.path); len(at) == 0 || !strings.Contains(at[0], "DNS name") {
			t.Errorf("problems at %s = %q; all: %.300v", tc.path, at, all)
		}
	}
}
