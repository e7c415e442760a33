package compile

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
)

// deepAnys is a virtual host with Anys at the depths a pruned walk could
// miss: in a map value (typed_per_filter_config), inside another Any
// (FilterConfig.config), in a oneof member of a list element of a message
// in a oneof (the route action's retry host predicates), and a nil Any in
// a oneof. unknownAt lists which of them carry an unknown type.
func deepAnys(t *testing.T, unknownAt ...string) *routev3.VirtualHost {
	t.Helper()
	mk := func(where string) *anypb.Any {
		for _, u := range unknownAt {
			if u == where {
				return &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type" + where}
			}
		}
		a, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	fc, err := anypb.New(&routev3.FilterConfig{Config: mk("FilterConfig")})
	if err != nil {
		t.Fatal(err)
	}
	return &routev3.VirtualHost{Name: "vh", Domains: []string{"a.example.com"}, Routes: []*routev3.Route{
		{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}},
		{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				RetryPolicy: &routev3.RetryPolicy{RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{
					{Name: "ok", ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mk("ok")}},
					{Name: "p", ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mk("RetryHostPredicate")}},
				}},
			}},
			TypedPerFilterConfig: map[string]*anypb.Any{
				"envoy.filters.http.ext_authz": mk("typed_per_filter_config"),
				"envoy.filters.http.other":     fc,
			},
		},
	}}
}

// TestValidateAllFindsDeepUnknownAny: an unknown Any is refused wherever
// it sits, with the path to it, however deep (a pruned walk that skipped
// a map, an Any inside an Any or a oneof member would pass these).
func TestValidateAllFindsDeepUnknownAny(t *testing.T) {
	if err := ValidateAll(deepAnys(t)); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	for _, c := range []struct{ at, path string }{
		{"typed_per_filter_config", `routes[1].typed_per_filter_config["envoy.filters.http.ext_authz"]: embedded message of type "type.googleapis.com/no.such.Typetyped_per_filter_config": the type is unknown`},
		{"FilterConfig", `routes[1].typed_per_filter_config["envoy.filters.http.other"](envoy.config.route.v3.FilterConfig).config: embedded message of type "type.googleapis.com/no.such.TypeFilterConfig": the type is unknown`},
		{"RetryHostPredicate", `routes[1].route.retry_policy.retry_host_predicate[1].typed_config: embedded message of type "type.googleapis.com/no.such.TypeRetryHostPredicate": the type is unknown`},
	} {
		err := ValidateAll(deepAnys(t, c.at))
		if err == nil || !strings.HasPrefix(err.Error(), c.path) {
			t.Errorf("unknown Any at %s: ValidateAll = %v\nwant prefix %s", c.at, err, c.path)
		}
	}
	// A oneof member set to a nil Any does not unpack either.
	vh := deepAnys(t)
	vh.Routes[1].GetRoute().RetryPolicy.RetryHostPredicate[0].ConfigType = &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{}
	want := `routes[1].route.retry_policy.retry_host_predicate[0].typed_config: embedded message of type "": the type is unknown`
	if err := ValidateAll(vh); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("nil Any in a oneof: ValidateAll = %v\nwant prefix %s", err, want)
	}
}

// walkBoth validates m with the plans and with protoreflect alone and
// fails when they disagree on the errors or the Anys validated.
func walkBoth(t *testing.T, what string, m proto.Message) {
	t.Helper()
	byPlan := anyWalker{}
	byPlan.validateMsg(m.ProtoReflect())
	byReflect := anyWalker{reflectOnly: true}
	byReflect.validateMsg(m.ProtoReflect())
	// Errors from one map come in map order (random, in both walks).
	sorted := func(errs []error) string {
		lines := strings.Split(fmt.Sprint(errors.Join(errs...)), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	a, b := sorted(byPlan.errs), sorted(byReflect.errs)
	if a != b || byPlan.anys != byReflect.anys {
		t.Fatalf("%s (%T): by plan %d Anys, %s\nby protoreflect %d Anys, %s", what, m, byPlan.anys, a, byReflect.anys, b)
	}
}

// TestAnyPlanMatchesWalkAnys: the walk by plans validates the same Anys
// and reports the same errors, in the same order and with the same paths,
// as the walk by protoreflect, on everything the compiler builds (bench
// specs, scoped groups, the golden specs with TLS) and on hand-made trees
// with bad and unknown Anys deep inside.
func TestAnyPlanMatchesWalkAnys(t *testing.T) {
	for _, typ := range []proto.Message{&routev3.VirtualHost{}, &listenerv3.Listener{}, &routev3.Route{}, &anypb.Any{}} {
		if planFor(reflect.TypeOf(typ), typ.ProtoReflect().Descriptor()) == nil {
			t.Fatalf("%T has no plan: the comparison below would compare walkAnys with itself", typ)
		}
	}
	// A dynamic message has no plan (its Go type is every type's).
	if planFor(reflect.TypeOf(&dynamicpb.Message{}), (&routev3.VirtualHost{}).ProtoReflect().Descriptor()) != nil {
		t.Fatal("dynamicpb.Message got a plan")
	}

	var results []*Result
	results = append(results, newCompiler(t).Compile(benchRevision(30, -1, 0, 0)))
	sc, err := New(Options{ScopedRouteGroups: []string{"group-01"}, ProxylessGroups: []string{"group-02"}})
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, sc.Compile(scopedBenchRevision(30)))
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	results = append(results, newCompiler(t).Compile(readRevision(t, files...)))
	n := 0
	for _, res := range results {
		for _, g := range []string{"group-00", "group-01", "group-02", "us-east-1", "eu-west-1"} {
			rs, _, err := res.Resources(g)
			if err != nil {
				t.Fatal(err)
			}
			for typ, list := range rs {
				for _, r := range list {
					walkBoth(t, g+" "+typ, r.(proto.Message))
					n++
				}
			}
		}
		for _, s := range res.Published() {
			walkBoth(t, s.Name, s.vhost)
		}
	}
	if n == 0 {
		t.Fatal("no resources")
	}

	walkBoth(t, "deep, valid", deepAnys(t))
	walkBoth(t, "deep, every Any unknown", deepAnys(t, "typed_per_filter_config", "FilterConfig", "RetryHostPredicate"))
	bad, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{}) // invalid: no override
	if err != nil {
		t.Fatal(err)
	}
	vh := deepAnys(t, "RetryHostPredicate")
	vh.Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"x": bad}
	vh.Routes[1].GetRoute().RetryPolicy.RetryHostPredicate[0].ConfigType = &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{}
	walkBoth(t, "deep, invalid, nil Any", vh)
	// A oneof holding a typed nil (which PGV's ValidateAll does not
	// survive): the walks alone.
	for _, m := range []proto.Message{
		&routev3.Route{Action: (*routev3.Route_Route)(nil)},
		&routev3.Route{Action: &routev3.Route_Route{}},
		&routev3.RetryPolicy_RetryHostPredicate{ConfigType: (*routev3.RetryPolicy_RetryHostPredicate_TypedConfig)(nil)},
	} {
		byPlan, byReflect := anyWalker{}, anyWalker{reflectOnly: true}
		byPlan.walk(m.ProtoReflect())
		byReflect.walk(m.ProtoReflect())
		if a, b := fmt.Sprint(byPlan.errs), fmt.Sprint(byReflect.errs); a != b || byPlan.anys != byReflect.anys {
			t.Fatalf("%v: by plan %s, by protoreflect %s", m, a, b)
		}
	}
	walkBoth(t, "extension", &corev3.TypedExtensionConfig{Name: "x", TypedConfig: bad})
}
