package compile

import (
	"fmt"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// scopedRevision is n specs s0..s(n-1) on hosts sI.example.com; the spec
// named changed gets a second route.
func scopedRevision(id string, n int, changed string) source.Revision {
	var specs []source.Spec
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		data := specBytes(name, name+".example.com")
		if name == changed {
			data = append(data, []byte("    - name: extra\n      match: {path: /extra}\n      upstream: api\n")...)
		}
		specs = append(specs, source.Spec{Origin: name + ".yaml", Data: data})
	}
	return source.Revision{ID: id, Specs: specs}
}

func byName(t *testing.T, list []types.Resource) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, r := range list {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[cachev3.GetResourceName(r)] = b
	}
	return out
}

// TestScopedGroupChangesOneSpecsRoutesOnly: in a scoped route group, each
// spec has its own route table and each host its scope; changing one spec
// changes that spec's table only, every other table and every scope stays
// byte-identical, and the whole layout passes ValidateAll, the referential
// checks and go-control-plane's snapshot consistency check. The group
// without the option keeps the one table (the default layout).
func TestScopedGroupChangesOneSpecsRoutesOnly(t *testing.T) {
	c, err := New(Options{ScopedRouteGroups: []string{"edge"}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	before := c.Compile(scopedRevision("r1", n, ""))
	after := c.Compile(scopedRevision("r2", n, "s7"))
	for _, res := range []*Result{before, after} {
		if len(res.Failed()) > 0 {
			t.Fatalf("failed: %v", res.Failed()[0].Err)
		}
	}
	r1, w1, err := before.Resources("edge")
	if err != nil {
		t.Fatal(err)
	}
	if len(w1) != 0 {
		t.Fatalf("warnings: %v", w1)
	}
	r2, _, err := after.Resources("edge")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Resources{r1, r2} {
		checkScopedLayout(t, r, n)
	}

	rt1, rt2 := byName(t, r1[resourcev3.RouteType]), byName(t, r2[resourcev3.RouteType])
	var changed []string
	for name, b := range rt2 {
		if string(rt1[name]) != string(b) {
			changed = append(changed, name)
		}
	}
	if want := envoy.SpecRouteConfigName("s7"); len(changed) != 1 || changed[0] != want {
		t.Fatalf("changed route tables = %v, want just %s", changed, want)
	}
	sc1, sc2 := byName(t, r1[resourcev3.ScopedRouteType]), byName(t, r2[resourcev3.ScopedRouteType])
	for name, b := range sc2 {
		if string(sc1[name]) != string(b) {
			t.Errorf("scope %s changed", name)
		}
	}
	// The changed table is about one spec's worth: a small part of all.
	total := 0
	for _, b := range rt2 {
		total += len(b)
	}
	if one := len(rt2[envoy.SpecRouteConfigName("s7")]); one*5 > total {
		t.Errorf("changed table is %d of %d bytes", one, total)
	}

	// A group not listed keeps the one table.
	other, _, err := after.Resources("other")
	if err != nil {
		t.Fatal(err)
	}
	if rts := other[resourcev3.RouteType]; len(rts) != 1 || cachev3.GetResourceName(rts[0]) != envoy.RouteConfigName || len(other[resourcev3.ScopedRouteType]) != 0 {
		t.Fatalf("default group routes = %d tables, %d scopes", len(rts), len(other[resourcev3.ScopedRouteType]))
	}
}

func checkScopedLayout(t *testing.T, r Resources, n int) {
	t.Helper()
	if got := len(r[resourcev3.RouteType]); got != n {
		t.Fatalf("%d route tables, want %d (one per spec)", got, n)
	}
	if got := len(r[resourcev3.ScopedRouteType]); got != n {
		t.Fatalf("%d scopes, want %d (one per host)", got, n)
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ScopedRouteType} {
		for _, res := range r[typ] {
			if err := ValidateAll(res); err != nil {
				t.Fatalf("%s: %v", cachev3.GetResourceName(res), err)
			}
			if v, ok := res.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					t.Fatalf("%s: Validate: %v", cachev3.GetResourceName(res), err)
				}
			}
		}
	}
	if err := CheckReferences(r); err != nil {
		t.Fatal(err)
	}
	snap, err := cachev3.NewSnapshot("v", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	l := r[resourcev3.ListenerType][0].(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	sr := hcm.GetScopedRoutes()
	if sr == nil || sr.GetScopedRds() == nil || hcm.GetRds() != nil {
		t.Fatalf("listener %s does not use scoped RDS: %v", l.GetName(), hcm.GetRouteSpecifier())
	}
	for _, res := range r[resourcev3.ScopedRouteType] {
		sc := res.(*routev3.ScopedRouteConfiguration)
		host := sc.GetKey().GetFragments()[0].GetStringKey()
		if want := envoy.SpecRouteConfigName(strings.TrimSuffix(host, ".example.com")); sc.GetRouteConfigurationName() != want {
			t.Fatalf("scope %s -> %s, want %s", sc.GetName(), sc.GetRouteConfigurationName(), want)
		}
	}
}

// TestScopedGroupWithWildcardKeepsOneTable: a wildcard host cannot be a
// scope key, so a scoped group serving one keeps the one route table (the
// wildcard keeps matching as before) and says why; the other groups are
// not affected.
func TestScopedGroupWithWildcardKeepsOneTable(t *testing.T) {
	c, err := New(Options{ScopedRouteGroups: []string{"edge"}})
	if err != nil {
		t.Fatal(err)
	}
	rev := scopedRevision("r1", 3, "")
	rev.Specs = append(rev.Specs, source.Spec{Origin: "w.yaml", Data: specBytes("w", `"*.pets.example.com"`)})
	res := c.Compile(rev)
	if len(res.Failed()) > 0 {
		t.Fatalf("failed: %v", res.Failed()[0].Err)
	}
	r, warnings, err := res.Resources("edge")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `spec.hosts[0]: wildcard host "*.pets.example.com"`) {
		t.Fatalf("warnings = %q", warnings)
	}
	if rts := r[resourcev3.RouteType]; len(rts) != 1 || len(rts[0].(*routev3.RouteConfiguration).GetVirtualHosts()) != 4 {
		t.Fatalf("want one table with 4 virtual hosts, got %d tables", len(rts))
	}
	if len(r[resourcev3.ScopedRouteType]) != 0 {
		t.Fatal("scopes served to a group that keeps one table")
	}
}

// TestScopedAndProxylessGroupIsRefused: proxyless gRPC clients do not
// support scoped routes; naming a group both is an option error.
func TestScopedAndProxylessGroupIsRefused(t *testing.T) {
	_, err := New(Options{ProxylessGroups: []string{"grpc"}, ScopedRouteGroups: []string{"edge", "grpc"}})
	if err == nil || !strings.Contains(err.Error(), `scoped route groups[1]: node group "grpc" is also a proxyless group`) {
		t.Fatalf("err = %v", err)
	}
}

// TestServedVersionNamesWhatRequestsCarry: ServedVersion is the
// gatehouse.revision the route's table carries: the group version in the
// one-table layout, the spec's route version in a scoped group; empty for
// a spec the group does not serve.
func TestServedVersionNamesWhatRequestsCarry(t *testing.T) {
	c, err := New(Options{ScopedRouteGroups: []string{"edge"}})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Compile(scopedRevision("r1", 3, ""))
	for _, group := range []string{"edge", "other"} {
		r, _, err := res.Resources(group)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r[resourcev3.RouteType] {
			rc := x.(*routev3.RouteConfiguration)
			carried := rc.GetTypedPerFilterConfig()[contract.ExtAuthzFilter]
			for _, vh := range rc.GetVirtualHosts() {
				v := res.ServedVersion(group, vh.GetName()+"/r")
				if v == "" || !strings.Contains(string(carried.GetValue()), v) {
					t.Fatalf("group %s, %s: ServedVersion %q is not the revision its table carries", group, vh.GetName(), v)
				}
			}
		}
	}
	if v := res.ServedVersion("edge", "nope/r"); v != "" {
		t.Fatalf("unknown spec: %q", v)
	}
}
