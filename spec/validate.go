package spec

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

var (
	allowedJWTAlgs = map[string]bool{
		"RS256": true, "RS384": true, "RS512": true,
		"PS256": true, "PS384": true, "PS512": true,
		"ES256": true, "ES384": true, "ES512": true,
		"EdDSA": true,
	}
	knownMethods = map[string]bool{
		"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
		"DELETE": true, "OPTIONS": true, "TRACE": true, "CONNECT": true,
	}
)

// Validate checks the meaning of every document and the conflicts between
// them (duplicate metadata.name, a host owned by two specs). It returns an
// ErrorList with every problem, or nil.
func Validate(docs []*Document) error { return Policy{}.Validate(docs) }

// Validate is the package's Validate under policy p.
func (p Policy) Validate(docs []*Document) error {
	chk, err := NewCELChecker()
	if err != nil {
		return fmt.Errorf("building the CEL environment: %w", err)
	}
	return validate(docs, chk, &p)
}

// ValidateOne validates d on its own (no cross-spec checks) under policy
// p, its `when` expressions checked by chk, which may have seen them
// before (one checker per compile run and goroutine); chk may be nil.
func (p Policy) ValidateOne(d *Document, chk *CELChecker) error {
	if chk == nil {
		return p.Validate([]*Document{d})
	}
	return validate([]*Document{d}, chk, &p)
}

// ValidateOne validates a single document on its own (no cross-spec
// checks); used where the other specs are checked elsewhere, e.g. the broker.
func ValidateOne(d *Document) error { return Validate([]*Document{d}) }

func validate(docs []*Document, chk *CELChecker, pol *Policy) error {
	var all ErrorList
	names := map[string]*Document{}
	hosts := map[string]*Document{}
	for _, d := range docs {
		v := validator{doc: d, cel: chk, pol: pol}
		v.document()
		r := &d.EdgeRoute
		if other, ok := names[r.Metadata.Name]; ok && r.Metadata.Name != "" {
			v.fail("metadata.name", "%q is already the name of the EdgeRoute in %s", r.Metadata.Name, other.File)
		} else {
			names[r.Metadata.Name] = d
		}
		for i, h := range r.Spec.Hosts {
			h = strings.ToLower(h)
			if other, ok := hosts[h]; ok && other != d {
				v.fail(joinIndex("spec.hosts", i), "host %q already belongs to EdgeRoute %q (%s); a host belongs to one EdgeRoute only", h, other.Name(), other.File)
			} else {
				hosts[h] = d
			}
		}
		all = append(all, v.errs...)
	}
	sortErrors(all)
	return all.err()
}

type validator struct {
	doc  *Document
	cel  *CELChecker
	pol  *Policy
	errs ErrorList
}

func (v *validator) fail(p, format string, args ...any) {
	v.errs = append(v.errs, &Error{
		File:   v.doc.File,
		Line:   v.doc.Line(p),
		Spec:   v.doc.Name(),
		Path:   p,
		Reason: fmt.Sprintf(format, args...),
	})
}

func (v *validator) present(p string) bool {
	_, ok := v.doc.lines[p]
	return ok
}

func (v *validator) required(p, value string) bool {
	if value == "" {
		v.fail(p, "is required")
		return false
	}
	return true
}

