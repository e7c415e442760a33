package authzsidecar

import (
	"context"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// The sidecar answers Check with the CheckResponse already in its wire
// form, written straight from the authz.Decision: no tree of proto
// messages (a structpb.Struct of structpb.Values per check) is built, and
// gRPC does not marshal one through protobuf's reflection over the
// metadata map. The bytes are the same message Response builds
// (TestWireResponseMatchesResponse compares them field by field).

// RegisterServer registers s as the ext_authz service of gs, answering
// with pre-encoded responses. gs should be built with ServerOptions (its
// codec sends them as they are); with any other codec the responses are
// marshalled as ordinary protos, the same message, more slowly.
func RegisterServer(gs *grpc.Server, s *Server) {
	gs.RegisterService(&serviceDesc, s)
}

// serviceDesc is authv3.Authorization_ServiceDesc with a Check handler
// that returns a *wireResponse.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    authv3.Authorization_ServiceDesc.Metadata,
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	if interceptor != nil {
		// Interceptors see the generated types, as with the generated handler.
		in := new(authv3.CheckRequest)
		if err := dec(in); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return s.Check(ctx, req.(*authv3.CheckRequest))
		})
	}
	in := new(wireRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	req, version := in.request()
	d := s.d.Decide(ctx, req)
	return newWireResponse(&d, version), nil
}

// wireResponse is a CheckResponse in its wire form. It is a proto.Message
// too, for codecs other than the sidecar's: ProtoReflect decodes it.
type wireResponse struct {
	b []byte // the encoded CheckResponse; nil when full is set
	// full is the response as a message when it could not be encoded here
	// (a string that is not valid UTF-8): marshalling it then fails as
	// proto.Marshal fails for it, with the same error.
	full *authv3.CheckResponse
}

func newWireResponse(d *authz.Decision, version string) *wireResponse {
	b, ok := appendResponse(make([]byte, 0, 384+len(d.Body)), d, version)
	if !ok {
		return &wireResponse{full: fullResponse(d, version)}
	}
	return &wireResponse{b: b}
}

// ProtoReflect is the response as a message (decoded from its wire form).
func (w *wireResponse) ProtoReflect() protoreflect.Message {
	if w.full == nil {
		w.full = new(authv3.CheckResponse)
		if err := proto.Unmarshal(w.b, w.full); err != nil {
			// Not reached: the bytes are written by appendResponse.
			w.full = &authv3.CheckResponse{}
		}
	}
	return w.full.ProtoReflect()
}

// codec is gRPC's proto codec, except that a *wireResponse is sent as it
// is and a *wireRequest is decoded by decodeRequest.
type codec struct{ base encoding.CodecV2 }

func newCodec() codec { return codec{base: encoding.GetCodecV2(protocodec.Name)} }

func (codec) Name() string { return protocodec.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireResponse); ok && w.b != nil {
		return mem.BufferSlice{mem.SliceBuffer(w.b)}, nil
	}
	return c.base.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if w, ok := v.(*wireRequest); ok {
		// A private copy (gRPC reuses its buffers): w's strings point into it.
		raw := data.Materialize()
		req, version, err := decodeRequest(raw)
		if err != nil {
			return err
		}
		w.req, w.version, w.raw = req, version, raw
		return nil
	}
	return c.base.Unmarshal(data, v)
}

// Field numbers of the messages written below (envoy.service.auth.v3,
// envoy.config.core.v3, envoy.type.v3, google.rpc, google.protobuf).
const (
	fCheckStatus           = 1 // CheckResponse.status (google.rpc.Status)
	fCheckDenied           = 2 // CheckResponse.denied_response
	fCheckOK               = 3 // CheckResponse.ok_response
	fCheckMetadata         = 4 // CheckResponse.dynamic_metadata
	fStatusCode            = 1 // google.rpc.Status.code
	fStatusMessage         = 2 // google.rpc.Status.message
	fOKHeaders             = 2 // OkHttpResponse.headers
	fOKHeadersToRemove     = 5 // OkHttpResponse.headers_to_remove
	fOKQueryToRemove       = 8 // OkHttpResponse.query_parameters_to_remove
	fDeniedStatus          = 1 // DeniedHttpResponse.status (envoy.type.v3.HttpStatus)
	fDeniedHeaders         = 2 // DeniedHttpResponse.headers
	fDeniedBody            = 3 // DeniedHttpResponse.body
	fHTTPStatusCode        = 1 // HttpStatus.code
	fOptionHeader          = 1 // HeaderValueOption.header
	fOptionAppendAction    = 3 // HeaderValueOption.append_action
	fHeaderKey             = 1 // HeaderValue.key
	fHeaderValue           = 2 // HeaderValue.value
	fStructFields          = 1 // Struct.fields (map<string, Value>)
	fMapKey                = 1 // map entry key
	fMapValue              = 2 // map entry value
	fValueString           = 3 // Value.string_value
	fValueStruct           = 5 // Value.struct_value
	overwriteIfExistsOrAdd = 2 // HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
)

