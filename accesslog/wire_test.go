package accesslog_test

import (
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

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/contract"
)

func wirePolicies() []*accesslog.Redactor {
	key := []byte("wire-test-hmac-key-0123")
	specs := []*accesslog.SpecSettings{{Spec: "svc0", Routes: map[string]accesslog.RouteSettings{
		"svc0/route0": {Headers: []string{"user-agent", "authorization", "X-Trace"}, Redact: []string{"x-trace"}, RedactQuery: []string{"q"}, SampleRate: 1},
	}}}
	return []*accesslog.Redactor{accesslog.NewRedactor(specs, key), accesslog.NewRedactor(nil, nil), accesslog.StrictRedactor(key)}
}

// oddEntries exercise the fields and oneofs the wire reader handles.
func oddEntries() []*alv3.HTTPAccessLogEntry {
	st, _ := structpb.NewStruct(map[string]any{"subject": "alice", "decision": "deny", "rule": 3.0, "kind": true})
	return []*alv3.HTTPAccessLogEntry{
		{},
		{CommonProperties: &alv3.AccessLogCommon{}, Request: &alv3.HTTPRequestProperties{}, Response: &alv3.HTTPResponseProperties{}},
		{
			CommonProperties: &alv3.AccessLogCommon{
				StartTime:                  &timestamppb.Timestamp{Seconds: 1764000000, Nanos: 999999999},
				TimeToLastDownstreamTxByte: durationpb.New(1500 * time.Microsecond),
				AccessLogType:              alv3.AccessLogType(99),
				DownstreamRemoteAddress:    &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/sock"}}},
				UpstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "::1", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}}}},
				TlsProperties: &alv3.TLSProperties{TlsVersion: alv3.TLSProperties_TLSv1_2, PeerCertificateProperties: &alv3.TLSProperties_CertificateProperties{
					Subject: "CN=peer",
					SubjectAltName: []*alv3.TLSProperties_CertificateProperties_SubjectAltName{
						{San: &alv3.TLSProperties_CertificateProperties_SubjectAltName_Dns{Dns: "a.example"}},
						{San: &alv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://x/y"}},
						{San: &alv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://x/z"}},
					}}},
				ResponseFlags: &alv3.ResponseFlags{NoHealthyUpstream: true, DownstreamRemoteReset: true, RateLimited: true},
				Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
					contract.ExtAuthzNamespace: st, "other": {}}},
				RouteName: "svc0/route0",
			},
			Request: &alv3.HTTPRequestProperties{
				RequestMethod: corev3.RequestMethod_PATCH, Path: "/a?b=1&token=x&q=%20y&&=",
				RequestHeaders: map[string]string{"Authorization": "Bearer x", "X-Trace": "t\"\x01", "user-agent": "ü", "cookie": "c"},
			},
			Response: &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(0), ResponseBodyBytes: 1 << 40},
		},
		{CommonProperties: &alv3.AccessLogCommon{
			TlsProperties:   &alv3.TLSProperties{PeerCertificateProperties: &alv3.TLSProperties_CertificateProperties{}},
			ResponseFlags:   &alv3.ResponseFlags{},
			Metadata:        &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: nil}},
			Duration:        &durationpb.Duration{Seconds: 1 << 62},
			UpstreamCluster: "c",
		}},
	}
}

func sameRecord(t *testing.T, what string, got, want accesslog.Record) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\nwire  %+v\nproto %+v", what, got, want)
	}
}

// TestFromHTTPWireMatchesFromHTTP: the wire reader gives the record that
// proto.Unmarshal plus FromHTTP gives, under every kind of policy.
func TestFromHTTPWireMatchesFromHTTP(t *testing.T) {
	entries := oddEntries()
	for _, e := range accesslogtest.Random(3, 300, time.Now().Add(-time.Hour), time.Hour) {
		e.Path += "?page=2&token=secret-value&q=shoes"
		e.Headers["cookie"] = "session=abc"
		e.Headers["X-Api-Key"] = "k"
		entries = append(entries, e.HTTP())
	}
	for pi, p := range wirePolicies() {
		// One decoder for every entry: records decoded earlier must not
		// change while its buffers are reused.
		var d accesslog.WireDecoder
		var got []accesslog.Record
		for i, e := range entries {
			b, err := proto.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			r, err := d.FromHTTP(p, "n", "g", b)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			one, err := p.FromHTTPWire("n", "g", b)
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, "one-off decoder", one, r)
			got = append(got, r)
		}
		for i, e := range entries {
			sameRecord(t, "policy "+string(rune('0'+pi))+" entry "+string(rune('0'+i%10)), got[i], p.FromHTTP("n", "g", e))
		}
	}
}

