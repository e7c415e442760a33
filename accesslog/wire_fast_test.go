package accesslog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The pieces of the fast decoder, each against what it stands for.

// FuzzNextField: next reads a field as protowire does, errors included.
func FuzzNextField(f *testing.F) {
	for _, s := range [][]byte{{}, {0x08, 0x96, 0x01}, {0x0a, 0x02, 'h', 'i'}, {0x0a, 0x05, 'h'}, {0x00, 0x01},
		{0x80, 0x01, 0x00}, {0x0b, 0x0c}, {0x0d, 1, 2, 3, 4}, {0x09, 1}, {0x0f}, {0xff, 0xff, 0xff, 0xff, 0x7f, 0},
		{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		num, typ, v, val, n := next(b)
		wnum, wtyp, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			if n >= 0 {
				t.Fatalf("next read %d bytes of a bad tag", n)
			}
			return
		}
		var wv uint64
		var wval []byte
		var vn int
		switch wtyp {
		case protowire.VarintType:
			wv, vn = protowire.ConsumeVarint(b[tn:])
		case protowire.BytesType:
			wval, vn = protowire.ConsumeBytes(b[tn:])
		default:
			vn = protowire.ConsumeFieldValue(wnum, wtyp, b[tn:])
		}
		if vn < 0 {
			if n >= 0 {
				t.Fatalf("next read %d bytes of a bad value", n)
			}
			return
		}
		if n != tn+vn || num != wnum || typ != wtyp || v != wv || !bytes.Equal(val, wval) || (val == nil) != (wval == nil) {
			t.Fatalf("next = %d %d %d %q %d, protowire %d %d %d %q %d", num, typ, v, val, n, wnum, wtyp, wv, wval, tn+vn)
		}
	})
}

// FuzzValidUTF8: validUTF8 is utf8.Valid.
func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{"", "abc", "abcdefgh", "abcdefghü", "abcdefgh\xff", "\xff", "ü€😀", "abcdefg\xc3", "abcdefg\xc3\xbc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if validUTF8(b) != utf8.Valid(b) {
			t.Fatalf("validUTF8(%q) = %v", b, validUTF8(b))
		}
	})
}

// FuzzAppendJSONString: the run-at-a-time appendJSONString writes what
// the byte-at-a-time one did, for any bytes (invalid UTF-8 included).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "t\"\\\x01\x1f\x7f", "ü€😀", "\xff\xfe", "a\xc3", "\u2028<>&", "x\x00y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := appendJSONString([]byte("{"), b), refAppendJSONString([]byte("{"), b)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %q, was %q", b, got, want)
		}
		if s := appendJSONString(nil, string(b)); string(s) != string(got[1:]) {
			t.Fatalf("string and []byte forms differ: %q %q", s, got[1:])
		}
	})
}

// FuzzAppendLower: appendLower is strings.ToLower.
func FuzzAppendLower(f *testing.F) {
	for _, s := range []string{"", "x-trace", "X-Trace", "ÜNÏ", "x-Ü", "AB\xff", "İ-upper-dot"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := appendLower([]byte("pre"), b), refAppendLower([]byte("pre"), b)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendLower(%q) = %q, was %q", b, got, want)
		}
	})
}

// TestSortByKeyOrder: sortByKey orders as slices.SortFunc did, equal
// names (which differ only in case before lower-casing) included, at
// every length either side of the insertion-sort cut-off.
func TestSortByKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "accept", "x-trace", "x-trace", "cookie", "b", ""}
	for n := 0; n <= 30; n++ {
		for range 200 {
			kept := make([]wireKV, n)
			for i := range kept {
				kept[i] = wireKV{[]byte(names[rng.IntN(len(names))]), []byte(fmt.Sprint(i))}
			}
			want := slices.Clone(kept)
			slices.SortFunc(want, func(a, b wireKV) int { return bytes.Compare(a.k, b.k) })
			sortByKey(kept)
			for i := range kept {
				if string(kept[i].k) != string(want[i].k) || string(kept[i].v) != string(want[i].v) {
					t.Fatalf("n=%d: position %d is %s=%s, slices.SortFunc put %s=%s there", n, i, kept[i].k, kept[i].v, want[i].k, want[i].v)
				}
			}
		}
	}
}

