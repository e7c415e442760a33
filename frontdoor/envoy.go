package frontdoor

// This file plays Envoy honestly: it takes the Listener and
// RouteConfiguration a node received over ADS and derives, from them alone,
// what Envoy would do with a request — which route it matches, the
// ext_authz CheckRequest (with the route's context extensions), the rate
// limit descriptors (from the route's rate_limits actions and the Check's
// dynamic metadata), and the ALS entry. It knows nothing about specs.

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	headerMutationFilterName = "envoy.filters.http.header_mutation"
	rateLimitFilterName      = "envoy.filters.http.ratelimit"
	routerFilterName         = "envoy.filters.http.router"
)

// Request is one request as it reaches Envoy's HCM.
type Request struct {
	Method, Host, Path string            // Path with its query
	Headers            map[string]string // lower-case names, no pseudo-headers
	ClientIP           string            // the downstream peer's address
	Scheme             string            // "https" when empty
	Body               []byte            // forwarded to the upstream
}

func (r Request) header(name string) (string, bool) {
	switch name {
	case ":method":
		return r.Method, true
	case ":path":
		return r.Path, true
	case ":authority", "host":
		return r.Host, true
	}
	v, ok := r.Headers[name]
	return v, ok
}

// HCMOf returns the HTTP connection manager of a listener's first chain.
func HCMOf(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			h := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(h); err == nil {
				return h, nil
			}
		}
	}
	return nil, fmt.Errorf("listener %s has no HTTP connection manager", l.GetName())
}

// SelectVirtualHost picks the virtual host as Envoy does: exact domain,
// then the longest suffix wildcard, then "*".
func SelectVirtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	var best *routev3.VirtualHost
	bestLen := -1
	var star *routev3.VirtualHost
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == host:
				return vh
			case d == "*":
				star = vh
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				if len(d) > bestLen {
					best, bestLen = vh, len(d)
				}
			}
		}
	}
	if best != nil {
		return best
	}
	return star
}

func stringMatch(sm *matcherv3.StringMatcher, v string) (bool, error) {
	if sm.GetIgnoreCase() {
		if _, re := sm.GetMatchPattern().(*matcherv3.StringMatcher_SafeRegex); !re {
			lower := proto.Clone(sm).(*matcherv3.StringMatcher)
			switch p := lower.GetMatchPattern().(type) {
			case *matcherv3.StringMatcher_Exact:
				p.Exact = strings.ToLower(p.Exact)
			case *matcherv3.StringMatcher_Prefix:
				p.Prefix = strings.ToLower(p.Prefix)
			case *matcherv3.StringMatcher_Suffix:
				p.Suffix = strings.ToLower(p.Suffix)
			case *matcherv3.StringMatcher_Contains:
				p.Contains = strings.ToLower(p.Contains)
			}
			lower.IgnoreCase = false
			return stringMatch(lower, strings.ToLower(v))
		}
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact, nil
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, p.Prefix), nil
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, p.Suffix), nil
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, p.Contains), nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return false, err
		}
		return re.MatchString(v), nil
	}
	return false, fmt.Errorf("unsupported string matcher %T", sm.GetMatchPattern())
}

func headerMatches(hm *routev3.HeaderMatcher, r Request) (bool, error) {
	v, present := r.header(hm.GetName())
	var ok bool
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		ok = present == s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		if !present {
			ok = false
			break
		}
		var err error
		if ok, err = stringMatch(s.StringMatch, v); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("unsupported header matcher %T", hm.GetHeaderMatchSpecifier())
	}
	return ok != hm.GetInvertMatch(), nil
}

// MatchRoute returns the first route of the virtual host that matches.
func MatchRoute(rc *routev3.RouteConfiguration, r Request) (*routev3.VirtualHost, *routev3.Route, error) {
	vh := SelectVirtualHost(rc, r.Host)
	if vh == nil {
		return nil, nil, nil
	}
	path, _, _ := strings.Cut(r.Path, "?")
	for _, rt := range vh.GetRoutes() {
		m := rt.GetMatch()
		var ok bool
		switch p := m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Prefix:
			ok = strings.HasPrefix(path, p.Prefix)
		case *routev3.RouteMatch_Path:
			ok = path == p.Path
		case *routev3.RouteMatch_SafeRegex:
			re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
			if err != nil {
				return nil, nil, err
			}
			ok = re.MatchString(path)
		default:
			return nil, nil, fmt.Errorf("route %s: unsupported path specifier %T", rt.GetName(), m.GetPathSpecifier())
		}
		for _, hm := range m.GetHeaders() {
			if !ok {
				break
			}
			var err error
			if ok, err = headerMatches(hm, r); err != nil {
				return nil, nil, err
			}
		}
		if ok {
			return vh, rt, nil
		}
	}
	return vh, nil, nil
}

