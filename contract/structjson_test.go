package contract

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

var structJSONSeeds = []string{
	`{}`,
	`{"a":1,"b":-2.5e-7,"c":1e+21,"d":18446744073709551615,"e":0}`,
	`{"s":"plain","t":"\u003ctag\u003e \u0026 \"q\" \\ \n \u2028 h\u00e9llo","u":"héllo ☃"}`,
	`{"l":[],"m":{},"n":null,"o":[true,false,null,1,"x",{"y":[[]]}]}`,
	`{"long":"` + strings.Repeat("x", 300) + `","nested":{"a":{"b":{"c":["` + strings.Repeat("y", 20000) + `"]}}},"":""}`,
}

// structFromJSON gives what protojson.Unmarshal gives, and takes the
// compact JSON json.Marshal writes.
func TestStructFromJSONMatchesProtojson(t *testing.T) {
	for _, in := range structJSONSeeds {
		got, err := structFromJSON([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		want := &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(in), want); err != nil {
			t.Fatalf("%s: protojson: %v", in, err)
		}
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			t.Errorf("%s (-protojson +structFromJSON):\n%s", in, d)
		}
		checkWire(t, in, []byte(in))
	}
	for _, bad := range []string{``, `[]`, `null`, `{"a":1`, `{"a":1}x`, `{"a" :1}`, `{"a":tru}`, `{"a":"\x01"}`, `{"dup":1,"dup":2}`} {
		if _, err := structFromJSON([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func FuzzStructFromJSON(f *testing.F) {
	for _, s := range structJSONSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var v any
		if json.Unmarshal([]byte(in), &v) != nil {
			return
		}
		raw, err := json.Marshal(v) // the form Wrap hands over
		if err != nil {
			return
		}
		want := &structpb.Struct{}
		wantErr := protojson.Unmarshal(raw, want)
		got, err := structFromJSON(raw)
		if err != nil {
			return // Wrap falls back to encoding/json
		}
		if wantErr != nil {
			t.Fatalf("%s: structFromJSON accepted what protojson rejects (%v)", raw, wantErr)
		}
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			t.Fatalf("%s (-protojson +structFromJSON):\n%s", raw, d)
		}
		checkWire(t, string(raw), raw)
		// The same through a Wrapper that reuses the memory of the
		// inputs fuzzed before.
		fuzzWrapper.Reset()
		_, ts, err := fuzzWrapper.WrapTypedJSON("x", AuthzPolicyType, raw)
		if err != nil {
			t.Fatalf("%s: Wrapper: %v", raw, err)
		}
		if d := cmp.Diff(want, ts.GetValue(), protocmp.Transform()); d != "" {
			t.Fatalf("%s (-protojson +Wrapper):\n%s", raw, d)
		}
	})
}

var fuzzWrapper Wrapper

// checkWire: the wire form structAndWire writes decodes to the Struct it
// returns, and to what proto.Marshal of that Struct decodes to.
func checkWire(t *testing.T, label string, raw []byte) {
	t.Helper()
	st, wire, err := structAndWire(raw, []byte("prefix"))
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if string(wire[:6]) != "prefix" {
		t.Fatalf("%s: the wire form does not extend dst", label)
	}
	got := &structpb.Struct{}
	if err := proto.Unmarshal(wire[6:], got); err != nil {
		t.Fatalf("%s: wire form does not decode: %v", label, err)
	}
	if d := cmp.Diff(st, got, protocmp.Transform()); d != "" {
		t.Fatalf("%s: wire form decodes to another Struct (-returned +decoded):\n%s", label, d)
	}
	std, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := &structpb.Struct{}
	if err := proto.Unmarshal(std, want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(want, got) {
		t.Fatalf("%s: wire form differs in meaning from proto.Marshal's", label)
	}
}

// sameAsStructAndWire: wireOf writes what structAndWire writes, byte for
// byte, and refuses what it refuses.
func sameAsStructAndWire(t *testing.T, raw []byte, keys []string) []string {
	t.Helper()
	_, want, wantErr := structAndWire(raw, []byte("p"))
	got, keys, err := wireOf(raw, []byte("p"), keys)
	if (err == nil) != (wantErr == nil) || string(got) != string(want) {
		t.Fatalf("%.200s: wireOf = %x, %v; structAndWire = %x, %v", raw, got, err, want, wantErr)
	}
	return keys
}

// TestWireOfMatchesStructAndWire: the seeds, refused inputs (duplicate
// keys at every depth among them) and wrapper payloads, one scratch
// slice reused throughout.
func TestWireOfMatchesStructAndWire(t *testing.T) {
	var keys []string
	for _, in := range append(append([]string(nil), structJSONSeeds...),
		``, `[]`, `null`, `{"a":1`, `{"a":1}x`, `{"a" :1}`, `{"a":tru}`, `{"a":"\x01"}`,
		`{"dup":1,"dup":2}`, `{"a":{"d":1,"e":2,"d":3}}`, `{"a":[{"d":1},{"d":1,"d":2}]}`,
		`{"a":{"k":1},"k":2,"b":{"k":3}}`, `{"k":{"k":{"k":1}},"j":1}`, `{"\u0061":1,"a":2}`,
		`{"a":{"b":[1,2,{"c":"d"}],"e":true},"f":null,"g":"h"}`, `{"x":[],"y":{},"z":[[["deep"]]]}`,
		`{"n":-1.5e3,"m":1e400}`, `{"a":1,}`, `{"a":[1,]}`,
	) {
		keys = sameAsStructAndWire(t, []byte(in), keys)
	}
	for _, dup := range []string{`{"dup":1,"dup":2}`, `{"a":{"d":1,"e":2,"d":3}}`, `{"a":[{"d":1},{"d":1,"d":2}]}`, `{"\u0061":1,"a":2}`} {
		if _, _, err := wireOf([]byte(dup), nil, nil); err == nil {
			t.Errorf("%s: wireOf took a duplicate key", dup)
		}
	}
}

// FuzzWireOf: for any input, wireOf gives structAndWire's bytes and
// verdict (with the scratch keys of earlier inputs reused).
func FuzzWireOf(f *testing.F) {
	for _, s := range structJSONSeeds {
		f.Add(s)
	}
	f.Add(`{"a":{"d":1,"e":2,"d":3}}`)
	f.Add(`{"a":[{"d":1},{"d":1,"d":2}]}`)
	var keys []string
	f.Fuzz(func(t *testing.T, in string) {
		keys = sameAsStructAndWire(t, []byte(in), keys)
		var v any
		if json.Unmarshal([]byte(in), &v) != nil {
			return
		}
		if raw, err := json.Marshal(v); err == nil { // the form Wrap hands over
			keys = sameAsStructAndWire(t, raw, keys)
		}
	})
}