// TestFromHTTPWireProtoSemantics: wire forms proto.Marshal never writes
// (fields repeated, merged messages, oneofs switched, map keys sent
// twice) still decode as proto.Unmarshal does.
func TestFromHTTPWireProtoSemantics(t *testing.T) {
	m := func(e proto.Message) []byte { b, _ := proto.Marshal(e); return b }
	common1 := m(&alv3.AccessLogCommon{RouteName: "svc0/route0", StartTime: timestamppb.New(time.Unix(100, 0)),
		DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "1.2.3.4", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9}}}}})
	common2 := m(&alv3.AccessLogCommon{StartTime: &timestamppb.Timestamp{Nanos: 5e6}, UpstreamCluster: "u",
		DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "p"}}}})
	req1 := m(&alv3.HTTPRequestProperties{Path: "/x?token=1", RequestHeaders: map[string]string{"a": "1", "cookie": "c1"}})
	req2 := m(&alv3.HTTPRequestProperties{RequestHeaders: map[string]string{"a": "2", "cookie": "c2"}, RequestId: "r"})
	resp := m(&alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(404)})
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	var cases [][]byte
	cases = append(cases,
		field(field(nil, 1, common1), 1, common2),                                            // common merged
		field(field(field(nil, 3, req1), 3, req2), 4, resp),                                  // request merged, map keys overwritten
		field(field(field(nil, 4, resp), 4, resp), 1, common1),                               // response merged
		append(field(nil, 1, common1), protowire.AppendTag(nil, 1, protowire.VarintType)...), // wrong wire type
		append(field(nil, 3, req1), 0x9a, 0x05, 0x02, 'x', 'y'),                              // unknown field 83
		field(nil, 3, append(req1, field(nil, 5, []byte("/\xff"))...)),                       // invalid UTF-8
		field(nil, 3, append(req1, field(nil, 6, []byte("ok"))...)),                          // scalar sent twice: last wins
	)
	for _, p := range wirePolicies() {
		for i, b := range cases {
			e := new(alv3.HTTPAccessLogEntry)
			perr := proto.Unmarshal(b, e)
			got, err := p.FromHTTPWire("n", "g", b)
			if (perr != nil) != (err != nil) {
				t.Fatalf("case %d: wire error %v, proto error %v", i, err, perr)
			}
			if perr == nil {
				sameRecord(t, "case "+string(rune('0'+i)), got, p.FromHTTP("n", "g", e))
			}
		}
	}
}

// FuzzFromHTTPWire: on any input proto.Unmarshal accepts, the wire reader
// agrees with it (header JSON aside when two keys differ only in case:
// FromHTTP's order for those follows map iteration).
func FuzzFromHTTPWire(f *testing.F) {
	for _, e := range oddEntries() {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	for _, e := range benchEntries(4) {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	ps := wirePolicies()
	f.Fuzz(func(t *testing.T, b []byte) {
		e := new(alv3.HTTPAccessLogEntry)
		perr := proto.Unmarshal(b, e)
		for _, p := range ps {
			got, err := p.FromHTTPWire("n", "g", b)
			if perr != nil {
				continue
			}
			if err != nil {
				t.Fatalf("wire error %v where proto decodes", err)
			}
			want := p.FromHTTP("n", "g", e)
			lower := map[string]bool{}
			for k := range e.GetRequest().GetRequestHeaders() {
				if lower[strings.ToLower(k)] {
					got.Headers, want.Headers = "", ""
				}
				lower[strings.ToLower(k)] = true
			}
			sameRecord(t, "fuzz", got, want)
		}
	})
}