// authzSettings merges the ext_authz per-filter config of the route table,
// the virtual host and the route, most specific last, as Envoy does.
// disabled reports an ext_authz that is switched off for the route.
func authzSettings(rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, rt *routev3.Route) (ctxExt map[string]string, disabled bool, err error) {
	ctxExt = map[string]string{}
	for _, cfgs := range []map[string]*anypb.Any{rc.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rt.GetTypedPerFilterConfig()} {
		a, ok := cfgs[contract.ExtAuthzFilter]
		if !ok {
			continue
		}
		per := &extauthzv3.ExtAuthzPerRoute{}
		if err := a.UnmarshalTo(per); err != nil {
			return nil, false, err
		}
		if per.GetDisabled() {
			disabled = true
			continue
		}
		disabled = false
		for k, v := range per.GetCheckSettings().GetContextExtensions() {
			ctxExt[k] = v
		}
	}
	return ctxExt, disabled, nil
}

// applyHeaderMutation plays Envoy's header-mutation filter on a request's
// headers (lower-case names, no pseudo-headers): the filter's own request
// mutations first, then the per-route ones, by default from the most
// specific level (route) to the least (route table), or the other way
// round with most_specific_header_mutations_wins.
func applyHeaderMutation(f *hcmv3.HttpFilter, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, rt *routev3.Route, headers map[string]string) error {
	cfg := &headermutationv3.HeaderMutation{}
	if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return fmt.Errorf("header mutation filter: %w", err)
	}
	levels := []map[string]*anypb.Any{rt.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rc.GetTypedPerFilterConfig()}
	if cfg.GetMostSpecificHeaderMutationsWins() {
		levels[0], levels[2] = levels[2], levels[0]
	}
	muts := [][]*mutationrulesv3.HeaderMutation{cfg.GetMutations().GetRequestMutations()}
	for _, l := range levels {
		a, ok := l[headerMutationFilterName]
		if !ok {
			continue
		}
		per := &headermutationv3.HeaderMutationPerRoute{}
		if err := a.UnmarshalTo(per); err != nil {
			return fmt.Errorf("header mutation per-route config: %w", err)
		}
		muts = append(muts, per.GetMutations().GetRequestMutations())
	}
	for _, ms := range muts {
		for _, m := range ms {
			switch a := m.GetAction().(type) {
			case *mutationrulesv3.HeaderMutation_Remove:
				delete(headers, strings.ToLower(a.Remove))
			case *mutationrulesv3.HeaderMutation_RemoveOnMatch_:
				for name := range headers {
					ok, err := stringMatch(a.RemoveOnMatch.GetKeyMatcher(), name)
					if err != nil {
						return err
					}
					if ok {
						delete(headers, name)
					}
				}
			default:
				return fmt.Errorf("header mutation %T: not played by this stand-in", m.GetAction())
			}
		}
	}
	return nil
}

