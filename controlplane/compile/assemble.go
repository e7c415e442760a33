package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// assemble applies the cross-spec checks and builds the Result.
func (c *Compiler) assemble(revID string, all []*Spec) *Result {
	names := map[string]*Spec{}
	hosts := newHostClaims()
	var published []*Spec
	for _, s := range all {
		if s.crossErr {
			s.Err, s.crossErr = nil, false
		}
	}
	for _, s := range claimOrder(all) {
		if s.Err != nil {
			continue
		}
		if other, ok := names[s.Name]; ok {
			s.Err, s.crossErr = fmt.Errorf("%s: metadata.name: %q is already the name of the EdgeRoute in %s", s.Origin, s.Name, other.Origin), true
			continue
		}
		if err := hosts.clash(s); err != nil {
			s.Err, s.crossErr = err, true
			continue
		}
		names[s.Name] = s
		hosts.add(s)
		published = append(published, s)
	}
	published = admitJWKS(published, c.opts.MaxJWKSURIsPerGroup)
	sort.Slice(published, func(i, j int) bool { return published[i].Name < published[j].Name })

	h := sha256.New()
	h.Write([]byte(c.optsKey))
	for _, s := range published {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%v", s.Name, s.key, s.NodeGroups)
	}
	version := hex.EncodeToString(h.Sum(nil)[:6])
	if revID != "" {
		version = revID + "." + version
	}
	return &Result{
		Revision:  revID,
		Version:   version,
		Specs:     all,
		published: published,
		opts:      c.opts,
		optsKey:   c.optsKey,
		shared:    c.groups,
		sidecars:  c.sidecarClusters,
		groups:    map[string]groupResult{},
		versions:  map[string]string{},
	}
}

func (r *Result) build(group string) (Resources, []string, error) {
	var (
		vhosts    []*routev3.VirtualHost
		clusters  = append([]types.Resource(nil), toResources(r.sidecars)...)
		clas      []types.Resource
		exts      []types.Resource
		rules     []*ratelimit.SpecRules
		rulesKeys []string
		headers   = map[string]bool{}
		secrets   []types.Resource
	)
	for _, s := range r.published {
		if !s.servesGroup(group) {
			continue
		}
		vhosts = append(vhosts, s.vhost)
		clusters = append(clusters, toResources(s.clusters)...)
		clas = append(clas, toResources(s.clas)...)
		exts = append(exts, toResources(s.sidecar)...)
		if s.rules != nil {
			rules = append(rules, s.rules)
			rulesKeys = append(rulesKeys, s.rulesKey)
		}
		for _, h := range s.alsHeaders {
			headers[h] = true
		}
	}
	alsHeaders := make([]string, 0, len(headers))
	for h := range headers {
		alsHeaders = append(alsHeaders, h)
	}
	sort.Strings(alsHeaders)

	scoped, warnings := r.scopedLayout(group)
	listeners := []types.Resource{}
	if slices.Contains(r.opts.ProxylessGroups, group) {
		for _, s := range r.published {
			if !s.servesGroup(group) {
				continue
			}
			for _, h := range s.doc.EdgeRoute.Spec.Hosts {
				if !strings.HasPrefix(h, "*") {
					listeners = append(listeners, envoy.APIListener(strings.ToLower(h), envoy.RouteConfigName))
				}
			}
		}
		for _, l := range listeners {
			if err := ValidateAll(l.(*listenerv3.Listener)); err != nil {
				return nil, nil, fmt.Errorf("API listener %s: %w", l.(*listenerv3.Listener).GetName(), err)
			}
		}
		vhosts = proxylessRoutes(vhosts)
	} else {
		if !scoped {
			// Every route names the version serving it (the ALS custom
			// tag); in the scoped layout scopedRoutes stamps each spec's
			// own version instead.
			all := vhosts
			vhosts = r.shared.stampedVHosts("group\x00"+group, r.groupVersion(group), func() []*routev3.VirtualHost { return all })
		}
		lis, err := r.shared.listener(r.opts.HTTPAddress, alsHeaders, r.opts.RateLimitFailureModeDeny, scoped)
		if err != nil {
			return nil, nil, err
		}
		listeners = append(listeners, lis)
		https, secs, err := r.httpsListener(group, alsHeaders, scoped)
		if err != nil {
			return nil, nil, err
		}
		if https != nil {
			listeners = append(listeners, https)
			secrets = secs
		}
	}
	// The route table's own fields are validated on an empty table; every
	// virtual host in it was validated when its spec was compiled.
	var routes, scopes []types.Resource
	if scoped {
		var err error
		if routes, scopes, err = r.scopedRoutes(group); err != nil {
			return nil, nil, err
		}
	} else {
		rc := envoy.RouteConfiguration(envoy.RouteConfigName, r.groupVersion(group), nil)
		if err := ValidateAll(rc); err != nil {
			return nil, nil, fmt.Errorf("route configuration %s: %w", rc.GetName(), err)
		}
		if slices.Contains(r.opts.ProxylessGroups, group) {
			rc.TypedPerFilterConfig = nil
		}
		rc.VirtualHosts = vhosts
		routes = []types.Resource{rc}
	}

	rlc, rlWarnings, err := r.shared.rateLimitConfig(rules, rulesKeys)
	if err != nil {
		return nil, nil, err
	}
	warnings = append(warnings, rlWarnings...)
	res := Resources{
		resourcev3.ListenerType:      listeners,
		resourcev3.RouteType:         routes,
		resourcev3.ClusterType:       clusters,
		resourcev3.EndpointType:      clas,
		contract.ExtensionConfigType: exts,
		contract.RateLimitConfigType: {rlc},
	}
	if scoped {
		res[resourcev3.ScopedRouteType] = scopes
	}
	if len(secrets) > 0 {
		res[resourcev3.SecretType] = secrets
	}
	if err := CheckReferences(res); err != nil {
		return nil, nil, err
	}
	return res, warnings, nil
}

