package accesslog

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// diffRoutes are the route names the generated entries use: every policy
// shape a Redactor has (a route with kept headers, extra redacted headers
// and query names; a route keeping no header; a sampled route; no route;
// a route the settings do not know yet).
var diffRoutes = []string{"svc0/keep", "svc0/nokeep", "svc0/sampled", "svc1/other", "", "svc9/missing"}

// diffPolicies are the redactors the differential tests decode under:
// with and without settings, with and without an HMAC key, and strict.
func diffPolicies() []*Redactor {
	key := []byte("diff-test-hmac-key-0123456789")
	specs := []*SpecSettings{
		{Spec: "svc0", Routes: map[string]RouteSettings{
			"svc0/keep": {Headers: []string{"user-agent", "Authorization", "X-Trace", "referer", "x-original-url", "x-partner-key",
				"cookie", "X-Session-Ref", "x-custom", "ÜNÏ", "x-auth-user", "accept", "x-sig-v", "origin", "x-api-key", "set-cookie",
				"x-forwarded-uri", "x-envoy-original-path", "x-hub-signature", "x-b3-traceid"},
				Redact: []string{"x-trace", "X-Partner-Key"}, RedactQuery: []string{"q", "Api_Key"}, SampleRate: 1},
			"svc0/nokeep":  {SampleRate: 1},
			"svc0/sampled": {Headers: []string{"accept", "content-type", "origin", "cookie"}, SampleRate: 0.5},
		}},
		{Spec: "svc1", Routes: map[string]RouteSettings{
			"svc1/other": {Headers: []string{"x-custom", "x-trace", "user-agent"}, RedactQuery: []string{"page"}, SampleRate: 1},
		}},
	}
	return []*Redactor{
		NewRedactor(specs, key), NewRedactor(specs, nil), NewRedactor(nil, nil), NewRedactor(nil, key),
		StrictRedactor(key), StrictRedactor(nil),
	}
}

var (
	diffHeaderNames = []string{"Authorization", "authorization", "AUTHORIZATION", "X-API-KEY", "x-api-key", "x-auth-user",
		"X-Hub-Signature", "x-hub-signature", "x-partner-key", "X-Partner-Key", "cookie", "Cookie", "Set-Cookie", "x-trace",
		"X-Trace", "referer", "Origin", "origin", "x-original-url", "x-forwarded-uri", "x-envoy-original-path", "user-agent",
		"User-Agent", "Accept", "accept", "content-type", "x-request-id", "x-custom", "ÜNÏ", "ünï", "x-sig-v", "x-session-ref",
		"X-Session-Ref", "x-b3-traceid", "x-goog-iap-jwt-assertion", "x-not-kept", "", "İ-upper-dot", "x-tökén"}
	diffValues = []string{"", "Bearer abc.def.ghi", "session=abc; other=1", "plain", "t\"\\\x01\x1f\x7f", "ü€😀",
		"https://user:pw@host.example/p;jsessionid=1/q?token=x&a=b;sig=2#frag=1&token=3",
		"http://h/x%3Ftoken=1&a=2", "/rel;v=1?password=p", "//no-scheme@x/y", "mailto:a@b", "ws://a@b@c/?=",
		strings.Repeat("long-value/", 500), "\u2028\u2029<>&"}
	diffPaths = []string{"/", "", "/a/b", "/x;jsessionid=abc/y;v=1;token=2", "/x%3Ftoken=1&a=2", "/%3f", "/%3F%3Fkey=1",
		"/a;b", ";", "/ü/€;sid=é", "/p%3ftoken=%41&x"}
	diffQueries = []string{"", "?", "?token=1&q=2;api_key=x&&=&%74oken=5&Key=6&PASSWORD=p&a+b=c&%zz=1",
		"?page=2&token=secret-value&q=shoes", "?a=1&b", "?=x", "?Api_Key=%zz&api_key=%41%42", "?x=1?y=2",
		"?session=%E2%82%AC&auth", "?" + strings.Repeat("k=v&", 300), "?token", "?tök=ü&SIG=1"}
)

