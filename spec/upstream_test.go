package spec

import (
	"errors"
	"strings"
	"testing"
)

// upstreamSpec is a valid spec whose only upstream is the given YAML
// fragment (e.g. `endpoints: ["10.0.0.1:80"]` or `dns: api.internal:80`).
func upstreamSpec(upstream string) []byte {
	return []byte(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: t, team: t}
spec:
  hosts: [t.example.com]
  upstreams:
    - name: api
      ` + upstream + `
  routes:
    - {name: r, match: {pathPrefix: /}, upstream: api}
`)
}

// problemsAt validates data under pol and returns the reasons reported
// at path, and every problem (for failure messages).
func problemsAt(t *testing.T, pol Policy, data []byte, path string) (at []string, all error) {
	t.Helper()
	docs, err := Parse("t.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	err = pol.Validate(docs)
	var l ErrorList
	if err != nil && !errors.As(err, &l) {
		t.Fatalf("Validate: %v", err)
	}
	for _, e := range l {
		if e.Path == path {
			at = append(at, e.Reason)
		}
	}
	return at, err
}

var nodeUpstreams = []struct {
	name, upstream, path, want string
}{
	{name: "envoy admin on loopback", upstream: `endpoints: ["127.0.0.1:9901"]`, path: "spec.upstreams[0].endpoints[0]", want: "loopback"},
	{name: "other loopback", upstream: `endpoints: ["10.0.0.1:80", "127.8.9.10:80"]`, path: "spec.upstreams[0].endpoints[1]", want: "loopback"},
	{name: "ipv6 loopback", upstream: `endpoints: ["[::1]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "loopback"},
	{name: "ipv4-mapped loopback", upstream: `endpoints: ["[::ffff:127.0.0.1]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "loopback"},
	{name: "nat64 loopback", upstream: `endpoints: ["[64:ff9b::7f00:1]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "loopback"},
	{name: "cloud metadata", upstream: `endpoints: ["169.254.169.254:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "link-local"},
	{name: "ipv6 link-local", upstream: `endpoints: ["[fe80::1]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "link-local"},
	{name: "aws ipv6 metadata", upstream: `endpoints: ["[fd00:ec2::254]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "AWS"},
	{name: "unspecified", upstream: `endpoints: ["0.0.0.0:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "unspecified"},
	{name: "this network", upstream: `endpoints: ["0.1.2.3:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "unspecified"},
	{name: "ipv6 unspecified", upstream: `endpoints: ["[::]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "unspecified"},
	{name: "multicast", upstream: `endpoints: ["224.0.0.1:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "multicast"},
	{name: "ipv6 multicast", upstream: `endpoints: ["[ff02::1]:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "multicast"},
	{name: "broadcast", upstream: `endpoints: ["255.255.255.255:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "broadcast"},
	{name: "dns localhost", upstream: `dns: localhost:9901`, path: "spec.upstreams[0].dns", want: "localhost"},
	{name: "dns under .localhost", upstream: `dns: admin.localhost:9901`, path: "spec.upstreams[0].dns", want: ".localhost"},
	{name: "dns single label", upstream: `dns: redis:6379`, path: "spec.upstreams[0].dns", want: "single-label"},
	{name: "dns numeric", upstream: `dns: 127.0.0.1:9901`, path: "spec.upstreams[0].dns", want: "loopback"},
	{name: "dns inet_aton form", upstream: `dns: 127.1:9901`, path: "spec.upstreams[0].dns", want: "numeric label"},
	{name: "dns metadata name", upstream: `dns: metadata.google.internal:80`, path: "spec.upstreams[0].dns", want: "metadata"},
	{name: "dns loopback domain", upstream: `dns: app.localtest.me:80`, path: "spec.upstreams[0].dns", want: "loopback"},
	{name: "dns wildcard-dns loopback", upstream: `dns: 127.0.0.1.nip.io:9901`, path: "spec.upstreams[0].dns", want: "loopback"},
	{name: "dns wildcard-dns metadata", upstream: `dns: 169-254-169-254.sslip.io:80`, path: "spec.upstreams[0].dns", want: "link-local"},
	{name: "reserved class E", upstream: `endpoints: ["240.0.0.1:80"]`, path: "spec.upstreams[0].endpoints[0]", want: "reserved"},
}

// TestNodeAndPlatformUpstreamsRefused: production rules (the zero
// Policy) refuse every upstream that points at the node or the platform,
// on the exact field path.
func TestNodeAndPlatformUpstreamsRefused(t *testing.T) {
	for _, tc := range nodeUpstreams {
		t.Run(tc.name, func(t *testing.T) {
			at, all := problemsAt(t, Policy{}, upstreamSpec(tc.upstream), tc.path)
			if len(at) == 0 {
				t.Fatalf("no problem at %s; all: %v", tc.path, all)
			}
			if !strings.Contains(at[0], tc.want) || !strings.Contains(at[0], "--upstream-allow") {
				t.Fatalf("%s: %q, want it to say %q and how to allow it", tc.path, at[0], tc.want)
			}
		})
	}
}

// TestTenantUpstreamsAllowed: private ranges and ordinary names stay
// allowed by default; tenant backends live there.
func TestTenantUpstreamsAllowed(t *testing.T) {
	for _, u := range []string{
		`endpoints: ["10.0.0.1:8080", "172.16.5.5:80", "192.168.1.1:443", "100.64.0.1:80"]`,
		`endpoints: ["[fd12:3456::1]:80", "203.0.113.7:443"]`,
		`dns: api.internal:8080`,
		`dns: status-web.internal:8080`,
		`dns: backend.example.com:443`,
		`dns: 10.0.0.5.nip.io:80`,
		`dns: api-v2.internal:80`,
	} {
		if _, err := problemsAt(t, Policy{}, upstreamSpec(u), ""); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestUpstreamAllowLiftsRefusals: an operator's allow-list (CIDRs and
// host:port) lifts the refusal of exactly what it covers.
func TestUpstreamAllowLiftsRefusals(t *testing.T) {
	allow, err := ParseUpstreamAllow([]string{"127.0.0.1:9080", "169.254.0.0/16", "fe80::/10", "localhost:9901", " ", "[::1]:80", "redis:6379", "224.0.0.1", "0.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{Upstreams: UpstreamPolicy{Allow: allow}}
	for _, u := range []string{
		`endpoints: ["127.0.0.1:9080"]`,
		`endpoints: ["169.254.169.254:80"]`,
		`endpoints: ["[fe80::1]:80"]`,
		`endpoints: ["[::1]:80"]`,
		`endpoints: ["[::ffff:127.0.0.1]:9080"]`,
		`endpoints: ["224.0.0.1:80"]`,
		`endpoints: ["0.0.0.0:80"]`,
		`dns: localhost:9901`,
		`dns: redis:6379`,
	} {
		if _, err := problemsAt(t, pol, upstreamSpec(u), ""); err != nil {
			t.Errorf("%s with the allow-list: %v", u, err)
		}
	}
	// Exactly: another port, another loopback address, another name stay
	// refused.
	for _, u := range []string{`endpoints: ["127.0.0.1:9081"]`, `endpoints: ["127.0.0.2:9080"]`, `dns: localhost:9902`, `dns: other:6379`} {
		if _, err := problemsAt(t, pol, upstreamSpec(u), ""); err == nil {
			t.Errorf("%s: allowed, but the allow-list does not cover it", u)
		}
	}
}

func TestParseUpstreamAllowRefusesJunk(t *testing.T) {
	for _, e := range []string{"10.0.0.0/33", "api.internal", "not a host:80", "127.0.0.1:99999", "*.x.com:80"} {
		if _, err := ParseUpstreamAllow([]string{e}); err == nil || !strings.Contains(err.Error(), e) {
			t.Errorf("ParseUpstreamAllow(%q) = %v, want an error naming the entry", e, err)
		}
	}
}

// TestReservedNodeServicesRefusedEvenWhenAllowed: the node's own services
// are refused although the allow-list covers their range.
func TestReservedNodeServicesRefusedEvenWhenAllowed(t *testing.T) {
	pol := Policy{Upstreams: UpstreamPolicy{
		Allow: MustParseUpstreamAllow("127.0.0.0/8", "10.0.0.0/8", "localhost:9001", "127.0.0.1:9001", "localhost:6070"),
		Reserved: []NodeService{
			{Addr: "127.0.0.1:9001", What: "the authz sidecar"},
			{Addr: "10.1.2.3:8081", What: "the ratelimit sidecar"},
			{Addr: "0.0.0.0:9901", What: "Envoy admin"},
			{Addr: "authz.gatehouse.svc:9001", What: "the authz sidecar"},
			{Addr: "localhost:6070", What: "the ratelimit sidecar's admin server"},
		},
	}}
	for _, tc := range []struct{ upstream, path, want string }{
		{upstream: `endpoints: ["127.0.0.1:9001"]`, path: "spec.upstreams[0].endpoints[0]", want: "the authz sidecar"},
		{upstream: `endpoints: ["[::ffff:127.0.0.1]:9001"]`, path: "spec.upstreams[0].endpoints[0]", want: "the authz sidecar"},
		{upstream: `dns: localhost:9001`, path: "spec.upstreams[0].dns", want: "the authz sidecar"},
		{upstream: `endpoints: ["10.0.0.9:80", "10.1.2.3:8081"]`, path: "spec.upstreams[0].endpoints[1]", want: "the ratelimit sidecar"},
		{upstream: `endpoints: ["127.0.0.5:9901"]`, path: "spec.upstreams[0].endpoints[0]", want: "Envoy admin"},
		{upstream: `dns: AUTHZ.gatehouse.svc:9001`, path: "spec.upstreams[0].dns"}, // upper case: not a DNS name at all
		{upstream: `dns: authz.gatehouse.svc:9001`, path: "spec.upstreams[0].dns", want: "the authz sidecar"},
		{upstream: `endpoints: ["127.0.0.1:6070"]`, path: "spec.upstreams[0].endpoints[0]", want: "admin server"},
		{upstream: `dns: localhost:6070`, path: "spec.upstreams[0].dns", want: "admin server"},
	} {
		at, all := problemsAt(t, pol, upstreamSpec(tc.upstream), tc.path)
		if len(at) == 0 || !strings.Contains(at[0], tc.want) {
			t.Errorf("%s: problems at %s = %q, want one naming %q; all: %v", tc.upstream, tc.path, at, tc.want, all)
		}
	}
	// Same range, other ports: allowed.
	for _, u := range []string{`endpoints: ["127.0.0.1:9080"]`, `endpoints: ["10.1.2.3:8080"]`, `dns: authz.gatehouse.svc:9002`} {
		if _, err := problemsAt(t, pol, upstreamSpec(u), ""); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestUpstreamTLSNeedsAName: tls on static endpoints (or an IP dns) needs
// sni, the name the certificate is checked against; a dns name is one.
func TestUpstreamTLSNeedsAName(t *testing.T) {
	for _, u := range []string{"endpoints: [\"10.0.0.1:443\"]\n      tls: {}", "dns: 10.0.0.1:443\n      tls: {}"} {
		if at, all := problemsAt(t, Policy{}, upstreamSpec(u), "spec.upstreams[0].tls.sni"); len(at) == 0 || !strings.Contains(at[0], "required") {
			t.Errorf("%s: problems at tls.sni = %q; all: %v", u, at, all)
		}
	}
	for _, u := range []string{"endpoints: [\"10.0.0.1:443\"]\n      tls: {sni: api.internal}", "dns: api.internal:443\n      tls: {}"} {
		if _, err := problemsAt(t, Policy{}, upstreamSpec(u), ""); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