func (v *validator) document() {
	r := &v.doc.EdgeRoute
	if r.APIVersion != APIVersion {
		v.fail("apiVersion", "must be %q, got %q", APIVersion, r.APIVersion)
	}
	if r.Kind != Kind {
		v.fail("kind", "must be %q, got %q", Kind, r.Kind)
	}
	if v.required("metadata.name", r.Metadata.Name) && !isName(r.Metadata.Name) {
		v.fail("metadata.name", "%q must be lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit", r.Metadata.Name)
	}
	v.required("metadata.team", r.Metadata.Team)
	v.caps()

	s := &r.Spec
	if len(s.Hosts) == 0 {
		v.fail("spec.hosts", "at least one host is required")
	}
	seen := map[string]bool{}
	for i, h := range s.Hosts {
		p := joinIndex("spec.hosts", i)
		lh := strings.ToLower(h)
		switch {
		case !isHost(lh):
			v.fail(p, "%q is not a DNS name (a leading \"*.\" wildcard is allowed)", h)
		case seen[lh]:
			v.fail(p, "host %q is listed twice", h)
		}
		seen[lh] = true
	}
	v.unique("spec.nodeGroups", s.NodeGroups, "node group")
	if s.TLS != nil && v.required("spec.tls.certificate", s.TLS.Certificate) && !isName(s.TLS.Certificate) {
		v.fail("spec.tls.certificate", "%q must be lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit", s.TLS.Certificate)
	}

	upstreams := map[string]bool{}
	if len(s.Upstreams) == 0 {
		v.fail("spec.upstreams", "at least one upstream is required")
	}
	for i, u := range s.Upstreams {
		p := joinIndex("spec.upstreams", i)
		if v.name(p+".name", u.Name) {
			if upstreams[u.Name] {
				v.fail(p+".name", "duplicate upstream name %q", u.Name)
			}
			upstreams[u.Name] = true
		}
		v.upstream(p, u)
	}

	providers := v.identity(s.Identity)

	if len(s.Routes) == 0 {
		v.fail("spec.routes", "at least one route is required")
	}
	routes := map[string]bool{}
	for i, rt := range s.Routes {
		p := joinIndex("spec.routes", i)
		if v.name(p+".name", rt.Name) {
			if routes[rt.Name] {
				v.fail(p+".name", "duplicate route name %q", rt.Name)
			}
			routes[rt.Name] = true
		}
		v.route(p, rt, upstreams, providers)
	}
}

func (v *validator) name(p, n string) bool {
	if !v.required(p, n) {
		return false
	}
	if !isName(n) {
		v.fail(p, "%q must be lower-case letters, digits and '-', 1 to 63 characters", n)
		return false
	}
	return true
}

func (v *validator) unique(p string, items []string, what string) {
	var seen map[string]bool // for long lists; short ones are searched
	if len(items) > 16 {
		seen = make(map[string]bool, len(items))
	}
	for i, it := range items {
		var dup bool
		if seen != nil {
			dup = seen[it]
			seen[it] = true
		} else {
			dup = slices.Contains(items[:i], it)
		}
		switch {
		case it == "":
			v.fail(joinIndex(p, i), "empty %s", what)
		case dup:
			v.fail(joinIndex(p, i), "%s %q is listed twice", what, it)
		}
	}
}

func (v *validator) upstream(p string, u Upstream) {
	switch {
	case len(u.Endpoints) > 0 && u.DNS != "":
		v.fail(p, "set either endpoints or dns, not both")
	case len(u.Endpoints) == 0 && u.DNS == "":
		v.fail(p, "one of endpoints or dns is required")
	}
	for i, e := range u.Endpoints {
		if err := checkHostPort(e, true); err != nil {
			v.fail(joinIndex(p+".endpoints", i), "%v", err)
		} else if err := v.pol.Upstreams.check(e); err != nil {
			v.fail(joinIndex(p+".endpoints", i), "%v", err)
		}
	}
	if u.DNS != "" {
		if err := checkHostPort(u.DNS, false); err != nil {
			v.fail(p+".dns", "%v", err)
		} else if err := v.pol.Upstreams.check(u.DNS); err != nil {
			v.fail(p+".dns", "%v", err)
		}
	}
	if u.TLS != nil && u.TLS.SNI != "" && !isHost(u.TLS.SNI) {
		v.fail(p+".tls.sni", "%q is not a DNS name", u.TLS.SNI)
	}
	if u.TLS != nil && u.TLS.SNI == "" && len(u.Endpoints) > 0 {
		v.fail(p+".tls.sni", "is required with tls on static endpoints: it is the name the upstream's certificate is checked against")
	}
	if u.TLS != nil && u.TLS.SNI == "" && u.DNS != "" {
		if host, _, err := net.SplitHostPort(u.DNS); err == nil && net.ParseIP(host) != nil {
			v.fail(p+".tls.sni", "is required with tls when dns is an IP address: it is the name the upstream's certificate is checked against")
		}
	}
	if u.ConnectTimeout != nil && (u.ConnectTimeout.Duration <= 0 || u.ConnectTimeout.Duration > MaxClockSkew) {
		v.fail(p+".connectTimeout", "must be between 1ms and 5m, got %s", u.ConnectTimeout.Duration)
	}
}

