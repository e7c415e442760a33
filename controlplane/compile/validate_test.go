package compile

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
)

// validateAllKnown checks a packed Any through the message given for it
// (so its problems are found without decoding), and decodes an Any whose
// given message is of another type.
func TestValidateAllKnown(t *testing.T) {
	good, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	tec := &corev3.TypedExtensionConfig{Name: "x", TypedConfig: good}
	if err := validateAllKnown(tec, nil); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	// The message given for the Any is what is validated: an
	// ExtAuthzPerRoute with no override violates its required oneof.
	invalid := &extauthzv3.ExtAuthzPerRoute{}
	err = validateAllKnown(tec, map[*anypb.Any]proto.Message{good: invalid})
	if err == nil || !strings.Contains(err.Error(), "typed_config(envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute)") {
		t.Fatalf("validateAllKnown with an invalid packed message = %v", err)
	}
	// A message of another type than the Any's is ignored: the bytes are
	// decoded and checked.
	if err := validateAllKnown(tec, map[*anypb.Any]proto.Message{good: &extauthzv3.ExtAuthz{}}); err != nil {
		t.Fatalf("mismatched packed message: %v", err)
	}
	bad := &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: good.TypeUrl}}
	if err := validateAllKnown(bad, map[*anypb.Any]proto.Message{bad.TypedConfig: &extauthzv3.ExtAuthz{}}); err == nil {
		t.Fatal("an empty ExtAuthzPerRoute passed")
	}
}

// Errors name the path of what failed through lists, maps and Anys.
func TestValidateAllErrorPaths(t *testing.T) {
	bad, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{}) // no override: invalid
	if err != nil {
		t.Fatal(err)
	}
	vh := &routev3.VirtualHost{Name: "vh", Domains: []string{"a.example.com"}, Routes: []*routev3.Route{
		{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}},
		{
			Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action:               &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}},
			TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.ext_authz": bad},
		},
	}}
	err = ValidateAll(vh)
	want := `routes[1].typed_per_filter_config["envoy.filters.http.ext_authz"](envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute): invalid ExtAuthzPerRoute.Override`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("ValidateAll = %v\nwant prefix %s", err, want)
	}
	// An Any in a oneof member (the route action, then a rate-limit
	// action's extension) deep in a list.
	deep := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
			RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
				{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}},
				{ActionSpecifier: &routev3.RateLimit_Action_Extension{Extension: &corev3.TypedExtensionConfig{Name: "e", TypedConfig: bad}}},
			}}},
		}},
	}
	err = ValidateAll(&routev3.VirtualHost{Name: "vh", Domains: []string{"a"}, Routes: []*routev3.Route{deep}})
	want = `routes[0].route.rate_limits[0].actions[1].extension.typed_config(envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute): invalid ExtAuthzPerRoute.Override`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("ValidateAll = %v\nwant prefix %s", err, want)
	}
	unknown := &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}
	if err := ValidateAll(unknown); err == nil || !strings.HasPrefix(err.Error(), `typed_config: embedded message of type "type.googleapis.com/no.such.Type"`) {
		t.Fatalf("unknown type: %v", err)
	}
	if err := ValidateAll(&corev3.TypedExtensionConfig{Name: ""}); err == nil || strings.HasPrefix(err.Error(), ":") {
		t.Fatalf("top-level error: %v", err)
	}
}

// countAnys counts, by brute force, every Any in m (any populated field,
// recursively, and inside each Any).
func countAnys(t *testing.T, m protoreflect.Message) int {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		return 1 + countAnys(t, inner.ProtoReflect())
	}
	n := 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				n += countAnys(t, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				n += countAnys(t, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			n += countAnys(t, v.Message())
		}
		return true
	})
	return n
}

// The walker reaches every Any of every resource the bench specs compile
// to (it only skips fields whose type cannot hold one).
func TestValidateAllReachesEveryAny(t *testing.T) {
	res := newCompiler(t).Compile(benchspec.Revision(20, benchGroups, -1, 0))
	total := 0
	for _, g := range []string{"group-00", "group-01"} {
		rs, _, err := res.Resources(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, list := range rs {
			for _, r := range list {
				m := r.(proto.Message)
				w := anyWalker{}
				w.validateMsg(m.ProtoReflect())
				if want := countAnys(t, m.ProtoReflect()); w.anys != want {
					t.Fatalf("%T: walker validated %d Anys, there are %d", m, w.anys, want)
				}
				total += w.anys
			}
		}
	}
	if total == 0 {
		t.Fatal("no Anys")
	}
}

// The sidecar resources are validated through TypedStructs without their
// Struct (contract's NoStruct wrappers). That finds what decoding the
// resource finds: decoded, the whole TypedStruct passes too and holds no
// Any past the typed_config itself (a Struct cannot hold one). An Any put
// where the stand-in does not apply (another Any, or the same Any with
// another type) is decoded and checked: an unknown type is refused.
func TestSidecarStandInsValidateAsDecoded(t *testing.T) {
	c := newCompiler(t)
	res := c.Compile(benchRevisionCELGo(5, 0))
	n := 0
	for _, s := range res.Specs {
		if s.Err != nil {
			t.Fatalf("%s: %v", s.Origin, s.Err)
		}
		for _, tec := range s.sidecar {
			n++
			w := anyWalker{path: make([]pathSeg, 0, 8)}
			w.validateMsg(tec.ProtoReflect())
			if err := errors.Join(w.errs...); err != nil || w.anys != 1 {
				t.Fatalf("%s decoded: %v, %d Anys validated (want the typed_config alone)", tec.GetName(), err, w.anys)
			}
		}
	}
	if n != 15 {
		t.Fatalf("%d sidecar resources, want 15", n)
	}

	var wrap contract.Wrapper
	tec, ts, err := wrap.WrapTypedJSONNoStruct("x", contract.AuthzPolicyType, []byte(`{"spec":"x","routes":[]}`))
	if err != nil || ts.GetValue() != nil {
		t.Fatalf("stand-in: %v, %v", ts, err)
	}
	if err := validateAllKnown(tec, map[*anypb.Any]proto.Message{tec.TypedConfig: ts}); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	smuggled := &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type", Value: tec.TypedConfig.Value}
	for name, c := range map[string]struct {
		tec    *corev3.TypedExtensionConfig
		packed map[*anypb.Any]proto.Message
	}{
		"another Any":             {&corev3.TypedExtensionConfig{Name: "x", TypedConfig: smuggled}, map[*anypb.Any]proto.Message{tec.TypedConfig: ts}},
		"the Any with a new type": {&corev3.TypedExtensionConfig{Name: "x", TypedConfig: smuggled}, map[*anypb.Any]proto.Message{smuggled: ts}},
	} {
		err := validateAllKnown(c.tec, c.packed)
		if err == nil || !strings.Contains(err.Error(), "the type is unknown") {
			t.Errorf("%s: validateAllKnown = %v, want the unknown type refused", name, err)
		}
	}
}
