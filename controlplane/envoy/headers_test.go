package envoy

import (
	"os"
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

func petstoreExample(t *testing.T) *spec.EdgeRoute {
	t.Helper()
	b, err := os.ReadFile("../../deploy/examples/petstore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := spec.Parse("petstore.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	return &docs[0].EdgeRoute
}

// removedOn is what a route's header-mutation per-route config removes
// from the request.
func removedOn(t *testing.T, rt *routev3.Route) []string {
	t.Helper()
	a, ok := rt.GetTypedPerFilterConfig()[HeaderMutationFilter]
	if !ok {
		return nil
	}
	per := &headermutationv3.HeaderMutationPerRoute{}
	if err := a.UnmarshalTo(per); err != nil {
		t.Fatal(err)
	}
	if err := per.ValidateAll(); err != nil {
		t.Fatalf("route %s: header mutation: %v", rt.GetName(), err)
	}
	var out []string
	for _, m := range per.GetMutations().GetRequestMutations() {
		out = append(out, m.GetRemove())
	}
	return out
}

// TestEveryRouteStripsForwardedHeaders: on the petstore example, whose
// corp provider forwards sub as x-user-id, every route (the public health
// route and the routes another provider lets in included) removes the
// client's x-user-id before ext_authz runs.
func TestEveryRouteStripsForwardedHeaders(t *testing.T) {
	vh, err := VirtualHost(petstoreExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := vh.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if len(vh.GetRoutes()) != 3 {
		t.Fatalf("%d routes, want petstore's 3", len(vh.GetRoutes()))
	}
	for _, rt := range vh.GetRoutes() {
		if got := removedOn(t, rt); !slices.Equal(got, []string{"x-user-id"}) {
			t.Errorf("route %s removes %v from the client's request, want [x-user-id]", rt.GetName(), got)
		}
	}

	// A spec without forwarded claims has no per-route mutation; the
	// filter's own x-gatehouse-* removal still applies.
	r := petstoreExample(t)
	r.Spec.Identity.JWT[0].ForwardClaims = nil
	vh, err = VirtualHost(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range vh.GetRoutes() {
		if got := removedOn(t, rt); got != nil {
			t.Errorf("route %s removes %v, want nothing", rt.GetName(), got)
		}
	}
}

// TestHeaderMutationRunsBeforeExtAuthz: the HCM's first filter removes
// x-gatehouse-* (any case) and comes before ext_authz, so the verified
// headers ext_authz sets are not removed again.
func TestHeaderMutationRunsBeforeExtAuthz(t *testing.T) {
	l, err := Listener(ListenerOptions{Name: HTTPListener, Address: "0.0.0.0:8080", RouteConfig: RouteConfigName})
	if err != nil {
		t.Fatal(err)
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range h.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	hm, az := slices.Index(names, HeaderMutationFilter), slices.Index(names, contract.ExtAuthzFilter)
	if hm < 0 || az < 0 || hm > az || names[len(names)-1] != RouterFilter {
		t.Fatalf("HTTP filters %v: want %s before %s, router last", names, HeaderMutationFilter, contract.ExtAuthzFilter)
	}
	cfg := &headermutationv3.HeaderMutation{}
	if err := h.GetHttpFilters()[hm].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	muts := cfg.GetMutations().GetRequestMutations()
	km := muts[0].GetRemoveOnMatch().GetKeyMatcher()
	if len(muts) != 1 || km.GetPrefix() != "x-gatehouse-" || !km.GetIgnoreCase() {
		t.Fatalf("filter-level request mutations %v: want remove_on_match prefix x-gatehouse- (ignore case)", muts)
	}
}
