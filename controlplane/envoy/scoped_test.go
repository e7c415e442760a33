package envoy

import (
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestScopedListenerKeysOnAuthorityHost: a scoped listener's connection
// manager has no RDS name, takes its scopes over SRDS and builds the key
// from :authority split on ':' (element 0), which ScopeKey mirrors.
func TestScopedListenerKeysOnAuthorityHost(t *testing.T) {
	l, err := Listener(ListenerOptions{Name: HTTPListener, Address: "0.0.0.0:10080", RouteConfig: RouteConfigName, Scoped: true})
	if err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	sr := hcm.GetScopedRoutes()
	if hcm.GetRds() != nil || sr.GetScopedRds().GetScopedRdsConfigSource().GetAds() == nil || sr.GetRdsConfigSource().GetAds() == nil {
		t.Fatalf("route specifier = %v", hcm.GetRouteSpecifier())
	}
	x := sr.GetScopeKeyBuilder().GetFragments()[0].GetHeaderValueExtractor()
	if x.GetName() != ":authority" || x.GetElementSeparator() != ":" || x.GetIndex() != 0 {
		t.Fatalf("key builder = %v", x)
	}
	for in, want := range map[string]string{"a.example.com": "a.example.com", "a.example.com:10080": "a.example.com", "": ""} {
		if got := ScopeKey(in); got != want {
			t.Errorf("ScopeKey(%q) = %q, want %q", in, got, want)
		}
	}
	sc := ScopedRouteConfiguration("a.example.com", SpecRouteConfigName("a"))
	if err := sc.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if sc.GetName() != "gatehouse_scope/a.example.com" || sc.GetRouteConfigurationName() != "gatehouse_routes/a" || sc.GetKey().GetFragments()[0].GetStringKey() != "a.example.com" {
		t.Fatalf("scope = %v", sc)
	}
}
