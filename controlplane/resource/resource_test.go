package resource

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

type payload struct {
	Name     string            `json:"name"`
	Requests uint32            `json:"requests"`
	Window   int64             `json:"windowNanos"`
	Labels   map[string]string `json:"labels,omitempty"`
}

func TestWrapUnwrapRoundTrip(t *testing.T) {
	in := payload{Name: "petstore", Requests: 4000000000, Window: 86400 * 1e9, Labels: map[string]string{"a": "b"}}
	res, err := Wrap(AuthzPrefix+"petstore", AuthzPolicyType, in)
	if err != nil {
		t.Fatal(err)
	}
	var out payload
	if err := Unwrap(res, AuthzPolicyType, &out); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, out); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	if name, ok := SpecName(res.GetName(), AuthzPrefix); !ok || name != "petstore" {
		t.Fatalf("SpecName = %q, %v", name, ok)
	}
}

func TestUnwrapRejectsWrongPayloadType(t *testing.T) {
	res, err := Wrap("x", RateLimitRulesType, payload{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var out payload
	if err := Unwrap(res, AuthzPolicyType, &out); err == nil {
		t.Fatal("Unwrap accepted a payload of another type")
	}
}

func TestCollect(t *testing.T) {
	mk := func(name, typ string, p payload) *anypb.Any {
		res, err := Wrap(name, typ, p)
		if err != nil {
			t.Fatal(err)
		}
		a, err := anypb.New(res)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	specOf := func(p *payload) string { return p.Name }
	good := []*anypb.Any{
		mk(AuthzPrefix+"a", AuthzPolicyType, payload{Name: "a"}),
		mk(RateLimitPrefix+"a", RateLimitRulesType, payload{Name: "a"}), // another concern: skipped
		mk(AuthzPrefix+"b", AuthzPolicyType, payload{Name: "b", Requests: 7}),
	}
	got, err := Collect(good, AuthzPrefix, AuthzPolicyType, specOf)
	if err != nil || len(got) != 2 || got[1].Requests != 7 {
		t.Fatalf("Collect = %+v, %v", got, err)
	}
	for name, bad := range map[string]*anypb.Any{
		"spec mismatch": mk(AuthzPrefix+"c", AuthzPolicyType, payload{Name: "other"}),
		"payload type":  mk(AuthzPrefix+"c", RateLimitRulesType, payload{Name: "c"}),
		"not an extension config": func() *anypb.Any {
			a, _ := anypb.New(&structpb.Struct{})
			return a
		}(),
	} {
		if _, err := Collect(append(good, bad), AuthzPrefix, AuthzPolicyType, specOf); err == nil {
			t.Errorf("%s: Collect accepted a bad resource", name)
		}
	}
}