func checkHostPort(s string, static bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q must be host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", s)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if static {
		return fmt.Errorf("%q: static endpoints must be IP:port (use dns for a name)", s)
	}
	if !isHost(host) || strings.HasPrefix(host, "*") {
		return fmt.Errorf("%q: %q is not a DNS name", s, host)
	}
	return nil
}

// identity validates the providers and returns their names and kinds.
func (v *validator) identity(id *Identity) map[string]string {
	providers := map[string]string{}
	if id == nil {
		return providers
	}
	add := func(p, name, kind string) {
		if !v.name(p, name) {
			return
		}
		if _, dup := providers[name]; dup {
			v.fail(p, "duplicate identity provider name %q", name)
			return
		}
		providers[name] = kind
	}
	v.identityCaps(id)
	for i, j := range id.JWT {
		p := joinIndex("spec.identity.jwt", i)
		add(p+".name", j.Name, "jwt")
		v.jwt(p, j)
	}
	hashes := map[string]string{}
	for i, k := range id.APIKeys {
		p := joinIndex("spec.identity.apiKeys", i)
		add(p+".name", k.Name, "apiKey")
		switch {
		case k.Header != "" && k.Query != "":
			v.fail(p, "set either header or query, not both")
		case k.Header == "" && k.Query == "":
			v.fail(p, "one of header or query is required")
		case k.Header != "" && !isHeaderName(k.Header):
			v.fail(p+".header", "%q is not a lower-case HTTP header name", k.Header)
		case k.Header != "" && reservedHeader(k.Header) != "":
			v.fail(p+".header", "%s: it cannot carry an API key", reservedHeader(k.Header))
		case k.Query != "" && !isQueryName(k.Query):
			v.fail(p+".query", "%q must be 1 to 64 letters, digits, '-', '_', '.' or '~' (a query parameter name needing no percent-encoding)", k.Query)
		}
		v.bindLabels(p+".bindLabels", k.BindLabels)
		ids := map[string]bool{}
		for ki, key := range k.Keys {
			kp := joinIndex(p+".keys", ki)
			for _, problem := range CheckLabels(key.Labels) {
				v.fail(kp+".labels", "%s", problem)
			}
			if v.required(kp+".id", key.ID) {
				if ids[key.ID] {
					v.fail(kp+".id", "duplicate key id %q", key.ID)
				}
				ids[key.ID] = true
			}
			if v.required(kp+".sha256", key.SHA256) {
				switch {
				case !isHex64(key.SHA256):
					v.fail(kp+".sha256", "must be 64 lower-case hex digits (the SHA-256 of the key), never the key itself")
				case hashes[key.SHA256] != "":
					v.fail(kp+".sha256", "the same key hash is already used by key %q", hashes[key.SHA256])
				default:
					hashes[key.SHA256] = key.ID
				}
			}
		}
	}
	for i, m := range id.MTLS {
		p := joinIndex("spec.identity.mtls", i)
		add(p+".name", m.Name, "mtls")
		if len(m.Principals) == 0 {
			v.fail(p+".principals", "at least one principal glob is required")
		}
		for pi, g := range m.Principals {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				v.fail(joinIndex(p+".principals", pi), "%q is not a valid glob", g)
			}
		}
	}
	return providers
}