// TestEnumNames: the name tables give String() for every value, known or
// not.
func TestEnumNames(t *testing.T) {
	for v := int32(-3); v < 40; v++ {
		if got, want := enumString(logTypeNames, alv3.AccessLogType(v)), alv3.AccessLogType(v).String(); got != want {
			t.Errorf("log type %d: %q, want %q", v, got, want)
		}
		if got, want := enumString(methodNames, corev3.RequestMethod(v)), corev3.RequestMethod(v).String(); got != want {
			t.Errorf("method %d: %q, want %q", v, got, want)
		}
		if got, want := enumString(tlsVersionNames, alv3.TLSProperties_TLSVersion(v)), alv3.TLSProperties_TLSVersion(v).String(); got != want {
			t.Errorf("TLS version %d: %q, want %q", v, got, want)
		}
	}
}

// TestKeptHeadersDecidedOnce: a named route's kept headers and their
// treatment are decided when the Redactor is built, from the spec alone
// (every name the route keeps, treated as secretHeader and isURLHeader
// say), and decoding entries with any number of hostile header names
// adds nothing to them: the tables are bounded by the settings, not by
// what clients send.
func TestKeptHeadersDecidedOnce(t *testing.T) {
	p := diffPolicies()[0]
	before := map[string]int{}
	for id, rp := range p.routes {
		if rp.kept == nil {
			t.Fatalf("route %s: no kept-header table", id)
		}
		n := len(rp.kept.few) + len(rp.kept.many)
		if n != len(rp.keep) {
			t.Fatalf("route %s: %d names decided, %d kept", id, n, len(rp.keep))
		}
		for name := range rp.keep {
			act, ok := rp.kept.lookup(name)
			want := headerPlain
			if p.secretHeader(rp, name) {
				want = headerSecret
			} else if isURLHeader(name) {
				want = headerURL
			}
			if !ok || act != want {
				t.Fatalf("route %s header %s: %v %v, want %v", id, name, act, ok, want)
			}
		}
		before[id] = n
	}
	if p.unknown.kept != nil || p.pending.kept != nil {
		t.Fatal("the no-route and pending policies keep every header: they have no table")
	}
	var d WireDecoder
	for i := range 5000 {
		e := &alv3.HTTPAccessLogEntry{
			CommonProperties: &alv3.AccessLogCommon{RouteName: diffRoutes[i%len(diffRoutes)]},
			Request: &alv3.HTTPRequestProperties{RequestHeaders: map[string]string{
				fmt.Sprintf("x-hostile-%d", i): "v", fmt.Sprintf("X-Token-%d", i): "s", "x-trace": "t"}},
		}
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.FromHTTP(p, "n", "g", b); err != nil {
			t.Fatal(err)
		}
	}
	for id, rp := range p.routes {
		if n := len(rp.kept.few) + len(rp.kept.many); n != before[id] {
			t.Fatalf("route %s: %d kept names after decoding, %d before", id, n, before[id])
		}
	}
}

// TestByLength: the length-grouped query-name set holds what the map
// holds, nothing more.
func TestByLength(t *testing.T) {
	set := map[string]bool{}
	for _, n := range DefaultRedactQuery {
		set[n] = true
	}
	set["ü-key"] = true
	b := newByLength(set)
	probes := append([]string{"", "page", "q", "tokens", "toke", "ü-key", "ü-kez", "x-amz-security-token-x", "SIG"}, DefaultRedactQuery...)
	for _, n := range probes {
		if b.has(n) != set[n] {
			t.Errorf("has(%q) = %v, the map says %v", n, b.has(n), set[n])
		}
	}
	if (byLength)(nil).has("token") {
		t.Error("an empty set has a name")
	}
}
