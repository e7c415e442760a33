package spec

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Caps on one spec. All specs of a node group share one Envoy route table,
// one set of clusters, and every sidecar of the fleet compiles every
// spec's policy, so a single spec may not grow without bound.
// docs/ROUTE_SPEC.md lists them; MaxDocumentSize bounds the bytes.
const (
	MaxHosts           = 32
	MaxNodeGroups      = 16
	MaxUpstreams       = 32
	MaxEndpoints       = 64                   // per upstream
	MaxProviders       = MaxIdentityProviders // identity providers of all kinds together
	MaxAPIKeys         = 2000
	MaxAudiences       = 16 // per JWT provider
	MaxForwardClaims   = 16 // per JWT provider
	MaxPrincipals      = 64 // per mTLS provider
	MaxRoutes          = 200
	MaxHeaderMatches   = 16 // per route
	MaxRules           = 64 // per route
	MaxRateLimits      = 16 // per route
	MaxAccessLogHeader = 32 // per route, for headers and for redact
	MaxMatchBytes      = 1024
	MaxDNSName         = 253 // bytes of a host, sni or dns name (DNS's own limit; Envoy refuses a longer SNI)
	MaxRouteTimeout    = 5 * time.Minute
)

// reservedHeaders are header names a spec may not have the edge set or
// remove (forwarded claims, API-key headers): Envoy refuses to remove or
// modify host, and the others steer the connection or Envoy itself.
var reservedHeaders = map[string]bool{
	"host": true, "connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "te": true, "upgrade": true, "content-length": true,
	"expect": true, "trailer": true,
}

// reservedHeader says why Envoy or HTTP reserves header name h, or "".
func reservedHeader(h string) string {
	switch {
	case reservedHeaders[h]:
		return fmt.Sprintf("%q is a header Envoy or HTTP reserves (host, connection, transfer-encoding, ...)", h)
	case strings.HasPrefix(h, "x-envoy-"):
		return fmt.Sprintf("%q is an Envoy control header (x-envoy-*)", h)
	}
	return ""
}

// caps checks the size caps of the document.
func (v *validator) caps() {
	s := &v.doc.EdgeRoute.Spec
	v.atMost("spec.hosts", len(s.Hosts), MaxHosts, "hosts")
	v.atMost("spec.nodeGroups", len(s.NodeGroups), MaxNodeGroups, "node groups")
	for i, h := range s.Hosts {
		v.nameLength(joinIndex("spec.hosts", i), h)
	}
	v.atMost("spec.upstreams", len(s.Upstreams), MaxUpstreams, "upstreams")
	for i, u := range s.Upstreams {
		p := joinIndex("spec.upstreams", i)
		v.atMost(p+".endpoints", len(u.Endpoints), MaxEndpoints, "endpoints")
		if host, _, err := net.SplitHostPort(u.DNS); err == nil {
			v.nameLength(p+".dns", host)
		}
		if u.TLS != nil {
			v.nameLength(p+".tls.sni", u.TLS.SNI)
		}
	}
	if id := s.Identity; id != nil {
		// The provider count itself: identityCaps (MaxIdentityProviders).
		keys := 0
		for _, k := range id.APIKeys {
			keys += len(k.Keys)
		}
		v.atMost("spec.identity.apiKeys", keys, MaxAPIKeys, "API keys (declared and bound together)")
		for i, j := range id.JWT {
			p := joinIndex("spec.identity.jwt", i)
			v.atMost(p+".audiences", len(j.Audiences), MaxAudiences, "audiences")
			v.atMost(p+".forwardClaims", len(j.ForwardClaims), MaxForwardClaims, "forwarded claims")
		}
		for i, m := range id.MTLS {
			v.atMost(joinIndex("spec.identity.mtls", i)+".principals", len(m.Principals), MaxPrincipals, "principals")
		}
	}
	v.atMost("spec.routes", len(s.Routes), MaxRoutes, "routes")
	for i, rt := range s.Routes {
		p := joinIndex("spec.routes", i)
		v.atMost(p+".match.headers", len(rt.Match.Headers), MaxHeaderMatches, "header matches")
		if rt.Auth != nil {
			v.atMost(p+".auth.rules", len(rt.Auth.Rules), MaxRules, "rules")
		}
		v.atMost(p+".rateLimits", len(rt.RateLimits), MaxRateLimits, "rate limits")
		if al := rt.AccessLog; al != nil {
			v.atMost(p+".accessLog.headers", len(al.Headers), MaxAccessLogHeader, "headers")
			v.atMost(p+".accessLog.redact", len(al.Redact), MaxAccessLogHeader, "headers")
		}
	}
}

func (v *validator) nameLength(p, name string) {
	if len(name) > MaxDNSName {
		v.fail(p, "is %d bytes, over the %d of a DNS name", len(name), MaxDNSName)
	}
}

func (v *validator) atMost(p string, n, limit int, what string) {
	if n > limit {
		v.fail(p, "has %d %s, over the limit of %d per spec element (docs/ROUTE_SPEC.md, caps)", n, what, limit)
	}
}

// matchText checks a path, path prefix, rewrite or header value: Envoy
// refuses NUL, CR and LF there, and a control character, space, ? or #
// in a path can never match a request.
func (v *validator) matchText(p, s string, isPath bool) {
	if len(s) > MaxMatchBytes {
		v.fail(p, "is %d bytes, over the limit of %d", len(s), MaxMatchBytes)
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 && c != '\t' || c == 0x7f:
			v.fail(p, "holds the control character %q at byte %d: Envoy refuses it", c, i)
			return
		case isPath && (c == ' ' || c == '\t'):
			v.fail(p, "holds whitespace at byte %d: a request path never does", i)
			return
		case isPath && (c == '?' || c == '#'):
			v.fail(p, "holds %q at byte %d: Envoy matches the path without the query string or fragment, so this never matches", c, i)
			return
		}
	}
}