// descriptors builds the rate-limit descriptors of a route from its
// rate_limits actions. authzMeta is the ext_authz filter's dynamic
// metadata. An action that cannot produce its entry drops the whole
// descriptor (skip_if_absent false), as Envoy does.
func descriptors(rt *routev3.Route, r Request, authzMeta *structpb.Struct) []*rlcommonv3.RateLimitDescriptor {
	var out []*rlcommonv3.RateLimitDescriptor
	for _, rl := range rt.GetRoute().GetRateLimits() {
		d := &rlcommonv3.RateLimitDescriptor{}
		complete := true
		for _, a := range rl.GetActions() {
			var key, value string
			switch s := a.GetActionSpecifier().(type) {
			case *routev3.RateLimit_Action_GenericKey_:
				key, value = s.GenericKey.GetDescriptorKey(), s.GenericKey.GetDescriptorValue()
				if key == "" {
					key = "generic_key"
				}
			case *routev3.RateLimit_Action_RemoteAddress_:
				key, value = "remote_address", r.ClientIP
			case *routev3.RateLimit_Action_MaskedRemoteAddress_:
				// Envoy's defaults: /32 for IPv4, /128 for IPv6.
				v4, v6 := 32, 128
				if m := s.MaskedRemoteAddress.GetV4PrefixMaskLen(); m != nil {
					v4 = int(m.GetValue())
				}
				if m := s.MaskedRemoteAddress.GetV6PrefixMaskLen(); m != nil {
					v6 = int(m.GetValue())
				}
				key, value = "masked_remote_address", maskedAddress(r.ClientIP, v4, v6)
			case *routev3.RateLimit_Action_RequestHeaders_:
				v, ok := r.header(s.RequestHeaders.GetHeaderName())
				if !ok {
					if s.RequestHeaders.GetSkipIfAbsent() {
						continue
					}
					complete = false
				}
				key, value = s.RequestHeaders.GetDescriptorKey(), v
			case *routev3.RateLimit_Action_Metadata:
				md := s.Metadata.GetMetadataKey()
				var v *structpb.Value
				if md.GetKey() == contract.ExtAuthzNamespace && authzMeta != nil {
					v = structpb.NewStructValue(authzMeta)
					for _, seg := range md.GetPath() {
						v = v.GetStructValue().GetFields()[seg.GetKey()]
						if v == nil {
							break
						}
					}
				}
				if v == nil || v.GetStringValue() == "" {
					if s.Metadata.GetDefaultValue() != "" {
						key, value = s.Metadata.GetDescriptorKey(), s.Metadata.GetDefaultValue()
						break
					}
					complete = false
				}
				key, value = s.Metadata.GetDescriptorKey(), v.GetStringValue()
			default:
				complete = false
			}
			if !complete {
				break
			}
			d.Entries = append(d.Entries, &rlcommonv3.RateLimitDescriptor_Entry{Key: key, Value: value})
		}
		if complete && len(d.Entries) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// maskedAddress is Envoy's masked_remote_address value: the client's
// network in CIDR form, IPv4-mapped IPv6 addresses taken as IPv4.
func maskedAddress(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// RouteTable is the route table a connection manager uses for a request
// to host (the :authority), as Envoy picks it: the RDS table it names, or
// with scoped routes the table of the scope whose key equals the key its
// scope key builder makes of the request's headers. A request no scope
// matches gets an empty table (Envoy answers 404, no route). An error
// means the node does not hold the config yet, or a key builder the door
// cannot play.
func (c NodeConfig) RouteTable(hcm *hcmv3.HttpConnectionManager, host string) (*routev3.RouteConfiguration, error) {
	sr := hcm.GetScopedRoutes()
	if sr == nil {
		name := hcm.GetRds().GetRouteConfigName()
		if rc := c.Routes[name]; rc != nil {
			return rc, nil
		}
		return nil, fmt.Errorf("no route table %s yet", name)
	}
	key, err := scopeKey(sr.GetScopeKeyBuilder(), map[string]string{":authority": host})
	if err != nil {
		return nil, err
	}
	if key == nil {
		return &routev3.RouteConfiguration{}, nil
	}
	for _, sc := range c.Scopes {
		var k []string
		for _, f := range sc.GetKey().GetFragments() {
			k = append(k, f.GetStringKey())
		}
		if slices.Equal(k, key) {
			if rc := c.Routes[sc.GetRouteConfigurationName()]; rc != nil {
				return rc, nil
			}
			return nil, fmt.Errorf("scope %s: no route table %s yet", sc.GetName(), sc.GetRouteConfigurationName())
		}
	}
	return &routev3.RouteConfiguration{}, nil
}

// scopeKey builds a request's scope key as Envoy's ScopeKeyBuilder does
// with header value extractors by index: per fragment, the header's value
// split by the element separator, the element at the index. Nil when a
// fragment has no value (no scope then matches).
func scopeKey(b *hcmv3.ScopedRoutes_ScopeKeyBuilder, headers map[string]string) ([]string, error) {
	var key []string
	for i, f := range b.GetFragments() {
		x := f.GetHeaderValueExtractor()
		idx, ok := x.GetExtractType().(*hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_Index)
		if x == nil || !ok {
			return nil, fmt.Errorf("scoped routes %s: fragments[%d]: only header value extractors by index are supported", b.String(), i)
		}
		v, present := headers[strings.ToLower(x.GetName())]
		if !present {
			return nil, nil
		}
		elems := []string{v}
		if sep := x.GetElementSeparator(); sep != "" {
			elems = strings.Split(v, sep)
		}
		if int(idx.Index) >= len(elems) {
			return nil, nil
		}
		key = append(key, elems[idx.Index])
	}
	return key, nil
}