// diffCommon is a random AccessLogCommon.
func diffCommon(rng *rand.Rand) *alv3.AccessLogCommon {
	c := &alv3.AccessLogCommon{RouteName: diffRoutes[rng.IntN(len(diffRoutes))]}
	pick := func() bool { return rng.IntN(3) > 0 }
	if pick() {
		c.StartTime = &timestamppb.Timestamp{Seconds: rng.Int64N(4e9) - 1e9, Nanos: rng.Int32N(1e9)}
	}
	if pick() {
		c.Duration = durationpb.New(time.Duration(rng.Int64N(1e12)))
	}
	if rng.IntN(4) == 0 {
		c.TimeToLastDownstreamTxByte = &durationpb.Duration{Seconds: rng.Int64N(100), Nanos: rng.Int32N(1e9)}
	}
	if pick() {
		c.AccessLogType = alv3.AccessLogType(rng.IntN(18)) // 15.. are not Envoy's
	}
	addr := func() *corev3.Address {
		switch rng.IntN(4) {
		case 0:
			return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/sock"}}}
		case 1:
			return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "::1", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}}}}
		default:
			return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256)),
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(rng.IntN(3) * rng.IntN(70000))}}}}
		}
	}
	if pick() {
		c.DownstreamRemoteAddress = addr()
	}
	if pick() {
		c.UpstreamRemoteAddress = addr()
	}
	if pick() {
		c.UpstreamCluster = "svc0/api"
	}
	if pick() {
		t := &alv3.TLSProperties{TlsVersion: alv3.TLSProperties_TLSVersion(rng.IntN(7)), TlsSniHostname: "sni.example"}
		if pick() {
			pc := &alv3.TLSProperties_CertificateProperties{Subject: "CN=peer"}
			for range rng.IntN(4) {
				switch rng.IntN(3) {
				case 0:
					pc.SubjectAltName = append(pc.SubjectAltName, &alv3.TLSProperties_CertificateProperties_SubjectAltName{
						San: &alv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: fmt.Sprintf("spiffe://x/%d", rng.IntN(9))}})
				case 1:
					pc.SubjectAltName = append(pc.SubjectAltName, &alv3.TLSProperties_CertificateProperties_SubjectAltName{
						San: &alv3.TLSProperties_CertificateProperties_SubjectAltName_Dns{Dns: "a.example"}})
				default:
					pc.SubjectAltName = append(pc.SubjectAltName, &alv3.TLSProperties_CertificateProperties_SubjectAltName{})
				}
			}
			t.PeerCertificateProperties = pc
		}
		c.TlsProperties = t
	}
	if pick() {
		f := &alv3.ResponseFlags{NoHealthyUpstream: rng.IntN(2) == 0, RateLimited: rng.IntN(4) == 0,
			DownstreamRemoteReset: rng.IntN(2) == 0, NoRouteFound: rng.IntN(3) == 0}
		if rng.IntN(3) == 0 {
			f.UnauthorizedDetails = &alv3.ResponseFlags_Unauthorized{}
		}
		c.ResponseFlags = f
	}
	if pick() {
		md := map[string]any{}
		for _, k := range []string{"subject", "provider", "kind", "apikey_id", "rule", "decision", contract.ConfigVersionKey, "other"} {
			switch rng.IntN(4) {
			case 0:
				md[k] = k + "-value"
			case 1:
				md[k] = 3.0
			case 2:
				md[k] = true
			}
		}
		st, err := structpb.NewStruct(md)
		if err != nil {
			panic(err)
		}
		c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: st, "other": {}}}
	}
	if pick() {
		c.CustomTags = map[string]string{contract.ConfigVersionTag: "tag-v1", "x": "y"}
	}
	return c
}