func (v *validator) jwt(p string, j JWTProvider) {
	if v.required(p+".issuer", j.Issuer) {
		if u, err := url.Parse(j.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
			v.fail(p+".issuer", "%q must be an absolute URL", j.Issuer)
		}
	}
	if len(j.Audiences) == 0 {
		v.fail(p+".audiences", "at least one audience is required: tokens are always checked against it")
	}
	v.unique(p+".audiences", j.Audiences, "audience")
	switch {
	case j.JWKSURI != "" && j.JWKS != "":
		v.fail(p, "set either jwksUri or jwks, not both")
	case j.JWKSURI == "" && j.JWKS == "":
		v.fail(p, "keys are required: set jwksUri or jwks")
	case j.JWKSURI != "":
		if err := checkJWKSURI(j.JWKSURI); err != nil {
			v.fail(p+".jwksUri", "%v", err)
		}
	default:
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal([]byte(j.JWKS), &set); err != nil {
			v.fail(p+".jwks", "inline JWKS is not valid JSON: %v", err)
		} else if len(set.Keys) == 0 {
			v.fail(p+".jwks", "inline JWKS has no keys")
		}
	}
	for i, a := range j.Algorithms {
		ap := joinIndex(p+".algorithms", i)
		switch {
		case strings.EqualFold(a, "none"):
			v.fail(ap, "algorithm \"none\" is never allowed: unsigned tokens prove nothing")
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			v.fail(ap, "HMAC algorithm %q is not allowed: JWT providers verify with public keys only", a)
		case !allowedJWTAlgs[a]:
			v.fail(ap, "unknown algorithm %q: want one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA", a)
		}
	}
	if j.ClockSkew != nil && (j.ClockSkew.Duration < 0 || j.ClockSkew.Duration > MaxClockSkew) {
		v.fail(p+".clockSkew", "must be between 0s and 5m, got %s", j.ClockSkew.Duration)
	}
	for claim, header := range j.ForwardClaims {
		switch {
		case !isHeaderName(header):
			v.fail(p+".forwardClaims."+claim, "%q is not a lower-case HTTP header name", header)
		case forwardReserved[header] || strings.HasPrefix(header, "x-envoy-") || strings.HasPrefix(header, "x-forwarded-"):
			v.fail(p+".forwardClaims."+claim, "%q cannot carry a claim: Envoy or HTTP reserves this header, and every route removes a forwarded header from the client's request before authentication", header)
		default:
			if why := reservedHeader(header); why != "" {
				v.fail(p+".forwardClaims."+claim, "%s: a claim may not be forwarded in it", why)
			}
		}
	}
}

// MaxIdentityProviders caps the identity providers (JWT, API-key and mTLS
// together) of one spec: every authz sidecar of the fleet builds, and for
// JWT fetches and refreshes, each of them.
const MaxIdentityProviders = 8

// forwardReserved are headers a forwardClaims entry may not name: the
// credential headers (the forwarded header is removed from the client's
// request before authentication), and headers HTTP or Envoy own.
var forwardReserved = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "host": true,
	"connection": true, "content-length": true, "content-type": true, "content-encoding": true,
	"transfer-encoding": true, "te": true, "trailer": true, "upgrade": true, "keep-alive": true,
	"proxy-connection": true, "expect": true, "x-request-id": true, "via": true, "forwarded": true,
}

// identityCaps refuses more than MaxIdentityProviders providers (naming
// the first one over the cap) and a forwarded claim header that is also
// an API-key header of the spec (the client's key would be removed
// before it is checked).
func (v *validator) identityCaps(id *Identity) {
	n := 0
	over := func(p string) {
		if n++; n == MaxIdentityProviders+1 {
			v.fail(p, "identity provider %d of %d: at most %d per spec", n, len(id.JWT)+len(id.APIKeys)+len(id.MTLS), MaxIdentityProviders)
		}
	}
	for i := range id.JWT {
		over(joinIndex("spec.identity.jwt", i))
	}
	keyHeaders := map[string]string{}
	for i, k := range id.APIKeys {
		over(joinIndex("spec.identity.apiKeys", i))
		if k.Header != "" {
			keyHeaders[strings.ToLower(k.Header)] = joinIndex("spec.identity.apiKeys", i)
		}
	}
	for i := range id.MTLS {
		over(joinIndex("spec.identity.mtls", i))
	}
	for i, j := range id.JWT {
		for claim, header := range j.ForwardClaims {
			if kp, ok := keyHeaders[strings.ToLower(header)]; ok {
				v.fail(joinIndex("spec.identity.jwt", i)+".forwardClaims."+claim, "%q is the API-key header of %s: a forwarded header is removed from the client's request before authentication", header, kp)
			}
		}
	}
}

// maxJWKSURILen bounds a jwksUri.
const maxJWKSURILen = 2048

