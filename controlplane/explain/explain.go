// Package explain answers "what happens to this request?" offline: which
// virtual host and route of the compiled route table match it (evaluated
// on the very RouteConfiguration the control plane serves, with Envoy's
// matching rules), what auth the route requires, which rate-limit
// descriptors Envoy would send for it, and, given an authz engine, the
// authz decision. It must not import xds, snapshot or the sidecars.
package explain

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// Request is the request to explain. Header names are lower case.
type Request struct {
	Method   string
	URL      string // absolute: https://host/path?query
	Headers  map[string]string
	ClientIP string // default 127.0.0.1
}

// ParseRequest reads "METHOD URL" and "name: value" header lines.
func ParseRequest(line string, headers []string) (Request, error) {
	method, rawURL, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return Request{}, fmt.Errorf("request %q: want \"METHOD URL\", e.g. \"GET https://petstore.example.com/pets\"", line)
	}
	r := Request{Method: strings.ToUpper(method), URL: strings.TrimSpace(rawURL), Headers: map[string]string{}}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return Request{}, fmt.Errorf("header %q: want \"name: value\"", h)
		}
		r.Headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
	return r, nil
}

// Result is the explanation.
type Result struct {
	Host        string       `json:"host"`
	Path        string       `json:"path"`
	VirtualHost string       `json:"virtual_host,omitempty"` // the spec
	Route       string       `json:"route,omitempty"`        // "<spec>/<route>"; "" = no match (Envoy answers 404)
	Cluster     string       `json:"cluster,omitempty"`
	Rewrite     string       `json:"prefix_rewrite,omitempty"`
	Timeout     string       `json:"timeout,omitempty"`
	Auth        *Auth        `json:"auth,omitempty"`
	RateLimits  []Descriptor `json:"rate_limits,omitempty"`
	Decision    *Decision    `json:"decision,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
}

// Auth is the route's auth requirement.
type Auth struct {
	Mode              string            `json:"mode"` // enforce | shadow | public
	ExtAuthz          bool              `json:"ext_authz"`
	Providers         []string          `json:"providers,omitempty"`
	Rules             []authz.Rule      `json:"rules,omitempty"`
	ContextExtensions map[string]string `json:"context_extensions,omitempty"`
}

// Descriptor is one rate_limits entry evaluated for the request.
type Descriptor struct {
	Limit   string     `json:"limit"`
	Entries [][]string `json:"entries"` // (key, value) pairs in order
	// Sent is false when a source value is missing: Envoy then does not
	// ask about this limit at all.
	Sent      bool   `json:"sent"`
	Why       string `json:"why,omitempty"`
	Requests  uint32 `json:"requests,omitempty"`
	Window    string `json:"window,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	Scope     string `json:"scope,omitempty"`
	Shadow    bool   `json:"shadow,omitempty"`
}