// diffEntry is one generated entry in wire form: HTTP (most) or TCP,
// sometimes with wire forms proto.Marshal never writes (a header with
// invalid UTF-8, unknown and repeated fields, a field sent twice, a
// truncated or flipped byte).
func diffEntry(rng *rand.Rand) []byte {
	c := diffCommon(rng)
	if rng.IntN(10) == 0 {
		b, err := proto.Marshal(&alv3.TCPAccessLogEntry{CommonProperties: c,
			ConnectionProperties: &alv3.ConnectionProperties{ReceivedBytes: rng.Uint64N(1e6), SentBytes: rng.Uint64N(1e6)}})
		if err != nil {
			panic(err)
		}
		return b
	}
	req := &alv3.HTTPRequestProperties{
		RequestMethod:    corev3.RequestMethod(rng.IntN(12)),
		Authority:        "svc0.example.com",
		Path:             diffPaths[rng.IntN(len(diffPaths))] + diffQueries[rng.IntN(len(diffQueries))],
		UserAgent:        "curl/8.5.0",
		RequestId:        fmt.Sprintf("req-%d", rng.Int()),
		RequestBodyBytes: rng.Uint64N(1 << 40),
		RequestHeaders:   map[string]string{},
	}
	for range rng.IntN(14) {
		name := diffHeaderNames[rng.IntN(len(diffHeaderNames))]
		if rng.IntN(8) == 0 {
			name = fmt.Sprintf("x-random-%d-Token", rng.IntN(100))
		}
		req.RequestHeaders[name] = diffValues[rng.IntN(len(diffValues))]
	}
	resp := &alv3.HTTPResponseProperties{ResponseBodyBytes: rng.Uint64N(1 << 30)}
	if rng.IntN(5) > 0 {
		resp.ResponseCode = wrapperspb.UInt32(uint32(100 + rng.IntN(500)))
	}
	m := func(v proto.Message) []byte {
		b, err := proto.Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	cb, rb, sb := m(c), m(req), m(resp)
	switch rng.IntN(12) {
	case 0: // a header sent twice (the later one wins) or with invalid UTF-8
		k, v := "x-custom", "again"
		if rng.IntN(2) == 0 {
			k, v = "cookie", "\xffbad"
		}
		rb = field(rb, 13, field(field(nil, 1, []byte(k)), 2, []byte(v)))
	case 1: // unknown fields
		rb = append(rb, 0x9a, 0x05, 0x02, 'x', 'y')
		cb = protowire.AppendVarint(protowire.AppendTag(cb, 99, protowire.VarintType), 7)
	case 2: // a scalar sent again: the last wins
		rb = field(rb, 5, []byte("/again;token=1?sig=2"))
	case 3: // invalid UTF-8 in a kept field
		rb = field(rb, 9, []byte("id-\xc3"))
	}
	b := field(field(field(nil, 1, cb), 3, rb), 4, sb)
	if rng.IntN(4) == 0 { // the message order changed
		b = field(field(field(nil, 4, sb), 3, rb), 1, cb)
	}
	switch rng.IntN(16) {
	case 0: // a singular message sent twice: merged by proto
		b = field(b, protowire.Number(1+rng.IntN(4)), cb)
	case 1:
		b = b[:rng.IntN(len(b)+1)]
	case 2:
		if len(b) > 0 {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
	case 3: // wrong wire type for a known field
		b = protowire.AppendVarint(protowire.AppendTag(b, 3, protowire.VarintType), 1)
	}
	return b
}

// headerPairs are the name/value pairs of a Headers JSON object, in order.
func headerPairs(s string) [][2]string {
	if s == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	var out [][2]string
	if _, err := dec.Token(); err != nil {
		return [][2]string{{"bad", s}}
	}
	for dec.More() {
		k, err1 := dec.Token()
		v, err2 := dec.Token()
		ks, _ := k.(string)
		vs, _ := v.(string)
		if err1 != nil || err2 != nil {
			return [][2]string{{"bad", s}}
		}
		out = append(out, [2]string{ks, vs})
	}
	return out
}

// sameRefRecord fails unless got is want. The one allowed difference: the
// order of two headers whose names differ only in case, when the entry
// went through proto.Unmarshal (that order follows map iteration).
func sameRefRecord(t testing.TB, what string, got, want Record) {
	t.Helper()
	if got.Headers != want.Headers {
		g, w := headerPairs(got.Headers), headerPairs(want.Headers)
		cmp := func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }
		dup := false
		for i := range w {
			for j := range i {
				dup = dup || w[i][0] == w[j][0]
			}
		}
		slices.SortFunc(g, cmp)
		slices.SortFunc(w, cmp)
		if dup && slices.Equal(g, w) {
			got.Headers = want.Headers
		}
	}
	if got != want {
		t.Fatalf("%s:\nnew       %+v\nreference %+v", what, got, want)
	}
}

// checkAgainstRef decodes b with d and with the reference decoder under p
// and fails unless both give the same record and the same error.
func checkAgainstRef(t testing.TB, what string, p *Redactor, d *WireDecoder, rd *refWireDecoder, b []byte) (Record, Record) {
	t.Helper()
	got, err := d.FromHTTP(p, "node-1", "group-1", b)
	want, werr := rd.FromHTTP(refRedactor{p}, "node-1", "group-1", b)
	if fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("%s: error %v, reference error %v", what, err, werr)
	}
	sameRefRecord(t, what, got, want)
	return got, want
}

