package resource

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
