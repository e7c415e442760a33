package envoy

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Names of the scoped route layout (ScopedRoutes): a node group whose
// route table is split per spec, so one spec's change re-sends that
// spec's routes only.
const (
	// ScopedRoutesName names the connection manager's scoped routes.
	ScopedRoutesName = "gatehouse_scopes"
	// specRoutePrefix starts the RDS name of one spec's route table.
	specRoutePrefix = RouteConfigName + "/"
	// scopePrefix starts the SRDS name of one host's scope.
	scopePrefix = "gatehouse_scope/"
)

// SpecRouteConfigName is the RDS name of one spec's route table in the
// scoped layout.
func SpecRouteConfigName(specName string) string { return specRoutePrefix + specName }

// ScopeName is the SRDS name of the scope of one exact host.
func ScopeName(host string) string { return scopePrefix + host }

// scopedRoutes is the connection manager's route specifier in the scoped
// layout: scopes come over SRDS (ADS), each naming a route table that
// comes over RDS (ADS); a request's scope key is the host part of its
// :authority (before the first ':'; the HCM strips a port anyway), matched
// exactly against each scope's key. A host no scope names gets no route
// (404), as a host no virtual host names does in the one-table layout.
func scopedRoutes() *hcmv3.HttpConnectionManager_ScopedRoutes {
	return &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{
		Name: ScopedRoutesName,
		ScopeKeyBuilder: &hcmv3.ScopedRoutes_ScopeKeyBuilder{Fragments: []*hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder{{
			Type: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_{
				HeaderValueExtractor: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor{
					Name:             ":authority",
					ElementSeparator: ":",
					ExtractType:      &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_Index{Index: 0},
				},
			},
		}}},
		RdsConfigSource: ads(),
		ConfigSpecifier: &hcmv3.ScopedRoutes_ScopedRds{ScopedRds: &hcmv3.ScopedRds{ScopedRdsConfigSource: ads()}},
	}}
}

// ScopedRouteConfiguration is the scope of one exact (lower-case) host: a
// request whose :authority host is host uses the route table routeConfig.
func ScopedRouteConfiguration(host, routeConfig string) *routev3.ScopedRouteConfiguration {
	return &routev3.ScopedRouteConfiguration{
		Name:                   ScopeName(host),
		RouteConfigurationName: routeConfig,
		Key: &routev3.ScopedRouteConfiguration_Key{Fragments: []*routev3.ScopedRouteConfiguration_Key_Fragment{{
			Type: &routev3.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: host},
		}}},
	}
}

// ScopeKey is the scope key Envoy builds from a request's :authority with
// scopedRoutes: the part before the first ':'.
func ScopeKey(authority string) string {
	for i := 0; i < len(authority); i++ {
		if authority[i] == ':' {
			return authority[:i]
		}
	}
	return authority
}
