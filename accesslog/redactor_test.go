package accesslog

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-edge/gatehouse/spec"
)

func TestCompileExampleSpecs(t *testing.T) {
	docs, err := spec.Load(filepath.Join("..", "deploy", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	var petstore *SpecSettings
	for _, d := range docs {
		s, err := Compile(&d.EdgeRoute)
		if err != nil {
			t.Fatalf("%s: %v", d.Name(), err)
		}
		if len(s.Routes) != len(d.EdgeRoute.Spec.Routes) {
			t.Fatalf("%s: %d routes compiled", d.Name(), len(s.Routes))
		}
		// Settings survive JSON (the xDS payload).
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back SpecSettings
		if err := json.Unmarshal(b, &back); err != nil || len(back.Routes) != len(s.Routes) {
			t.Fatalf("round trip: %v", err)
		}
		if d.Name() == "petstore" {
			petstore = s
		}
	}
	if petstore == nil {
		t.Fatal("petstore example missing")
	}
	lp := petstore.Routes["petstore/list-pets"]
	if !slices.Equal(lp.Headers, []string{"user-agent", "x-request-id"}) || !slices.Contains(lp.Redact, "x-api-key") || lp.SampleRate != 1 {
		t.Fatalf("list-pets settings %+v", lp)
	}
	if _, err := Compile(nil); err == nil {
		t.Fatal("nil spec compiled")
	}
	bad := spec.EdgeRoute{Metadata: spec.Metadata{Name: "x"}, Spec: spec.Spec{Routes: []spec.Route{{Name: "a"}, {Name: "a"}}}}
	if _, err := Compile(&bad); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate routes: %v", err)
	}
}

func TestRedactQuery(t *testing.T) {
	p := NewRedactor([]*SpecSettings{{Spec: "s", Routes: map[string]RouteSettings{"s/r": {RedactQuery: []string{"partner_code"}, SampleRate: 1}}}}, nil)
	for in, want := range map[string]string{
		"page=2":                            "page=2",
		"token=abc&page=2":                  "token=REDACTED&page=2",
		"API_KEY=abc":                       "API_KEY=REDACTED",
		"access%5Ftoken=abc":                "access%5Ftoken=REDACTED",
		"partner_code=zz&x":                 "partner_code=REDACTED&x",
		"a=1&&b":                            "a=1&&b",
		"password":                          "password=REDACTED",
		"sig=a%20b&X-Amz-Signature=ff&q=ok": "sig=REDACTED&X-Amz-Signature=REDACTED&q=ok",
	} {
		if got := p.RedactQuery("s/r", in); got != want {
			t.Errorf("RedactQuery(%q) = %q, want %q", in, got, want)
		}
	}
	// The route-specific name is not masked on another spec's routes
	// (they say what they log)...
	p = NewRedactor([]*SpecSettings{
		{Spec: "s", Routes: map[string]RouteSettings{"s/r": {RedactQuery: []string{"partner_code"}, SampleRate: 1}}},
		{Spec: "o", Routes: map[string]RouteSettings{"o/r": {SampleRate: 1}}},
	}, nil)
	if got := p.RedactQuery("o/r", "partner_code=zz"); got != "partner_code=zz" {
		t.Errorf("other spec's route: %q", got)
	}
	// ...but it is on requests with no route (the union of all specs)...
	if got := p.RedactQuery("", "partner_code=zz&page=2"); got != "partner_code=REDACTED&page=2" {
		t.Errorf("no route: %q", got)
	}
	// ...and a route whose settings have not arrived masks every value.
	if got := p.RedactQuery("other/route", "partner_code=zz&page=2"); got != "partner_code=REDACTED&page=REDACTED" {
		t.Errorf("route without settings yet: %q", got)
	}
}

func TestHMACMaskCorrelatesWithoutStoring(t *testing.T) {
	p := NewRedactor(nil, []byte("0123456789abcdef-hmac-key"))
	e := &alv3.HTTPAccessLogEntry{
		CommonProperties: &alv3.AccessLogCommon{StartTime: timestamppb.New(time.Unix(1, 0))},
		Request: &alv3.HTTPRequestProperties{Path: "/x?token=s3cr3t-value", RequestMethod: corev3.RequestMethod_GET,
			RequestHeaders: map[string]string{"Authorization": "Bearer s3cr3t-value", "X-Other-Token": "s3cr3t-value"}},
	}
	r := p.FromHTTP("n", "g", e)
	if strings.Contains(r.Query+r.Headers, "s3cr3t") {
		t.Fatalf("secret kept: %q %q", r.Query, r.Headers)
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(r.Headers), &h); err != nil {
		t.Fatal(err)
	}
	// Same secret, same tag; the header whose name says token is masked too.
	if !strings.HasPrefix(h["authorization"], Mask+".") || h["authorization"] == h["x-other-token"] || r.Query != "token="+h["x-other-token"] {
		t.Fatalf("hmac tags differ or missing: %v %q", h, r.Query)
	}
	other := NewRedactor(nil, []byte("another-key-0123456789")).FromHTTP("n", "g", e)
	if other.Headers == r.Headers {
		t.Fatal("tag does not depend on the key")
	}
}

func TestSamplingKeepsDenials(t *testing.T) {
	p := NewRedactor([]*SpecSettings{{Spec: "s", Routes: map[string]RouteSettings{"s/r": {SampleRate: 0.1}}}}, nil)
	kept, keptDenied := 0, 0
	for i := 0; i < 10000; i++ {
		r := Record{Route: "s/r", RequestID: "req-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String(), Status: 200}
		if p.Keep(&r) {
			kept++
		}
		r.Status = 403
		if p.Keep(&r) {
			keptDenied++
		}
	}
	if kept < 700 || kept > 1300 {
		t.Fatalf("kept %d of 10000 at rate 0.1", kept)
	}
	if keptDenied != 10000 {
		t.Fatalf("kept %d of 10000 denials", keptDenied)
	}
}

func TestRecordBinaryRoundTrip(t *testing.T) {
	r := Record{Time: time.UnixMilli(1767225600123).UTC(), RequestID: "id", Kind: "http", Route: "a/b", Status: 403,
		DurationUS: 1234, BytesIn: 1 << 40, ClientIP: "::1", ClientPort: 65535, Headers: `{"a":"b"}`, Decision: "deny", Subject: "ü"}
	b := r.AppendBinary(nil)
	var back Record
	rest, err := back.DecodeBinary(b)
	if err != nil || len(rest) != 0 || back != r {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if _, err := new(Record).DecodeBinary(b[:len(b)-1]); err == nil {
		t.Fatal("truncated record decoded")
	}
}

func TestHeadersJSONIsValid(t *testing.T) {
	p := NewRedactor(nil, nil)
	in := map[string]string{"X-Quote": `a"b\c`, "x-ctl": "a\x00b\n\tc", "x-utf8": "grüße → 東京", "x-bad": "a\xffb", "x-html": "<script>&"}
	got := p.headers("", in)
	var back map[string]string
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("not JSON: %s: %v", got, err)
	}
	want := map[string]string{"x-quote": `a"b\c`, "x-ctl": "a\x00b\n\tc", "x-utf8": "grüße → 東京", "x-bad": "a\ufffdb", "x-html": "<script>&"}
	if len(back) != len(want) {
		t.Fatalf("got %v", back)
	}
	for k, v := range want {
		if back[k] != v {
			t.Fatalf("%s = %q, want %q", k, back[k], v)
		}
	}
}

func FuzzHeadersJSON(f *testing.F) {
	f.Add("user-agent", "curl/8\x00\"\\")
	p := NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, k, v string) {
		got := p.headers("", map[string]string{k: v})
		if got == "" {
			return
		}
		var back map[string]string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Fatalf("%q: %v", got, err)
		}
	})
}