// httpsListener builds the group's HTTPS listener and SDS secrets: one
// filter chain per certificate the group's specs name, matching the hosts
// of those specs by SNI. Nil when no spec of the group names one.
func (r *Result) httpsListener(group string, alsHeaders []string, scoped bool) (*listenerv3.Listener, []types.Resource, error) {
	hosts := map[string][]string{}
	secrets := map[string]*tlsv3.Secret{}
	var names []string
	for _, s := range r.published {
		if !s.servesGroup(group) || s.secret == nil {
			continue
		}
		n := s.secret.GetName()
		if _, ok := secrets[n]; !ok {
			secrets[n] = s.secret
			names = append(names, n)
		}
		for _, h := range s.doc.EdgeRoute.Spec.Hosts {
			hosts[n] = append(hosts[n], strings.ToLower(h))
		}
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	sort.Strings(names)
	var chains []envoy.TLSChain
	var out []types.Resource
	for _, n := range names {
		chains = append(chains, envoy.TLSChain{Secret: n, ServerNames: hosts[n]})
		out = append(out, secrets[n])
	}
	l, err := envoy.Listener(envoy.ListenerOptions{Name: envoy.HTTPSListener, Address: r.opts.HTTPSAddress, RouteConfig: envoy.RouteConfigName, Scoped: scoped, AccessLogHeaders: alsHeaders, TLSChains: chains,
		RateLimitFailureModeDeny: r.opts.RateLimitFailureModeDeny})
	if err != nil {
		return nil, nil, err
	}
	if err := ValidateAll(l); err != nil {
		return nil, nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	return l, out, nil
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

// CheckReferences are the referential checks across one node group's
// resources: every listener's connection manager names an existing route
// table and its filters' gRPC clusters exist; every route targets an
// existing cluster; every EDS cluster has endpoints; the rate-limit config
// is for domain gatehouse.
func CheckReferences(res Resources) error {
	clusters := map[string]*clusterv3.Cluster{}
	for _, r := range res[resourcev3.ClusterType] {
		c := r.(*clusterv3.Cluster)
		if _, dup := clusters[c.GetName()]; dup {
			return fmt.Errorf("cluster %q is defined twice", c.GetName())
		}
		clusters[c.GetName()] = c
	}
	clas := map[string]bool{}
	for _, r := range res[resourcev3.EndpointType] {
		clas[r.(interface{ GetClusterName() string }).GetClusterName()] = true
	}
	for name, c := range clusters {
		if c.GetType() == clusterv3.Cluster_EDS && !clas[c.GetEdsClusterConfig().GetServiceName()] {
			return fmt.Errorf("cluster %s: EDS service %q has no ClusterLoadAssignment", name, c.GetEdsClusterConfig().GetServiceName())
		}
	}
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range res[resourcev3.RouteType] {
		rc := r.(*routev3.RouteConfiguration)
		routes[rc.GetName()] = rc
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if cl := rt.GetRoute().GetCluster(); cl != "" && clusters[cl] == nil {
					return fmt.Errorf("route table %s: route %s targets cluster %q, which does not exist", rc.GetName(), rt.GetName(), cl)
				}
			}
		}
	}
	scopes := map[string]string{} // scope key -> scope name
	for _, r := range res[resourcev3.ScopedRouteType] {
		sc := r.(*routev3.ScopedRouteConfiguration)
		var key []string
		for _, f := range sc.GetKey().GetFragments() {
			key = append(key, f.GetStringKey())
		}
		k := strings.Join(key, "\x00")
		if other, dup := scopes[k]; dup {
			return fmt.Errorf("scope %s: key %q is also the key of scope %s", sc.GetName(), k, other)
		}
		scopes[k] = sc.GetName()
		if routes[sc.GetRouteConfigurationName()] == nil {
			return fmt.Errorf("scope %s: route table %q does not exist", sc.GetName(), sc.GetRouteConfigurationName())
		}
	}
	for _, r := range res[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		if api := l.GetApiListener().GetApiListener(); api != nil {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := api.UnmarshalTo(hcm); err != nil {
				return fmt.Errorf("API listener %s: %w", l.GetName(), err)
			}
			if name := hcm.GetRds().GetRouteConfigName(); routes[name] == nil {
				return fmt.Errorf("API listener %s: route table %q does not exist", l.GetName(), name)
			}
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				if sr := hcm.GetScopedRoutes(); sr != nil {
					if sr.GetScopedRds() == nil {
						return fmt.Errorf("listener %s: scoped routes %q are not served over SRDS", l.GetName(), sr.GetName())
					}
				} else if name := hcm.GetRds().GetRouteConfigName(); routes[name] == nil {
					return fmt.Errorf("listener %s: route table %q does not exist", l.GetName(), name)
				}
				for _, want := range []string{contract.AuthzCluster, contract.RateLimitCluster, contract.AccessLogCluster} {
					if clusters[want] == nil {
						return fmt.Errorf("listener %s: its filters call cluster %q, which does not exist", l.GetName(), want)
					}
				}
			}
		}
	}
	for _, r := range res[contract.RateLimitConfigType] {
		if d := r.(*rlsconfv3.RateLimitConfig).GetDomain(); d != contract.RateLimitDomain {
			return fmt.Errorf("rate limit config for domain %q, want %q", d, contract.RateLimitDomain)
		}
	}
	return nil
}