// checkJWKSURI checks a jwksUri without echoing it whole: a query string
// may carry a token, so errors show scheme, host and path only.
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("not an absolute http(s) URL")
	}
	shown := u.Scheme + "://" + u.Host + u.Path
	switch {
	case len(s) > maxJWKSURILen:
		return fmt.Errorf("%q...: longer than %d bytes", shown[:min(len(shown), 64)], maxJWKSURILen)
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL are not allowed", shown)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q: a fragment is not allowed", shown)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: scheme must be https", shown)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	ip := net.ParseIP(host)
	if ip != nil && (ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast()) {
		return fmt.Errorf("%q: %s is not an address a JWKS is served from (unspecified, multicast or link-local)", shown, host)
	}
	if u.Scheme == "http" && !(host == "localhost" || ip != nil && ip.IsLoopback()) {
		return fmt.Errorf("%q must use https (plain http only for loopback, and the authz sidecar must allow it with --jwks-allow)", shown)
	}
	return nil
}

func (v *validator) route(p string, rt Route, upstreams map[string]bool, providers map[string]string) {
	m := rt.Match
	set := 0
	for _, s := range []string{m.Path, m.PathPrefix, m.PathRegex} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		v.fail(p+".match", "exactly one of path, pathPrefix or pathRegex is required")
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.fail(p+".match.path", "%q must start with /", m.Path)
	} else if m.Path != "" {
		v.matchText(p+".match.path", m.Path, true)
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		v.fail(p+".match.pathPrefix", "%q must start with /", m.PathPrefix)
	} else if m.PathPrefix != "" {
		v.matchText(p+".match.pathPrefix", m.PathPrefix, true)
	}
	if m.PathRegex != "" && len(m.PathRegex) > MaxMatchBytes {
		v.matchText(p+".match.pathRegex", m.PathRegex, false)
	} else if m.PathRegex != "" {
		if err := CheckRegexp(m.PathRegex); err != nil {
			v.fail(p+".match.pathRegex", "invalid regex: %v", err)
		}
	}
	for i, meth := range m.Methods {
		mp := joinIndex(p+".match.methods", i)
		if !isUpperWord(meth) || !knownMethods[meth] {
			v.fail(mp, "unknown HTTP method %q (upper case, e.g. GET)", meth)
		}
	}
	v.unique(p+".match.methods", m.Methods, "method")
	for i, h := range m.Headers {
		hp := joinIndex(p+".match.headers", i)
		if v.required(hp+".name", h.Name) && !isHeaderName(h.Name) {
			v.fail(hp+".name", "%q is not a lower-case HTTP header name", h.Name)
		}
		n := 0
		for _, s := range []string{h.Exact, h.Prefix, h.Regex} {
			if s != "" {
				n++
			}
		}
		if h.Present != nil {
			n++
		}
		if n != 1 {
			v.fail(hp, "exactly one of exact, prefix, regex or present is required")
		}
		if h.Exact != "" {
			v.matchText(hp+".exact", h.Exact, false)
		}
		if h.Prefix != "" {
			v.matchText(hp+".prefix", h.Prefix, false)
		}
		if h.Regex != "" && len(h.Regex) > MaxMatchBytes {
			v.matchText(hp+".regex", h.Regex, false)
		} else if h.Regex != "" {
			if err := CheckRegexp(h.Regex); err != nil {
				v.fail(hp+".regex", "invalid regex: %v", err)
			}
		}
	}
	if v.required(p+".upstream", rt.Upstream) && !upstreams[rt.Upstream] {
		v.fail(p+".upstream", "unknown upstream %q: not declared in spec.upstreams", rt.Upstream)
	}
	if rt.Timeout != nil && rt.Timeout.Duration <= 0 {
		v.fail(p+".timeout", "must be greater than 0")
	} else if rt.Timeout != nil && rt.Timeout.Duration > MaxRouteTimeout {
		v.fail(p+".timeout", "must be at most %s, got %s: a longer request holds a shared edge connection too long", MaxRouteTimeout, rt.Timeout.Duration)
	}
	if rt.RewritePrefix != "" && !strings.HasPrefix(rt.RewritePrefix, "/") {
		v.fail(p+".rewritePrefix", "%q must start with /", rt.RewritePrefix)
	} else if rt.RewritePrefix != "" {
		v.matchText(p+".rewritePrefix", rt.RewritePrefix, false)
	}
	mode := rt.AuthMode()
	if a := rt.Auth; a != nil {
		v.auth(p+".auth", a, providers)
	}
	v.rateLimits(p, rt.RateLimits, mode)
	if al := rt.AccessLog; al != nil {
		for i, h := range al.Headers {
			if !isHeaderName(h) {
				v.fail(joinIndex(p+".accessLog.headers", i), "%q is not a lower-case HTTP header name", h)
			}
		}
		for i, h := range al.Redact {
			if !isHeaderName(h) {
				v.fail(joinIndex(p+".accessLog.redact", i), "%q is not a lower-case HTTP header name", h)
			}
		}
		if al.SampleRate != nil && (*al.SampleRate < 0 || *al.SampleRate > 1) {
			v.fail(p+".accessLog.sampleRate", "must be between 0 and 1, got %v", *al.SampleRate)
		}
	}
}

