package envoy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// VirtualHost is one spec's virtual host: named after the spec, matching
// its hosts, with its routes in spec order.
func VirtualHost(r *spec.EdgeRoute) (*routev3.VirtualHost, error) {
	return VirtualHostPacked(r, nil)
}

// VirtualHostPacked is VirtualHost that records in packed the message of
// every Any it packs (the routes' per-filter configs).
func VirtualHostPacked(r *spec.EdgeRoute, packed Packed) (*routev3.VirtualHost, error) {
	name := r.Metadata.Name
	vh := &routev3.VirtualHost{Name: name}
	for _, h := range r.Spec.Hosts {
		vh.Domains = append(vh.Domains, strings.ToLower(h))
	}
	strip := ForwardedHeaders(r)
	for i := range r.Spec.Routes {
		rt, err := route(name, &r.Spec.Routes[i], strip, packed)
		if err != nil {
			return nil, fmt.Errorf("spec.routes[%d]: %w", i, err)
		}
		vh.Routes = append(vh.Routes, rt)
	}
	return vh, nil
}

// ClusterName is the Envoy cluster of a spec's upstream.
func ClusterName(specName, upstream string) string { return specName + "/" + upstream }

// ForwardedHeaders is the union, sorted, of the headers every JWT provider
// of a spec forwards claims in (forwardClaims). Upstreams trust them, so
// every route of the spec removes the client's own values.
func ForwardedHeaders(r *spec.EdgeRoute) []string {
	var out []string
	if id := r.Spec.Identity; id != nil {
		for _, j := range id.JWT {
			for _, h := range j.ForwardClaims {
				if h = strings.ToLower(h); !slices.Contains(out, h) {
					out = append(out, h)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// StripForwardedHeaders is a route's header-mutation setting: remove each
// of headers from the client's request. The header-mutation filter runs
// before ext_authz, so the verified values ext_authz sets afterwards are
// what reaches the upstream. Nil when there is nothing to remove.
func StripForwardedHeaders(headers []string) *headermutationv3.HeaderMutationPerRoute {
	if len(headers) == 0 {
		return nil
	}
	m := &headermutationv3.Mutations{}
	for _, h := range headers {
		m.RequestMutations = append(m.RequestMutations, &mutationrulesv3.HeaderMutation{
			Action: &mutationrulesv3.HeaderMutation_Remove{Remove: h},
		})
	}
	return &headermutationv3.HeaderMutationPerRoute{Mutations: m}
}

func route(specName string, rt *spec.Route, strip []string, packed Packed) (*routev3.Route, error) {
	id := spec.RouteID(specName, rt.Name)
	match, err := routeMatch(rt.Match)
	if err != nil {
		return nil, err
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(specName, rt.Upstream)},
		Timeout:          durationpb.New(rt.EffectiveTimeout()),
		PrefixRewrite:    rt.RewritePrefix,
	}
	for i, l := range rt.RateLimits {
		rl, err := RateLimit(id, l)
		if err != nil {
			return nil, fmt.Errorf("rateLimits[%d]: %w", i, err)
		}
		action.RateLimits = append(action.RateLimits, rl)
	}
	out := &routev3.Route{
		Name:   id,
		Match:  match,
		Action: &routev3.Route_Route{Route: action},
		TypedPerFilterConfig: map[string]*anypb.Any{
			contract.ExtAuthzFilter: packed.pack(ExtAuthzPerRoute(id, rt.AuthMode())),
		},
	}
	if hm := StripForwardedHeaders(strip); hm != nil {
		out.TypedPerFilterConfig[HeaderMutationFilter] = packed.pack(hm)
	}
	return out, nil
}

// ExtAuthzPerRoute is a route's ext_authz setting: disabled on public
// routes, otherwise the context extension naming the route for the authz
// sidecar (the revision comes from the route table, see RouteConfiguration).
func ExtAuthzPerRoute(routeID, mode string) *extauthzv3.ExtAuthzPerRoute {
	if mode == spec.ModePublic {
		return &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}}
	}
	return &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: map[string]string{contract.ContextRoute: routeID}},
	}}
}