// appendResponse appends the wire form of fullResponse(d, version) to b.
// ok is false when a string of it is not valid UTF-8, which proto.Marshal
// refuses (proto3 strings): the caller then falls back to the message.
func appendResponse(b []byte, d *authz.Decision, version string) (_ []byte, ok bool) {
	e := encoder{b: b, ok: true}
	st := e.begin(fCheckStatus)
	if d.Allow {
		e.end(st) // code OK (0), no message: an empty Status
		okr := e.begin(fCheckOK)
		for _, h := range d.HeadersToSet {
			e.headerOption(fOKHeaders, h.Name, h.Value)
		}
		for _, h := range d.HeadersToRemove {
			e.str(fOKHeadersToRemove, h)
		}
		for _, q := range d.QueryToRemove {
			e.str(fOKQueryToRemove, q)
		}
		e.end(okr)
	} else {
		grpcCode, httpCode := denyCodes(d)
		e.varint(fStatusCode, uint64(grpcCode))
		e.optStr(fStatusMessage, d.ReasonCode)
		e.end(st)
		den := e.begin(fCheckDenied)
		hs := e.begin(fDeniedStatus)
		e.varint(fHTTPStatusCode, uint64(httpCode))
		e.end(hs)
		e.headerOption(fDeniedHeaders, contract.ReasonHeader, headerSafe(d.ReasonCode+": "+d.Reason))
		e.headerOption(fDeniedHeaders, "content-type", "application/json")
		if d.WWWAuthenticate != "" {
			e.headerOption(fDeniedHeaders, "www-authenticate", d.WWWAuthenticate)
		}
		e.optStr(fDeniedBody, d.Body)
		e.end(den)
	}
	m := &d.Metadata
	md := e.begin(fCheckMetadata)
	e.stringField("subject", m.Subject)
	e.stringField("provider", m.Provider)
	e.stringField("kind", m.Kind)
	e.stringField("rule", m.Rule)
	e.stringField("decision", m.Decision)
	if m.APIKeyID != "" {
		e.stringField("apikey_id", m.APIKeyID)
	}
	if len(m.Claims) > 0 {
		entry := e.begin(fStructFields)
		e.str(fMapKey, "claims")
		val := e.begin(fMapValue)
		sv := e.begin(fValueStruct)
		for k, v := range m.Claims {
			e.stringField(k, v)
		}
		e.end(sv)
		e.end(val)
		e.end(entry)
	}
	if version != "" {
		// Last, as fullResponse sets it after the others.
		e.stringField(contract.ConfigVersionKey, version)
	}
	e.end(md)
	return e.b, e.ok
}

// encoder appends protobuf fields. A nested message is written after a
// one-byte length placeholder and moved right by end when its length
// needs more bytes.
type encoder struct {
	b  []byte
	ok bool // every string was valid UTF-8
}

// begin starts the message field num and returns its mark for end.
func (e *encoder) begin(num protowire.Number) int {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = append(e.b, 0)
	return len(e.b) - 1
}

// end closes the message begun at mark.
func (e *encoder) end(mark int) {
	n := len(e.b) - mark - 1
	if n < 0x80 {
		e.b[mark] = byte(n)
		return
	}
	l := protowire.SizeVarint(uint64(n))
	for range l - 1 {
		e.b = append(e.b, 0)
	}
	copy(e.b[mark+l:], e.b[mark+1:mark+1+n])
	protowire.AppendVarint(e.b[:mark], uint64(n))
}

func (e *encoder) varint(num protowire.Number, v uint64) {
	if v == 0 {
		return // proto3: a zero scalar is not written
	}
	e.b = protowire.AppendTag(e.b, num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, v)
}

// str writes a string field even when empty (a map key, an element of a
// repeated field, a oneof member).
func (e *encoder) str(num protowire.Number, s string) {
	if !utf8.ValidString(s) {
		e.ok = false
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

// optStr writes a singular proto3 string field: not at all when empty.
func (e *encoder) optStr(num protowire.Number, s string) {
	if s != "" {
		e.str(num, s)
	}
}

// headerOption writes a HeaderValueOption{header{key, value},
// OVERWRITE_IF_EXISTS_OR_ADD} field.
func (e *encoder) headerOption(num protowire.Number, k, v string) {
	o := e.begin(num)
	h := e.begin(fOptionHeader)
	e.optStr(fHeaderKey, k)
	e.optStr(fHeaderValue, v)
	e.end(h)
	e.varint(fOptionAppendAction, overwriteIfExistsOrAdd)
	e.end(o)
}

// stringField writes one Struct.fields entry {k: string_value v}.
func (e *encoder) stringField(k, v string) {
	entry := e.begin(fStructFields)
	e.str(fMapKey, k)
	val := e.begin(fMapValue)
	e.str(fValueString, v)
	e.end(val)
	e.end(entry)
}