// groupCache keeps the per-group pieces that depend on little of a group's
// content, across results: the listener (on the access-log headers) and
// the RateLimitConfig (on the rate-limit rules), so a change that leaves
// them alone does not rebuild and revalidate them for every group. It is
// bounded: entries not used by the last two results are dropped.
type groupCache struct {
	mu             sync.Mutex
	listeners      map[string]*listenerv3.Listener
	prevListeners  map[string]*listenerv3.Listener
	rlcs, prevRLCs map[string]rlcEntry
	// stamped are virtual hosts whose routes carry a version (the ALS
	// custom tag), by "<group or spec>\x00<version>": the version is a hash
	// of exactly what the vhosts are built from, so a group (or spec) a
	// rebuild did not change reuses its stamped copies instead of copying
	// every route again.
	stamped, prevStamped map[string][]*routev3.VirtualHost
}

// stampedVHosts returns the vhosts of key with every route carrying
// revision, stamping them (envoy.WithRevision) only on the first call of
// this or the previous generation.
func (g *groupCache) stampedVHosts(key, revision string, vhosts func() []*routev3.VirtualHost) []*routev3.VirtualHost {
	k := key + "\x00" + revision
	g.mu.Lock()
	if v, ok := g.stamped[k]; ok {
		g.mu.Unlock()
		return v
	}
	if v, ok := g.prevStamped[k]; ok {
		g.stamped[k] = v
		g.mu.Unlock()
		return v
	}
	g.mu.Unlock()
	v := envoy.WithRevision(vhosts(), revision)
	g.mu.Lock()
	g.stamped[k] = v
	g.mu.Unlock()
	return v
}

type rlcEntry struct {
	rlc      *rlsconfv3.RateLimitConfig
	warnings []string
}

func newGroupCache() *groupCache {
	return &groupCache{listeners: map[string]*listenerv3.Listener{}, prevListeners: map[string]*listenerv3.Listener{}, rlcs: map[string]rlcEntry{}, prevRLCs: map[string]rlcEntry{},
		stamped: map[string][]*routev3.VirtualHost{}, prevStamped: map[string][]*routev3.VirtualHost{}}
}

// rotate starts a new generation (called once per Compile).
func (g *groupCache) rotate() {
	g.mu.Lock()
	g.prevListeners, g.listeners = g.listeners, map[string]*listenerv3.Listener{}
	g.prevRLCs, g.rlcs = g.rlcs, map[string]rlcEntry{}
	g.prevStamped, g.stamped = g.stamped, map[string][]*routev3.VirtualHost{}
	g.mu.Unlock()
}