// TestWireDecoderMatchesReference: over a generated corpus (random headers
// with secret-looking and mixed-case names, invalid UTF-8, repeated and
// unknown fields, empty and large values, queries and paths with secrets,
// TCP entries read as HTTP, truncated and flipped bytes) under every
// policy shape, FromHTTP gives exactly the record and the error of the
// decoder it replaced (wireref_test.go). One decoder per policy decodes
// the whole corpus, and every record is compared again at the end: a
// record must not change while the decoder's buffers are reused.
func TestWireDecoderMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 2026))
	corpus := make([][]byte, 4000)
	for i := range corpus {
		corpus[i] = diffEntry(rng)
	}
	fallbacks := 0
	for pi, p := range diffPolicies() {
		var d WireDecoder
		var rd refWireDecoder
		got := make([]Record, len(corpus))
		want := make([]Record, len(corpus))
		for i, b := range corpus {
			got[i], want[i] = checkAgainstRef(t, fmt.Sprintf("policy %d entry %d", pi, i), p, &d, &rd, b)
			if pi == 0 {
				var w wireHTTP
				if !w.parse(b) {
					fallbacks++
				}
			}
		}
		for i := range corpus {
			sameRefRecord(t, fmt.Sprintf("policy %d entry %d, after the rest", pi, i), got[i], want[i])
		}
	}
	t.Logf("%d of %d entries fell back to proto.Unmarshal", fallbacks, len(corpus))
	// The corpus exercises both paths: the fast reader and its fallback.
	if fallbacks < len(corpus)/20 || fallbacks > len(corpus)/2 {
		t.Fatalf("%d of %d entries fell back to proto.Unmarshal", fallbacks, len(corpus))
	}
}

// FuzzWireDecoderMatchesReference: on any input, under any policy,
// FromHTTP gives what the decoder it replaced gave.
func FuzzWireDecoderMatchesReference(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 64 {
		f.Add(uint8(rng.IntN(256)), diffEntry(rng))
	}
	ps := diffPolicies()
	f.Fuzz(func(t *testing.T, pi uint8, b []byte) {
		p := ps[int(pi)%len(ps)]
		var d WireDecoder
		var rd refWireDecoder
		checkAgainstRef(t, "fuzz", p, &d, &rd, b)
	})
}
