package authzsidecar

import (
	"bytes"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

// compareDecode holds decodeRequest to proto.Unmarshal + RequestFrom: the
// same inputs refused, the same request and version read from the others.
func compareDecode(t *testing.T, name string, b []byte) (ok bool) {
	t.Helper()
	var m authv3.CheckRequest
	perr := proto.Unmarshal(b, &m)
	req, version, err := decodeRequest(bytes.Clone(b))
	if (perr == nil) != (err == nil) {
		t.Fatalf("%s: proto.Unmarshal error %v, decodeRequest error %v", name, perr, err)
	}
	if perr != nil {
		return false
	}
	want, wantVersion := RequestFrom(&m), requestVersion(&m)
	if !reflect.DeepEqual(want, req) || version != wantVersion {
		t.Fatalf("%s:\nproto:  %#v %q\ndecode: %#v %q", name, want, wantVersion, req, version)
	}
	return true
}

// field appends a length-delimited field.
func field(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requestCorpus is requests as Envoy sends them, the variants of every
// field Check reads, and malformed and unusual encodings.
func requestCorpus(t testing.TB) map[string][]byte {
	c := map[string][]byte{}
	add := func(name string, m proto.Message) { c[name] = marshal(t, m) }
	add("envoy", checkRequest("petstore/read", map[string]string{"authorization": "Bearer " + token("petstore", nil), "x-api-key": "acme-key"}, "spiffe://corp/ns/a/sa/b"))
	add("no route", checkRequest("", nil, ""))
	add("empty", &authv3.CheckRequest{})
	add("empty attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}})
	full := checkRequest("petstore/read", map[string]string{"X-Upper": "v"}, "")
	full.Attributes.Source.Service = "svc"
	full.Attributes.Source.Labels = map[string]string{"a": "b"}
	full.Attributes.Source.Certificate = "pem"
	full.Attributes.Request.Time = nil
	full.Attributes.Request.Http.Body = "body"
	full.Attributes.Request.Http.RawBody = []byte{0xff}
	full.Attributes.Request.Http.Size = 12
	full.Attributes.Request.Http.Fragment = "f"
	full.Attributes.Request.Http.Query = "q=1"
	full.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "petstore.example.com"}
	st, _ := structpb.NewStruct(map[string]any{"k": "v", "n": 1.5, "l": []any{"x", true}})
	full.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt": st}}
	full.Attributes.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"r": st}}
	full.Attributes.ContextExtensions["other"] = "x"
	add("every field", full)
	raw := checkRequest("petstore/read", nil, "")
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", Value: "/pets"}, {Key: "X-Request-ID", RawValue: []byte("raw-rid")}, {Key: "Authorization", RawValue: []byte("Bearer x")},
		{Key: "x-bin", RawValue: []byte{0xff, 0xfe}}, {Key: "x-empty"}, {Key: "x-both", Value: "v", RawValue: []byte("r")}}}
	add("header_map (encode_raw_headers)", raw)
	emptyMap := checkRequest("petstore/read", nil, "")
	emptyMap.Attributes.Request.Http.Headers = nil
	emptyMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{}
	add("empty header_map", emptyMap)
	both := checkRequest("petstore/read", map[string]string{"x-request-id": "from-headers"}, "")
	both.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-request-id", Value: "from-map"}}}
	add("headers and header_map", both)
	pipe := checkRequest("petstore/read", nil, "")
	pipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/sock"}}}
	add("pipe source", pipe)
	named := checkRequest("petstore/read", nil, "")
	named.Attributes.Source.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
	add("named port", named)

	// Encodings proto.Marshal does not produce.
	base := c["envoy"]
	sock := func(addr string) []byte {
		return field(nil, fSocketAddress, []byte(addr))
	}
	addrOf := func(parts ...[]byte) []byte { // Attributes{source{address{parts}}}
		var a []byte
		for _, p := range parts {
			a = append(a, p...)
		}
		return field(nil, fRequestAttributes, field(nil, fAttrSource, field(nil, fPeerAddress, a)))
	}
	pipeField := field(nil, fAddressPipe, field(nil, 1, []byte("/sock")))
	c["socket then port-only socket (merge)"] = addrOf(field(nil, fAddressSocket, sock("10.1.1.1")), field(nil, fAddressSocket, protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 80)))
	c["socket, pipe, socket without address"] = addrOf(field(nil, fAddressSocket, sock("10.1.1.1")), pipeField, field(nil, fAddressSocket, nil))
	c["socket, pipe"] = addrOf(field(nil, fAddressSocket, sock("10.1.1.1")), pipeField)
	c["pipe as varint (unknown)"] = addrOf(field(nil, fAddressSocket, sock("10.1.1.1")), protowire.AppendVarint(protowire.AppendTag(nil, fAddressPipe, protowire.VarintType), 1))
	c["pipe with bad UTF-8"] = addrOf(field(nil, fAddressSocket, sock("10.1.1.1")), field(nil, fAddressPipe, field(nil, 1, []byte{0xff})))
	c["source address bad UTF-8"] = addrOf(field(nil, fAddressSocket, sock("\xff")))
	c["attributes twice (merge)"] = append(append([]byte{}, base...), field(nil, fRequestAttributes, field(nil, fAttrContextExt, append(field(nil, 1, []byte("gatehouse.route")), field(nil, 2, []byte("other/route"))...)))...)
	c["attributes as varint"] = protowire.AppendVarint(protowire.AppendTag(nil, fRequestAttributes, protowire.VarintType), 7)
	c["unknown fields"] = append(append(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1), base...), field(nil, 100, []byte("x"))...)
	c["unknown group"] = append(protowire.AppendTag(protowire.AppendVarint(protowire.AppendTag(protowire.AppendTag(nil, 50, protowire.StartGroupType), 1, protowire.VarintType), 5), 50, protowire.EndGroupType), base...)
	c["mismatched group end"] = append(protowire.AppendTag(protowire.AppendTag(nil, 50, protowire.StartGroupType), 51, protowire.EndGroupType), base...)
	c["end group at top"] = protowire.AppendTag(nil, 5, protowire.EndGroupType)
	c["field number 0"] = []byte{0x02, 0x00}
	c["field number over the max"] = append(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.BytesType), 0)
	c["nested field number over the max"] = field(nil, fRequestAttributes, append(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.BytesType), 0))
	c["reserved wire type"] = []byte{0x0e}
	c["truncated"] = base[:len(base)-3]
	c["truncated length"] = []byte{0x0a, 0x80}
	c["overlong varint"] = append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...)
	ext := func(entry []byte) []byte { return field(nil, fRequestAttributes, field(nil, fAttrContextExt, entry)) }
	c["map entry without key"] = ext(field(nil, 2, []byte("v")))
	c["map entry key repeated"] = ext(append(append(field(nil, 1, []byte("x")), field(nil, 1, []byte("gatehouse.route"))...), field(nil, 2, []byte("r/1"))...))
	c["map entry with unknown field"] = ext(append(append(field(nil, 1, []byte("gatehouse.route")), protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1)...), field(nil, 2, []byte("r/1"))...))
	c["map entry key as varint"] = ext(append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), field(nil, 2, []byte("r/1"))...))
	c["map entry field number over the max"] = ext(append(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.BytesType), 0))
	c["map entry bad UTF-8 key"] = ext(field(nil, 1, []byte{0xc3}))
	c["map entry bad UTF-8 unused value"] = ext(append(field(nil, 1, []byte("other")), field(nil, 2, []byte{0xc3})...))
	httpOf := func(f []byte) []byte {
		return field(nil, fRequestAttributes, field(nil, fAttrRequest, field(nil, fReqHTTP, f)))
	}
	c["header key bad UTF-8"] = httpOf(field(nil, fHTTPHeaders, append(field(nil, 1, []byte{0xff}), field(nil, 2, []byte("v"))...)))
	c["header value bad UTF-8"] = httpOf(field(nil, fHTTPHeaders, append(field(nil, 1, []byte("k")), field(nil, 2, []byte{0xff})...)))
	c["path bad UTF-8"] = httpOf(field(nil, fHTTPPath, []byte{0xff}))
	c["scheme bad UTF-8"] = httpOf(field(nil, 6, []byte{0xff}))
	c["body bad UTF-8"] = httpOf(field(nil, 11, []byte{0xff}))
	c["raw body any bytes"] = httpOf(field(nil, 12, []byte{0xff}))
	c["size as bytes (unknown)"] = httpOf(field(nil, 9, []byte{0xff}))
	c["header_map value bad UTF-8"] = httpOf(field(nil, fHTTPHeaderMap, field(nil, 1, field(nil, 2, []byte{0xff}))))
	c["header_map as varint"] = httpOf(protowire.AppendVarint(protowire.AppendTag(nil, fHTTPHeaderMap, protowire.VarintType), 1))
	c["header_map twice (appends)"] = httpOf(append(field(nil, fHTTPHeaderMap, field(nil, 1, field(nil, 1, []byte("A")))), field(nil, fHTTPHeaderMap, field(nil, 1, append(field(nil, 1, []byte("a")), field(nil, 2, []byte("2"))...)))...))
	c["destination bad UTF-8"] = field(nil, fRequestAttributes, field(nil, 2, field(nil, 1, field(nil, 1, field(nil, 2, []byte{0xff})))))
	c["tls sni bad UTF-8"] = field(nil, fRequestAttributes, field(nil, 12, field(nil, 1, []byte{0xff})))
	c["peer label bad UTF-8"] = field(nil, fRequestAttributes, field(nil, fAttrSource, field(nil, 3, field(nil, 2, []byte{0xff}))))
	c["principal bad UTF-8"] = field(nil, fRequestAttributes, field(nil, fAttrSource, field(nil, fPeerPrincipal, []byte{0xff})))
	c["metadata struct key bad UTF-8"] = field(nil, fRequestAttributes, field(nil, 11, field(nil, 1, append(field(nil, 1, []byte("f")), field(nil, 2, field(nil, 1, field(nil, 1, []byte{0xff})))...))))
	c["request time bad"] = field(nil, fRequestAttributes, field(nil, fAttrRequest, field(nil, 1, []byte{0x08})))
	return c
}