func TestStrictRedactorMasksEverything(t *testing.T) {
	p := StrictRedactor(nil)
	e := &alv3.HTTPAccessLogEntry{
		CommonProperties: &alv3.AccessLogCommon{StartTime: timestamppb.New(time.Unix(1, 0)), RouteName: "s/r"},
		Request: &alv3.HTTPRequestProperties{Path: "/x?partner_code=abc&page=2",
			RequestHeaders: map[string]string{"x-custom-secret": "abc", "user-agent": "ua", "x-request-id": "id1"}},
	}
	r := p.FromHTTP("n", "g", e)
	if r.Query != "partner_code=REDACTED&page=REDACTED" {
		t.Fatalf("query %q", r.Query)
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(r.Headers), &h); err != nil {
		t.Fatal(err)
	}
	if h["x-custom-secret"] != Mask || h["user-agent"] != "ua" || h["x-request-id"] != "id1" {
		t.Fatalf("headers %v", h)
	}
}

// partnerSpec is spec S of the security review: an API-key provider
// reading x-partner-key or ?pk, and a route redacting x-tenant-ref.
func partnerSpec(t *testing.T) *SpecSettings {
	t.Helper()
	ss, err := Compile(&spec.EdgeRoute{
		Metadata: spec.Metadata{Name: "partners"},
		Spec: spec.Spec{
			Identity: &spec.Identity{APIKeys: []spec.APIKeyProvider{{Name: "partner", Header: "X-Partner-Key", Query: "pk"}}},
			Routes:   []spec.Route{{Name: "orders", AccessLog: &spec.AccessLog{Headers: []string{"x-partner-key", "user-agent"}, Redact: []string{"x-tenant-ref"}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// redactBoth runs an entry through FromHTTP and the wire reader and
// checks they agree.
func redactBoth(t *testing.T, p *Redactor, e *alv3.HTTPAccessLogEntry) Record {
	t.Helper()
	r := p.FromHTTP("n", "g", e)
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var d WireDecoder
	w, err := d.FromHTTP(p, "n", "g", b)
	if err != nil {
		t.Fatal(err)
	}
	if w != r {
		t.Fatalf("wire and proto records differ:\nwire  %+v\nproto %+v", w, r)
	}
	return r
}

// TestUnknownRouteGetsEverySpecsRedaction: a request Envoy logs with no
// route (404, NR) is redacted with the union of every spec's names, not
// just the defaults; one on a route whose settings have not arrived has
// every value masked.
func TestUnknownRouteGetsEverySpecsRedaction(t *testing.T) {
	p := NewRedactor([]*SpecSettings{partnerSpec(t)}, nil)
	for _, route := range []string{"", "partners/not-yet-known"} {
		r := redactBoth(t, p, &alv3.HTTPAccessLogEntry{
			CommonProperties: &alv3.AccessLogCommon{StartTime: timestamppb.New(time.Unix(1, 0)), RouteName: route,
				ResponseFlags: &alv3.ResponseFlags{NoRouteFound: true}},
			Request: &alv3.HTTPRequestProperties{Path: "/orderz?pk=s3cr3t&page=2", RequestMethod: corev3.RequestMethod_GET,
				RequestHeaders: map[string]string{"x-partner-key": "s3cr3t", "X-Tenant-Ref": "s3cr3t", "user-agent": "curl"}},
		})
		if strings.Contains(r.Query+r.Headers+r.Path, "s3cr3t") {
			t.Fatalf("route %q: secret kept: path %q query %q headers %s", route, r.Path, r.Query, r.Headers)
		}
		wantQuery := "pk=REDACTED&page=2" // no route: the union of every spec's names
		if route != "" {
			wantQuery = "pk=REDACTED&page=REDACTED" // settings not here yet: everything
		}
		if r.Query != wantQuery || !strings.Contains(r.Headers, `"user-agent":"curl"`) {
			t.Fatalf("route %q: query %q headers %s", route, r.Query, r.Headers)
		}
	}
}

// TestURLHeadersPathAndSecretWords: query strings inside URL-valued
// headers and in the path are redacted, and header names with the
// extended secret words are masked on every route.
func TestURLHeadersPathAndSecretWords(t *testing.T) {
	ss := partnerSpec(t)
	rs := ss.Routes["partners/orders"]
	rs.Headers = append(rs.Headers, "referer", "origin", "x-original-url", "x-forwarded-uri", "x-hub-signature", "x-auth-user",
		"x-goog-iap-jwt-assertion", "x-bearer", "accept")
	ss.Routes["partners/orders"] = rs
	for _, p := range []*Redactor{NewRedactor([]*SpecSettings{ss}, nil), NewRedactor([]*SpecSettings{ss}, []byte("0123456789abcdef-hmac"))} {
		for _, route := range []string{"", "partners/orders"} {
			r := redactBoth(t, p, &alv3.HTTPAccessLogEntry{
				CommonProperties: &alv3.AccessLogCommon{StartTime: timestamppb.New(time.Unix(1, 0)), RouteName: route},
				Request: &alv3.HTTPRequestProperties{Path: "/login;jsessionid=s3cr3t/x%3Ftoken=s3cr3t&a=1?q=ok", RequestMethod: corev3.RequestMethod_GET,
					RequestHeaders: map[string]string{
						"referer":                  "https://x/?access_token=s3cr3t",
						"origin":                   "https://user:s3cr3t@x.example",
						"x-original-url":           "/cb#access_token=s3cr3t&state=ok",
						"x-forwarded-uri":          "/a;sid=s3cr3t?pk=s3cr3t",
						"x-hub-signature":          "sha1=s3cr3t",
						"x-auth-user":              "s3cr3t",
						"x-goog-iap-jwt-assertion": "s3cr3t",
						"x-bearer":                 "s3cr3t",
						"accept":                   "text/html",
					}},
			})
			if strings.Contains(r.Query+r.Headers+r.Path, "s3cr3t") {
				t.Fatalf("route %q: secret kept: path %q query %q headers %s", route, r.Path, r.Query, r.Headers)
			}
			var h map[string]string
			if err := json.Unmarshal([]byte(r.Headers), &h); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h["x-hub-signature"], Mask) || !strings.HasPrefix(h["referer"], "https://x/?access_token="+Mask) ||
				!strings.HasSuffix(h["x-original-url"], "&state=ok") || h["accept"] != "text/html" || r.Query != "q=ok" ||
				!strings.HasPrefix(r.Path, "/login;jsessionid="+Mask) || !strings.HasSuffix(r.Path, "&a=1") {
				t.Fatalf("route %q: path %q query %q headers %v", route, r.Path, r.Query, h)
			}
		}
	}
	// A path without parameters is kept as sent.
	if got := NewRedactor(nil, nil).RedactPath("", "/pets/42"); got != "/pets/42" {
		t.Fatalf("plain path: %q", got)
	}
}

// FuzzRedactURLAndPath: any path, query or URL-valued header gives valid
// records on both readers, and a value after token= never survives.
func FuzzRedactURLAndPath(f *testing.F) {
	for _, s := range []string{"/login;jsessionid=s3cr3t/x%3Ftoken=s3cr3t&a=1", "https://user:pw@x/?access_token=s3cr3t#id_token=s3cr3t", "/a;;=;b=c%3f%3F&", "%3", "://@", ""} {
		f.Add(s, "s3cr3t")
	}
	p := NewRedactor(nil, []byte("fuzz-hmac-key-0123456789"))
	f.Fuzz(func(t *testing.T, u, secret string) {
		e := &alv3.HTTPAccessLogEntry{
			CommonProperties: &alv3.AccessLogCommon{StartTime: timestamppb.New(time.Unix(1, 0))},
			Request:          &alv3.HTTPRequestProperties{Path: u, RequestHeaders: map[string]string{"referer": u, "x-original-url": u}},
		}
		if !utf8.ValidString(u) {
			return
		}
		r := redactBoth(t, p, e)
		if r.Headers != "" {
			var h map[string]string
			if err := json.Unmarshal([]byte(r.Headers), &h); err != nil {
				t.Fatalf("headers JSON %q: %v", r.Headers, err)
			}
		}
		if secret == "" || strings.ContainsAny(secret, "&;#?%+/=\"\\") || !utf8.ValidString(secret) ||
			strings.HasPrefix(Mask+".", secret) || strings.HasPrefix(secret, Mask) {
			return
		}
		for _, v := range []string{"/x?token=" + secret, "/x;token=" + secret, "/x%3Ftoken=" + secret} {
			got := p.FromHTTP("n", "g", &alv3.HTTPAccessLogEntry{Request: &alv3.HTTPRequestProperties{Path: v, RequestHeaders: map[string]string{"referer": "https://h" + v}}})
			if strings.Contains(got.Path+got.Query+got.Headers, "token="+secret) {
				t.Fatalf("%q kept %q: %+v", v, secret, got)
			}
		}
	})
}