// Decision is the authz engine's answer.
type Decision struct {
	Allow    bool              `json:"allow"`
	Status   int               `json:"status"`
	Reason   string            `json:"reason"`
	Code     string            `json:"reason_code"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Explain evaluates req against a node group's compiled config. engine,
// when not nil, is loaded with the matched spec's policy and decides.
func Explain(ctx context.Context, res *compile.Result, group string, req Request, engine *authz.Engine) (*Result, error) {
	u, err := url.Parse(req.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("URL %q: want an absolute URL such as https://petstore.example.com/pets", req.URL)
	}
	if req.ClientIP == "" {
		req.ClientIP = "127.0.0.1"
	}
	resources, _, err := res.Resources(group)
	if err != nil {
		return nil, err
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	out := &Result{Host: strings.ToLower(u.Hostname()), Path: path}
	rc, err := routeTable(resources, group, u.Host)
	if err != nil {
		return nil, err
	}
	if rc == nil {
		out.Notes = append(out.Notes, fmt.Sprintf("no route scope has the key %q (scope keys match the :authority host exactly, case included): Envoy answers 404", envoy.ScopeKey(u.Host)))
		return out, nil
	}
	headers := map[string]string{":method": req.Method, ":path": u.RequestURI(), ":authority": u.Host}
	for k, v := range req.Headers {
		headers[k] = v
	}

	vh := matchVirtualHost(rc.GetVirtualHosts(), out.Host)
	if vh == nil {
		out.Notes = append(out.Notes, "no virtual host serves this host: Envoy answers 404")
		return out, nil
	}
	out.VirtualHost = vh.GetName()
	var rt *routev3.Route
	for _, r := range vh.GetRoutes() {
		if routeMatches(r.GetMatch(), path, headers) {
			rt = r
			break
		}
	}
	if rt == nil {
		out.Notes = append(out.Notes, fmt.Sprintf("no route of %s matches %s %s: Envoy answers 404", vh.GetName(), req.Method, path))
		return out, nil
	}
	out.Route = rt.GetName()
	out.Cluster = rt.GetRoute().GetCluster()
	out.Rewrite = rt.GetRoute().GetPrefixRewrite()
	out.Timeout = rt.GetRoute().GetTimeout().AsDuration().String()

	var spec *compile.Spec
	for _, s := range res.Published() {
		if s.Name == vh.GetName() {
			spec = s
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("virtual host %s has no compiled spec", vh.GetName())
	}
	out.Auth = authOf(rc, rt, spec)

	var dec *authz.Decision
	if engine != nil && out.Auth.ExtAuthz {
		if err := engine.Update([]*authz.SpecPolicy{spec.AuthzPolicy()}); err != nil {
			return nil, fmt.Errorf("loading %s's policy into the authz engine: %w", spec.Name, err)
		}
		d := engine.Decide(ctx, authz.Request{
			RouteID: out.Auth.ContextExtensions[contract.ContextRoute], Method: req.Method, Path: path,
			Query: u.RawQuery, Host: out.Host, Headers: req.Headers, SourceIP: req.ClientIP,
		})
		dec = &d
		out.Decision = &Decision{Allow: d.Allow, Status: d.Status, Reason: d.Reason, Code: d.ReasonCode, Metadata: metadataMap(d.Metadata)}
	} else if !out.Auth.ExtAuthz {
		out.Notes = append(out.Notes, "public route: ext_authz is disabled, no identity is established")
	} else {
		out.Notes = append(out.Notes, "no credentials given (-H authorization: ...): descriptors from the identity are shown unresolved")
	}
	out.RateLimits = descriptors(rt, spec.RateLimitRules(), headers, req.ClientIP, dec)
	return out, nil
}

func metadataMap(m authz.Metadata) map[string]string {
	out := map[string]string{}
	add := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	add("subject", m.Subject)
	add("provider", m.Provider)
	add("kind", m.Kind)
	add("apikey_id", m.APIKeyID)
	add("rule", m.Rule)
	add("decision", m.Decision)
	for k, v := range m.Claims {
		add("claims."+k, v)
	}
	return out
}

// matchVirtualHost follows Envoy: exact domain, then the longest suffix
// wildcard ("*.example.com"), then the longest prefix wildcard, then "*".
func matchVirtualHost(vhs []*routev3.VirtualHost, host string) *routev3.VirtualHost {
	var best *routev3.VirtualHost
	bestRank, bestLen := -1, -1
	for _, vh := range vhs {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			rank, n := -1, len(d)
			switch {
			case d == host:
				rank = 3
			case strings.HasPrefix(d, "*") && d != "*" && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 2
			case strings.HasSuffix(d, "*") && d != "*" && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank = 1
			case d == "*":
				rank = 0
			}
			if rank > bestRank || (rank == bestRank && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	if bestRank < 0 {
		return nil
	}
	return best
}

func routeMatches(m *routev3.RouteMatch, path string, headers map[string]string) bool {
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(path, p.Prefix) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if path != p.Path {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !fullMatch(p.SafeRegex.GetRegex(), path) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.GetHeaders() {
		v, present := headers[h.GetName()]
		ok := false
		switch s := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			ok = present == s.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			ok = present && stringMatch(s.StringMatch, v)
		}
		if ok == h.GetInvertMatch() {
			return false
		}
	}
	return true
}

func stringMatch(sm *matcherv3.StringMatcher, v string) bool {
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, p.Prefix)
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

// fullMatch is RE2 matching the whole value, as Envoy's safe_regex does.
func fullMatch(re, v string) bool {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	return err == nil && r.MatchString(v)
}

func authOf(rc *routev3.RouteConfiguration, rt *routev3.Route, s *compile.Spec) *Auth {
	a := &Auth{Mode: "public", ContextExtensions: map[string]string{}}
	// Envoy merges context extensions from the table down to the route.
	for _, cfg := range []*extauthzv3.ExtAuthzPerRoute{perRoute(rc.GetTypedPerFilterConfig()), perRoute(rt.GetTypedPerFilterConfig())} {
		if cfg == nil {
			continue
		}
		a.ExtAuthz = !cfg.GetDisabled()
		for k, v := range cfg.GetCheckSettings().GetContextExtensions() {
			a.ContextExtensions[k] = v
		}
	}
	if !a.ExtAuthz {
		a.ContextExtensions = nil
	}
	if p := s.AuthzPolicy(); p != nil {
		for _, rp := range p.Routes {
			if rp.ID == rt.GetName() {
				a.Mode, a.Providers, a.Rules = rp.Mode, rp.AnyOf, rp.Rules
			}
		}
	}
	return a
}

func perRoute(m map[string]*anypb.Any) *extauthzv3.ExtAuthzPerRoute {
	a := m[contract.ExtAuthzFilter]
	if a == nil {
		return nil
	}
	out := &extauthzv3.ExtAuthzPerRoute{}
	if a.UnmarshalTo(out) != nil {
		return nil
	}
	return out
}

// descriptors evaluates each rate_limits entry the way Envoy builds it.
func descriptors(rt *routev3.Route, rules *ratelimit.SpecRules, headers map[string]string, clientIP string, dec *authz.Decision) []Descriptor {
	var out []Descriptor
	for _, rl := range rt.GetRoute().GetRateLimits() {
		d := Descriptor{Sent: true}
		for _, act := range rl.GetActions() {
			var key, value, missing string
			switch {
			case act.GetGenericKey() != nil:
				key, value = act.GetGenericKey().GetDescriptorKey(), act.GetGenericKey().GetDescriptorValue()
				if key == "limit" {
					d.Limit = value
				}
			case act.GetRemoteAddress() != nil:
				key, value = "remote_address", clientIP
			case act.GetMaskedRemoteAddress() != nil:
				m := act.GetMaskedRemoteAddress()
				key, value = "masked_remote_address", ratelimit.MaskedRemoteAddress(clientIP, int(m.GetV4PrefixMaskLen().GetValue()), int(m.GetV6PrefixMaskLen().GetValue()))
			case act.GetRequestHeaders() != nil:
				rh := act.GetRequestHeaders()
				key = rh.GetDescriptorKey()
				v, ok := headers[rh.GetHeaderName()]
				if rh.GetHeaderName() == ":path" {
					v, ok = headers[":path"], true
				}
				if !ok {
					missing = "request header " + rh.GetHeaderName() + " is absent"
				}
				value = v
			case act.GetMetadata() != nil:
				md := act.GetMetadata()
				key = md.GetDescriptorKey()
				var path []string
				for _, seg := range md.GetMetadataKey().GetPath() {
					path = append(path, seg.GetKey())
				}
				mdKey := strings.Join(path, ".")
				if dec == nil {
					value = "<" + mdKey + " from ext_authz>"
				} else if v := metadataMap(dec.Metadata)[mdKey]; v != "" {
					value = v
				} else {
					missing = "ext_authz set no " + mdKey + " (anonymous or denied caller)"
				}
			}
			if missing != "" && d.Sent {
				d.Sent, d.Why = false, missing+": this limit is not counted"
			}
			d.Entries = append(d.Entries, []string{key, value})
		}
		if rules != nil {
			for _, l := range rules.Limits {
				if l.Route == rt.GetName() && l.Name == d.Limit {
					d.Requests, d.Window, d.Algorithm, d.Scope, d.Shadow = l.Requests, l.Window().String(), l.Algorithm, l.Scope, l.Shadow
				}
			}
		}
		out = append(out, d)
	}
	return out
}

// routeTable is the route table Envoy uses for a request to authority: the
// group's one table, or in the scoped route layout the table of the scope
// whose key is the authority's host (nil when no scope has it).
func routeTable(resources compile.Resources, group, authority string) (*routev3.RouteConfiguration, error) {
	rcs := resources[resourcev3.RouteType]
	scopes := resources[resourcev3.ScopedRouteType]
	if len(scopes) == 0 {
		if len(rcs) != 1 {
			return nil, fmt.Errorf("node group %s has %d route tables and no scopes, want 1 table", group, len(rcs))
		}
		return rcs[0].(*routev3.RouteConfiguration), nil
	}
	key := envoy.ScopeKey(authority)
	for _, r := range scopes {
		sc := r.(*routev3.ScopedRouteConfiguration)
		if f := sc.GetKey().GetFragments(); len(f) != 1 || f[0].GetStringKey() != key {
			continue
		}
		for _, t := range rcs {
			if rc := t.(*routev3.RouteConfiguration); rc.GetName() == sc.GetRouteConfigurationName() {
				return rc, nil
			}
		}
		return nil, fmt.Errorf("node group %s: scope %s names route table %s, which does not exist", group, sc.GetName(), sc.GetRouteConfigurationName())
	}
	return nil, nil
}