func TestDecodeRequestMatchesProto(t *testing.T) {
	accepted, refused := 0, 0
	for name, b := range requestCorpus(t) {
		if compareDecode(t, name, b) {
			accepted++
		} else {
			refused++
		}
	}
	if accepted < 10 || refused < 10 {
		t.Fatalf("corpus: %d accepted, %d refused", accepted, refused)
	}
}

// Nesting in a part Check does not read is refused at the depth
// proto.Unmarshal refuses it, to the level: a ListValue nesting adds 2
// levels, one Struct 3, so depths 2n and 2n+3 cover every depth.
func TestDecodeRequestRecursionLimit(t *testing.T) {
	v := structpb.NewStringValue("x")
	for range 4985 {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	seen := map[bool]bool{}
	for range 24 {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
		for _, top := range []*structpb.Value{v, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": v}})} {
			m := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{MetadataContext: &corev3.Metadata{
				FilterMetadata: map[string]*structpb.Struct{"f": {Fields: map[string]*structpb.Value{"v": top}}}}}}
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			seen[compareDecode(t, "deep", b)] = true
		}
	}
	if !seen[true] || !seen[false] {
		t.Fatalf("the depths tried do not straddle the limit: %v", seen)
	}
}

// The field numbers decodeRequest reads are the descriptors'.
func TestDecodeRequestFieldNumbers(t *testing.T) {
	for _, f := range []struct {
		mt   protoreflect.MessageDescriptor
		name protoreflect.Name
		num  protowire.Number
		kind protoreflect.Kind
	}{
		{mt: typeCheckRequest, name: "attributes", num: fRequestAttributes, kind: protoreflect.MessageKind},
		{mt: typeAttributes, name: "source", num: fAttrSource, kind: protoreflect.MessageKind},
		{mt: typeAttributes, name: "request", num: fAttrRequest, kind: protoreflect.MessageKind},
		{mt: typeAttributes, name: "context_extensions", num: fAttrContextExt, kind: protoreflect.MessageKind},
		{mt: typePeer, name: "address", num: fPeerAddress, kind: protoreflect.MessageKind},
		{mt: typePeer, name: "principal", num: fPeerPrincipal, kind: protoreflect.StringKind},
		{mt: typeAddress, name: "socket_address", num: fAddressSocket, kind: protoreflect.MessageKind},
		{mt: typeAddress, name: "pipe", num: fAddressPipe, kind: protoreflect.MessageKind},
		{mt: typeAddress, name: "envoy_internal_address", num: fAddressInternal, kind: protoreflect.MessageKind},
		{mt: typeSocket, name: "address", num: fSocketAddress, kind: protoreflect.StringKind},
		{mt: typeRequest, name: "http", num: fReqHTTP, kind: protoreflect.MessageKind},
		{mt: typeHTTP, name: "id", num: fHTTPID, kind: protoreflect.StringKind},
		{mt: typeHTTP, name: "method", num: fHTTPMethod, kind: protoreflect.StringKind},
		{mt: typeHTTP, name: "headers", num: fHTTPHeaders, kind: protoreflect.MessageKind},
		{mt: typeHTTP, name: "path", num: fHTTPPath, kind: protoreflect.StringKind},
		{mt: typeHTTP, name: "host", num: fHTTPHost, kind: protoreflect.StringKind},
		{mt: typeHTTP, name: "header_map", num: fHTTPHeaderMap, kind: protoreflect.MessageKind},
		{mt: typeHeaderMap, name: "headers", num: fHeaderMapHeaders, kind: protoreflect.MessageKind},
		{mt: typeHeaderValue, name: "key", num: fHeaderValueKey, kind: protoreflect.StringKind},
		{mt: typeHeaderValue, name: "value", num: fHeaderValueValue, kind: protoreflect.StringKind},
		{mt: typeHeaderValue, name: "raw_value", num: fHeaderValueRawValue, kind: protoreflect.BytesKind},
	} {
		fd := f.mt.Fields().ByName(f.name)
		if fd == nil || fd.Number() != f.num || fd.Kind() != f.kind || fd.Syntax() != protoreflect.Proto3 {
			t.Fatalf("%s.%s: descriptor %v, decodeRequest reads number %d kind %v (proto3)", f.mt.FullName(), f.name, fd, f.num, f.kind)
		}
	}
	if od := typeAddress.Oneofs().ByName("address"); od == nil || od.Fields().Len() != 3 {
		t.Fatalf("Address's oneof has other members than socket_address, pipe, envoy_internal_address: %v", od)
	}
	for _, m := range []protoreflect.MessageDescriptor{typeAttributes, typeHTTP} {
		for name, key := range map[protoreflect.Name]bool{"context_extensions": true, "headers": true} {
			if fd := m.Fields().ByName(name); fd != nil && key && (!fd.IsMap() || fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind) {
				t.Fatalf("%s.%s is not a map<string, string>", m.FullName(), name)
			}
		}
	}
}

