package contract

import (
	"encoding/json"
	"strings"
	"testing"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
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

// WrapTyped writes the Any's bytes itself; they decode to exactly the
// TypedStruct it returns (which is what compile validates).
func TestWrapTypedAnyHoldsTheTypedStruct(t *testing.T) {
	in := map[string]any{"name": "petstore", "n": 1.5, "list": []any{"a", true, nil, map[string]any{"k": strings.Repeat("v", 200)}}, "empty": map[string]any{}}
	tec, ts, err := WrapTyped(AuthzPrefix+"petstore", AuthzPolicyType, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := tec.GetTypedConfig().GetTypeUrl(); got != "type.googleapis.com/xds.type.v3.TypedStruct" {
		t.Fatalf("type URL %q", got)
	}
	got := &xdstype.TypedStruct{}
	if err := tec.GetTypedConfig().UnmarshalTo(got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ts, got, protocmp.Transform()); d != "" {
		t.Fatalf("Any holds another TypedStruct (-returned +packed):\n%s", d)
	}
	ref, err := anypb.New(ts)
	if err != nil {
		t.Fatal(err)
	}
	want := &xdstype.TypedStruct{}
	if err := ref.UnmarshalTo(want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(want, got) {
		t.Fatal("Any differs in meaning from anypb.New of the same TypedStruct")
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

// Wrap builds the Struct without protojson; it must be exactly the Struct
// protojson.Unmarshal makes of the payload's JSON form.
func TestWrapStructMatchesProtojson(t *testing.T) {
	type inner struct {
		F   float64           `json:"f"`
		N   *int              `json:"n"`
		L   []any             `json:"l"`
		M   map[string]string `json:"m"`
		E   []string          `json:"e"`
		Nil []string          `json:"nil"`
	}
	in := map[string]any{
		"s":     "héllo \u2028 <tag> & \"q\"",
		"big":   uint64(1<<63 + 12345),
		"neg":   -42,
		"float": 1.5e-7,
		"bool":  true,
		"null":  nil,
		"inner": inner{F: 3.25, L: []any{1, "two", false, nil, map[string]any{"x": []int{}}}, M: map[string]string{"b": "2", "a": "1"}, E: []string{}},
		"list":  []payload{{Name: "a", Requests: 4000000000, Window: 86400 * 1e9}},
	}
	res, err := Wrap("x", AuthzPolicyType, in)
	if err != nil {
		t.Fatal(err)
	}
	ts := &xdstype.TypedStruct{}
	if err := res.GetTypedConfig().UnmarshalTo(ts); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, want); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, ts.GetValue(), protocmp.Transform()); d != "" {
		t.Fatalf("Struct (-protojson +Wrap):\n%s", d)
	}
	for _, bad := range []any{nil, []int{1}, "s", 3} {
		if _, err := Wrap("x", AuthzPolicyType, bad); err == nil {
			t.Errorf("Wrap(%#v) accepted a payload that is not a JSON object", bad)
		}
	}
}

// A Wrapper reusing its memory gives, payload after payload, what
// WrapTypedJSON gives, and the extension configs it returned earlier stay
// intact after a Reset.
func TestWrapperReuse(t *testing.T) {
	payloads := []string{
		`{"a":{"b":[1,2,{"c":"d"}],"e":true},"f":null,"g":"h"}`,
		`{"x":[],"y":{},"z":[[["deep"]]]}`,
		`{"a":{"b":[3],"e":false,"k1":"1","k2":"2","k3":"3","k4":"4","k5":"5","k6":"6","k7":"7","k8":"8","k9":"9"}}`,
		`{"only":"one"}`,
		`{"l":[{"m":1},{"n":2},{"o":[true,false,null,"s",-1.5e3]}]}`,
	}
	var w Wrapper
	var kept []*corev3.TypedExtensionConfig
	for round := 0; round < 3; round++ {
		w.Reset()
		for i := range payloads {
			raw := []byte(payloads[(i+round)%len(payloads)])
			tec, ts, err := w.WrapTypedJSON("x", AuthzPolicyType, raw)
			if err != nil {
				t.Fatal(err)
			}
			_, want, err := WrapTypedJSON("x", AuthzPolicyType, raw)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, ts, protocmp.Transform()); d != "" {
				t.Fatalf("round %d, %s: reused memory gives another TypedStruct (-fresh +reused):\n%s", round, raw, d)
			}
			got := &xdstype.TypedStruct{}
			if err := tec.GetTypedConfig().UnmarshalTo(got); err != nil || !proto.Equal(got, ts) {
				t.Fatalf("round %d, %s: Any does not hold the TypedStruct (%v)", round, raw, err)
			}
			kept = append(kept, tec)
		}
	}
	for i, tec := range kept {
		got := &xdstype.TypedStruct{}
		if err := tec.GetTypedConfig().UnmarshalTo(got); err != nil {
			t.Fatal(err)
		}
		_, want, _ := WrapTypedJSON("x", AuthzPolicyType, []byte(payloads[(i%len(payloads)+i/len(payloads))%len(payloads)]))
		if !proto.Equal(got, want) {
			t.Fatalf("extension config %d changed after the Wrapper reused its memory", i)
		}
	}
}

// Encode writes what json.Marshal writes.
func TestWrapperEncodeIsMarshal(t *testing.T) {
	var w Wrapper
	for _, v := range []any{
		payload{Name: "<a&b>", Requests: 1, Labels: map[string]string{"z": "1", "a": "\u2028"}},
		map[string]any{"f": 1.5e-7, "n": nil, "l": []int{1, 2}},
		"plain",
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.Encode(v)
		if err != nil || string(got) != string(want) {
			t.Fatalf("Encode(%v) = %s, %v; json.Marshal gives %s", v, got, err, want)
		}
	}
	if _, err := w.Encode(func() {}); err == nil {
		t.Fatal("Encode of a func succeeded")
	}
}

// The NoStruct wrappers give the extension config WrapTypedJSON gives,
// byte for byte, and a TypedStruct with the payload type and no Value;
// payloads the fast path does not take get WrapTypedJSON's whole result.
func TestWrapperNoStruct(t *testing.T) {
	payloads := []string{
		`{"a":{"b":[1,2,{"c":"d"}],"e":true},"f":null,"g":"h"}`,
		`{"x":[],"y":{},"z":[[["deep"]]]}`,
		`{"only":"one","esc":"\u003c\u2028\"","n":-1.5e-7}`,
		`{"big":"` + strings.Repeat("x", 300) + `"}`,
	}
	var w Wrapper
	for round := 0; round < 2; round++ {
		for _, p := range payloads {
			raw := []byte(p)
			tec, ts, err := w.WrapTypedJSONNoStruct("x", RateLimitRulesType, raw)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := WrapTypedJSON("x", RateLimitRulesType, raw)
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tec)
			wb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if string(gb) != string(wb) || string(tec.GetTypedConfig().GetValue()) != string(want.GetTypedConfig().GetValue()) {
				t.Fatalf("%s: NoStruct's extension config differs from WrapTypedJSON's", p)
			}
			if ts.GetTypeUrl() != RateLimitRulesType || ts.GetValue() != nil {
				t.Fatalf("%s: TypedStruct %v, want the type URL and no Value", p, ts)
			}
		}
	}
	// Through Encode, as WrapTyped.
	v := payload{Name: "<a&b>", Requests: 7, Labels: map[string]string{"z": "1"}}
	tec, ts, err := w.WrapTypedNoStruct("y", AccessLogSettingType, v)
	want, _, _ := WrapTyped("y", AccessLogSettingType, v)
	if err != nil || !proto.Equal(tec, want) || ts.GetValue() != nil {
		t.Fatalf("WrapTypedNoStruct = %v, %v, %v; want %v", tec, ts, err, want)
	}
	if _, _, err := w.WrapTypedNoStruct("y", AccessLogSettingType, func() {}); err == nil || !strings.Contains(err.Error(), "resource y: encoding payload") {
		t.Fatalf("WrapTypedNoStruct of a func: %v", err)
	}
	// A duplicate key is not the fast path's: the whole TypedStruct.
	tec, ts, err = w.WrapTypedJSONNoStruct("x", AuthzPolicyType, []byte(`{"a":1,"a":2}`))
	if err != nil || ts.GetValue() == nil || ts.GetValue().GetFields()["a"].GetNumberValue() != 2 {
		t.Fatalf("duplicate key: %v, %v, %v", tec, ts, err)
	}
	if _, _, err := w.WrapTypedJSONNoStruct("x", AuthzPolicyType, []byte(`[1]`)); err == nil {
		t.Fatal("a payload that is not an object was wrapped")
	}
}

// BenchmarkWrapper: one sidecar payload of the compile bench's size
// wrapped by a reused Wrapper, with the Struct built (WrapTypedJSON) and
// without it (WrapTypedJSONNoStruct).
func BenchmarkWrapper(b *testing.B) {
	raw := []byte(`{"spec":"svc-0001","providers":[{"name":"corp","kind":"jwt","jwt":{"issuer":"https://idp.example.com/","audiences":["svc-0001"],"jwksUri":"https://idp.example.com/.well-known/jwks.json","algorithms":["RS256","ES256"],"clockSkew":"30s"}},{"name":"partners","kind":"apiKey","apiKey":{"header":"x-api-key","keys":[{"id":"acme","sha256":"66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1","labels":{"plan":"gold"}}]}}],"routes":[{"id":"svc-0001/list","mode":"required","anyOf":["corp","partners"],"rules":[{"allow":true,"scopes":["items:read"]},{"allow":true,"when":"identity.kind == \"apiKey\""}]},{"id":"svc-0001/item","mode":"required","anyOf":["partners"],"rules":[{"allow":true,"claims":{"plan":"gold"}}]},{"id":"svc-0001/health","mode":"public"}]}`)
	for _, c := range []struct {
		name string
		wrap func(w *Wrapper) (*xdstype.TypedStruct, error)
	}{
		{"struct", func(w *Wrapper) (*xdstype.TypedStruct, error) {
			_, ts, err := w.WrapTypedJSON("x", AuthzPolicyType, raw)
			return ts, err
		}},
		{"nostruct", func(w *Wrapper) (*xdstype.TypedStruct, error) {
			_, ts, err := w.WrapTypedJSONNoStruct("x", AuthzPolicyType, raw)
			return ts, err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var w Wrapper
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				w.Reset()
				if _, err := c.wrap(&w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