func routeMatch(m spec.Match) (*routev3.RouteMatch, error) {
	rm := &routev3.RouteMatch{}
	switch {
	case m.Path != "":
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: m.Path}
	case m.PathRegex != "":
		if err := spec.CheckRegexp(m.PathRegex); err != nil {
			return nil, fmt.Errorf("match.pathRegex: %w", err)
		}
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.PathRegex}}
	case m.PathPrefix != "":
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: m.PathPrefix}
	default:
		return nil, fmt.Errorf("match: one of path, pathPrefix, pathRegex is required")
	}
	if len(m.Methods) > 0 {
		rm.Headers = append(rm.Headers, methodMatcher(m.Methods))
	}
	for i, h := range m.Headers {
		hm, err := headerMatcher(h)
		if err != nil {
			return nil, fmt.Errorf("match.headers[%d]: %w", i, err)
		}
		rm.Headers = append(rm.Headers, hm)
	}
	return rm, nil
}

func methodMatcher(methods []string) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{}
	if len(methods) == 1 {
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: methods[0]}
	} else {
		quoted := make([]string, len(methods))
		for i, m := range methods {
			quoted[i] = regexp.QuoteMeta(m)
		}
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "^(" + strings.Join(quoted, "|") + ")$"}}
	}
	return &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

func headerMatcher(h spec.HeaderMatch) (*routev3.HeaderMatcher, error) {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(h.Name)}
	switch {
	case h.Present != nil:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: *h.Present}
	case h.Regex != "":
		if err := spec.CheckRegexp(h.Regex); err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Regex}},
		}}
	case h.Prefix != "":
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix},
		}}
	default:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact},
		}}
	}
	return hm, nil
}

// RateLimit is the Envoy rate_limits entry of one spec limit. Its
// descriptor is, in order: ("route", "<spec>/<route>"), ("limit",
// "<name>"), then one entry per `by` source. A request lacking a source's
// value produces no descriptor for this limit at all (skip_if_absent
// false: Envoy then does not ask about this limit), which is ROUTE_SPEC's
// "a request that lacks the source value is not counted by that limit";
// skip_if_absent true would instead send a shorter descriptor counting all
// such requests together.
func RateLimit(routeID string, l spec.RateLimit) (*routev3.RateLimit, error) {
	actions := []*routev3.RateLimit_Action{
		genericKey("route", routeID),
		genericKey("limit", l.Name),
	}
	for i, by := range l.By {
		src, err := spec.ParseSource(by)
		if err != nil {
			return nil, fmt.Errorf("by[%d]: %w", i, err)
		}
		actions = append(actions, SourceAction(src))
	}
	return &routev3.RateLimit{Actions: actions}, nil
}

func genericKey(key, value string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
		GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: key, DescriptorValue: value},
	}}
}

// SourceAction is the rate-limit action that produces one descriptor
// source's entry.
func SourceAction(src spec.Source) *routev3.RateLimit_Action {
	switch src.Kind {
	case spec.SourceClientIP:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}
	case spec.SourceClientIP64:
		// Key "masked_remote_address", value the client's /64 (IPv6) or
		// /32 (IPv4) in CIDR form.
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_MaskedRemoteAddress_{MaskedRemoteAddress: &routev3.RateLimit_Action_MaskedRemoteAddress{
			V4PrefixMaskLen: wrapperspb.UInt32(32),
			V6PrefixMaskLen: wrapperspb.UInt32(64),
		}}}
	case spec.SourceHeader:
		return requestHeader(src.Arg, src.DescriptorKey())
	case spec.SourceRequestMethod:
		return requestHeader(":method", src.DescriptorKey())
	case spec.SourceRequestPath:
		return requestHeader(":path", src.DescriptorKey())
	case spec.SourceIdentitySubject:
		return authzMetadata(src.DescriptorKey(), "subject")
	case spec.SourceAPIKeyID:
		return authzMetadata(src.DescriptorKey(), "apikey_id")
	case spec.SourceIdentityClaim:
		return authzMetadata(src.DescriptorKey(), "claims", src.Arg)
	}
	panic("envoy: unhandled descriptor source " + src.Kind) // spec.ParseSource returns only the kinds above
}

func requestHeader(header, key string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: header, DescriptorKey: key},
	}}
}

func authzMetadata(key string, path ...string) *routev3.RateLimit_Action {
	segs := make([]*metadatav3.MetadataKey_PathSegment, len(path))
	for i, p := range path {
		segs[i] = &metadatav3.MetadataKey_PathSegment{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: p}}
	}
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Metadata{Metadata: &routev3.RateLimit_Action_MetaData{
		DescriptorKey: key,
		MetadataKey:   &metadatav3.MetadataKey{Key: contract.ExtAuthzNamespace, Path: segs},
		Source:        routev3.RateLimit_Action_MetaData_DYNAMIC,
	}}}
}