// FuzzDecodeRequest: on any bytes, decodeRequest refuses what
// proto.Unmarshal refuses and reads the same request from the rest.
func FuzzDecodeRequest(f *testing.F) {
	for _, b := range requestCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		compareDecode(t, "fuzz", b)
	})
}

// A request the sidecar's codec decoded is, as a proto.Message, the
// request that was sent (for stats handlers and the like); one another
// codec decoded is read from the message.
func TestWireRequestAsMessage(t *testing.T) {
	want := checkRequest("petstore/read", map[string]string{"x-api-key": "acme-key"}, "spiffe://corp/ns/a/sa/b")
	data := mem.BufferSlice{mem.SliceBuffer(marshal(t, want))}
	for name, c := range map[string]encoding.CodecV2{"sidecar codec": newCodec(), "default codec": encoding.GetCodecV2("proto")} {
		w := new(wireRequest)
		if err := c.Unmarshal(data, w); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		req, version := w.request()
		if !reflect.DeepEqual(req, RequestFrom(want)) || version != "r1" {
			t.Fatalf("%s: request %#v %q", name, req, version)
		}
		if diff := cmp.Diff(want, w.ProtoReflect().Interface(), protocmp.Transform()); diff != "" {
			t.Fatalf("%s: as a message (-sent +got):\n%s", name, diff)
		}
		if req2, _ := w.request(); !reflect.DeepEqual(req, req2) {
			t.Fatalf("%s: the request changed after ProtoReflect", name)
		}
	}
}