func (g *groupCache) listener(addr string, headers []string, rlDeny, scoped bool) (*listenerv3.Listener, error) {
	key := addr + "\x00" + strings.Join(headers, ",") + "\x00" + strconv.FormatBool(rlDeny) + "\x00" + strconv.FormatBool(scoped)
	g.mu.Lock()
	l, ok := g.listeners[key]
	if !ok {
		if l, ok = g.prevListeners[key]; ok {
			g.listeners[key] = l
		}
	}
	g.mu.Unlock()
	if ok {
		return l, nil
	}
	l, err := envoy.Listener(envoy.ListenerOptions{Name: envoy.HTTPListener, Address: addr, RouteConfig: envoy.RouteConfigName, Scoped: scoped, AccessLogHeaders: headers, RateLimitFailureModeDeny: rlDeny})
	if err != nil {
		return nil, err
	}
	if err := ValidateAll(l); err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	g.mu.Lock()
	g.listeners[key] = l
	g.mu.Unlock()
	return l, nil
}

func (g *groupCache) rateLimitConfig(rules []*ratelimit.SpecRules, keys []string) (*rlsconfv3.RateLimitConfig, []string, error) {
	key := strings.Join(keys, ",")
	g.mu.Lock()
	e, ok := g.rlcs[key]
	if !ok {
		if e, ok = g.prevRLCs[key]; ok {
			g.rlcs[key] = e
		}
	}
	g.mu.Unlock()
	if ok {
		return e.rlc, e.warnings, nil
	}
	rlc, warnings := ratelimit.RateLimitConfig(rules)
	if err := ValidateAll(rlc); err != nil {
		return nil, nil, fmt.Errorf("rate limit config %s: %w", rlc.GetName(), err)
	}
	g.mu.Lock()
	g.rlcs[key] = rlcEntry{rlc, warnings}
	g.mu.Unlock()
	return rlc, warnings, nil
}

// proxylessRoutes copies virtual hosts without what only Envoy uses:
// per-filter overrides (ext_authz) and rate-limit actions. gRPC clients
// reject overrides for filters they do not have.
func proxylessRoutes(vhosts []*routev3.VirtualHost) []*routev3.VirtualHost {
	out := make([]*routev3.VirtualHost, len(vhosts))
	for i, vh := range vhosts {
		c := proto.Clone(vh).(*routev3.VirtualHost)
		c.TypedPerFilterConfig = nil
		for _, rt := range c.GetRoutes() {
			rt.TypedPerFilterConfig = nil
			if a := rt.GetRoute(); a != nil {
				a.RateLimits = nil
			}
		}
		out[i] = c
	}
	return out
}

// scopedLayout reports whether a node group is served the scoped route
// layout: it is one of Options.ScopedRouteGroups and every host its specs
// serve is exact. A wildcard host cannot be a scope key (Envoy matches
// scope keys exactly, envoyproxy/envoy#19098), so such a group keeps the
// one route table, whose virtual hosts match wildcards, and says why.
func (r *Result) scopedLayout(group string) (bool, []string) {
	if !slices.Contains(r.opts.ScopedRouteGroups, group) {
		return false, nil
	}
	for _, s := range r.published {
		if !s.servesGroup(group) {
			continue
		}
		for i, h := range s.doc.EdgeRoute.Spec.Hosts {
			if strings.HasPrefix(h, "*") {
				return false, []string{fmt.Sprintf("node group %s: %s: spec.hosts[%d]: wildcard host %q cannot be a route scope; the group keeps one route table", group, s.Origin, i, h)}
			}
		}
	}
	return true, nil
}

// scopedRoutes are a scoped group's route tables, one per spec (its
// virtual host; the ext_authz revision on it is the spec's route version,
// so another spec's change leaves it byte-identical), and its scopes, one
// per exact host, each naming its spec's table.
func (r *Result) scopedRoutes(group string) (routes, scopes []types.Resource, err error) {
	for _, s := range r.published {
		if !s.servesGroup(group) {
			continue
		}
		name := envoy.SpecRouteConfigName(s.Name)
		// The table's own fields are validated on an empty table; its
		// virtual host was validated when its spec was compiled.
		rc := envoy.RouteConfiguration(name, r.SpecRouteVersion(s), nil)
		if err := ValidateAll(rc); err != nil {
			return nil, nil, fmt.Errorf("route configuration %s: %w", name, err)
		}
		// Every route names the version serving it (the ALS custom tag):
		// the spec's own, as the table's ext_authz revision.
		rc.VirtualHosts = r.shared.stampedVHosts("spec\x00"+s.Name, r.SpecRouteVersion(s), func() []*routev3.VirtualHost { return []*routev3.VirtualHost{s.vhost} })
		routes = append(routes, rc)
		for _, h := range s.doc.EdgeRoute.Spec.Hosts {
			sc := envoy.ScopedRouteConfiguration(strings.ToLower(h), name)
			if err := ValidateAll(sc); err != nil {
				return nil, nil, fmt.Errorf("scope %s: %w", sc.GetName(), err)
			}
			scopes = append(scopes, sc)
		}
	}
	return routes, scopes, nil
}
