package accesslog_test

import (
	"bytes"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// TestRecordConfigVersion: the config_version the authz sidecar puts in
// the ext_authz dynamic metadata becomes Record.ConfigVersion, through the
// proto reader and the wire reader alike.
func TestRecordConfigVersion(t *testing.T) {
	st, err := structpb.NewStruct(map[string]any{"decision": "allow", "subject": "alice", contract.ConfigVersionKey: "3f2a9c"})
	if err != nil {
		t.Fatal(err)
	}
	e := &alv3.HTTPAccessLogEntry{
		CommonProperties: &alv3.AccessLogCommon{
			StartTime: timestamppb.New(time.Unix(1764000000, 0)),
			RouteName: "svc0/route0",
			Metadata:  &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: st}},
		},
		Request:  &alv3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/a"},
		Response: &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(503)},
	}
	for _, p := range wirePolicies() {
		if got := p.FromHTTP("n", "g", e).ConfigVersion; got != "3f2a9c" {
			t.Fatalf("FromHTTP config_version = %q, want 3f2a9c", got)
		}
		b, _ := proto.Marshal(e)
		r, err := p.FromHTTPWire("n", "g", b)
		if err != nil {
			t.Fatal(err)
		}
		if r.ConfigVersion != "3f2a9c" {
			t.Fatalf("FromHTTPWire config_version = %q, want 3f2a9c", r.ConfigVersion)
		}
	}
}

// TestRecordBinaryConfigVersion: the binary form (spool and hash chain)
// carries ConfigVersion, and a record without one encodes exactly as it
// did before the column existed (earlier spools and chains still verify):
// the status varint has no extra bit and nothing follows Decision.
func TestRecordBinaryConfigVersion(t *testing.T) {
	recs := accesslogtest.RandomRecords(7, 20, time.Unix(1764000000, 0), time.Minute)
	for i := range recs {
		if i%2 == 0 {
			recs[i].ConfigVersion = "v-" + string(rune('a'+i))
		}
	}
	var b []byte
	for i := range recs {
		b = recs[i].AppendBinary(b)
	}
	rest := b
	for i := range recs {
		var got accesslog.Record
		var err error
		if rest, err = got.DecodeBinary(rest); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got != recs[i] {
			t.Fatalf("record %d round trip:\n got %+v\nwant %+v", i, got, recs[i])
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left over", len(rest))
	}
	plain := recs[1]
	enc := plain.AppendBinary(nil)
	if !bytes.HasSuffix(enc, append([]byte{byte(len(plain.Decision))}, plain.Decision...)) {
		t.Fatal("a record without config_version must end with Decision, as before the column existed")
	}
	withV := plain
	withV.ConfigVersion = "x"
	if bytes.Equal(withV.AppendBinary(nil)[:len(enc)-len(plain.Decision)-1], enc[:len(enc)-len(plain.Decision)-1]) {
		t.Fatal("config_version does not change the encoding")
	}
}

// TestRecordConfigVersionFromCustomTag: an entry of a route without
// ext_authz names its version in the ALS custom tag config_version (the
// route's gatehouse.revision metadata); the ext_authz metadata wins where
// both are present; through the proto reader and the wire reader alike.
func TestRecordConfigVersionFromCustomTag(t *testing.T) {
	entry := func(authzVersion string, tags map[string]string) *alv3.HTTPAccessLogEntry {
		e := &alv3.HTTPAccessLogEntry{
			CommonProperties: &alv3.AccessLogCommon{
				StartTime:  timestamppb.New(time.Unix(1764000000, 0)),
				RouteName:  "svc0/health",
				CustomTags: tags,
			},
			Request:  &alv3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/healthz"},
			Response: &alv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
		}
		if authzVersion != "" {
			st, err := structpb.NewStruct(map[string]any{"decision": "allow", contract.ConfigVersionKey: authzVersion})
			if err != nil {
				t.Fatal(err)
			}
			e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.ExtAuthzNamespace: st}}
		}
		return e
	}
	for _, c := range []struct {
		name string
		e    *alv3.HTTPAccessLogEntry
		want string
	}{
		{name: "tag only", e: entry("", map[string]string{"other": "x", contract.ConfigVersionTag: "7d1e00aa"}), want: "7d1e00aa"},
		{name: "ext_authz wins", e: entry("3f2a9c", map[string]string{contract.ConfigVersionTag: "7d1e00aa"}), want: "3f2a9c"},
		{name: "neither", e: entry("", map[string]string{"other": "x"})},
	} {
		b, err := proto.Marshal(c.e)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range wirePolicies() {
			if got := p.FromHTTP("n", "g", c.e).ConfigVersion; got != c.want {
				t.Errorf("%s: FromHTTP config_version = %q, want %q", c.name, got, c.want)
			}
			r, err := p.FromHTTPWire("n", "g", b)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if r.ConfigVersion != c.want {
				t.Errorf("%s: FromHTTPWire config_version = %q, want %q", c.name, r.ConfigVersion, c.want)
			}
		}
	}
	// A custom tag value that is not UTF-8 is refused as proto refuses it.
	bad := protowire.AppendTag(nil, 22, protowire.BytesType)
	entryBytes := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), contract.ConfigVersionTag)
	entryBytes = protowire.AppendBytes(protowire.AppendTag(entryBytes, 2, protowire.BytesType), []byte{0xff, 0xfe})
	bad = protowire.AppendBytes(bad, entryBytes)
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bad)
	if _, err := wirePolicies()[0].FromHTTPWire("n", "g", msg); err == nil {
		t.Error("FromHTTPWire accepted a custom tag that is not UTF-8")
	}
}