func (v *validator) auth(p string, a *Auth, providers map[string]string) {
	switch a.Mode {
	case "", ModeEnforce, ModeShadow:
		if len(a.AnyOf) == 0 {
			mode := a.Mode
			if mode == "" {
				mode = ModeEnforce
			}
			v.fail(p+".anyOf", "mode %s needs at least one identity provider in anyOf", mode)
		}
	case ModePublic:
		if len(a.AnyOf) > 0 || len(a.Rules) > 0 {
			v.fail(p+".mode", "mode public takes no anyOf or rules")
		}
	default:
		v.fail(p+".mode", "unknown mode %q: want enforce, shadow or public", a.Mode)
	}
	for i, name := range a.AnyOf {
		if _, ok := providers[name]; !ok {
			v.fail(joinIndex(p+".anyOf", i), "unknown identity provider %q: not declared in spec.identity", name)
		}
	}
	v.unique(p+".anyOf", a.AnyOf, "provider")
	for i, r := range a.Rules {
		rp := joinIndex(p+".rules", i)
		if !v.present(rp + ".allow") {
			v.fail(rp+".allow", "is required (true or false)")
		}
		v.unique(rp+".scopes", r.Scopes, "scope")
		if r.When != "" {
			if err := v.cel.Check(r.When); err != nil {
				v.fail(rp+".when", "%v", err)
			}
		}
	}
}

func (v *validator) rateLimits(p string, limits []RateLimit, mode string) {
	names := map[string]bool{}
	for i, l := range limits {
		lp := joinIndex(p+".rateLimits", i)
		if v.name(lp+".name", l.Name) {
			if names[l.Name] {
				v.fail(lp+".name", "duplicate rate limit name %q", l.Name)
			}
			names[l.Name] = true
		}
		if !v.present(lp + ".by") {
			v.fail(lp+".by", "is required ([] limits the route as a whole)")
		}
		seen := map[string]bool{}
		for bi, b := range l.By {
			bp := joinIndex(lp+".by", bi)
			src, err := ParseSource(b)
			if err != nil {
				v.fail(bp, "%v", err)
				continue
			}
			if seen[src.Key()] {
				v.fail(bp, "source %q is listed twice", b)
			}
			seen[src.Key()] = true
			if mode == ModePublic && (src.Kind == SourceIdentitySubject || src.Kind == SourceIdentityClaim || src.Kind == SourceAPIKeyID) {
				v.fail(bp, "source %q needs an authenticated caller, but the route is public: the limit would never count", b)
			}
			if err := CheckSourceCredential(src, v.doc.EdgeRoute.Spec.Identity); err != nil {
				v.fail(bp, "%v", err)
			}
		}
		if err := CheckOnFailure(l.OnFailure); err != nil {
			v.fail(lp+".onFailure", "%v", err)
		}
		if v.required(lp+".limit", l.Limit) {
			if _, err := ParseLimit(l.Limit); err != nil {
				v.fail(lp+".limit", "%v", err)
			}
		}
		switch l.Algorithm {
		case "", AlgorithmFixedWindow, AlgorithmSlidingWindow, AlgorithmTokenBucket:
		default:
			v.fail(lp+".algorithm", "unknown algorithm %q: want fixed-window, sliding-window or token-bucket", l.Algorithm)
		}
		if v.present(lp+".burst") && l.Algorithm != AlgorithmTokenBucket {
			v.fail(lp+".burst", "burst applies to algorithm token-bucket only")
		}
		switch l.Scope {
		case "", ScopeShared, ScopeLocal:
		default:
			v.fail(lp+".scope", "unknown scope %q: want shared or local", l.Scope)
		}
	}
}
