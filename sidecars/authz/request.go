package authzsidecar

import (
	"errors"
	"strings"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/contract"
)

// The sidecar's codec decodes a CheckRequest straight into the
// authz.Request that RequestFrom makes of it, from one private copy of the
// request's bytes (the strings point into it): no tree of generated
// messages, no reflective map decoding (about 60 of a fresh Check's
// allocations). It accepts exactly the inputs proto.Unmarshal accepts:
// fields Check reads are checked as protobuf checks them (wire types,
// lengths, UTF-8 of proto3 strings, field numbers, oneof and merge rules);
// a field Check does not read is walked the same way when it is a singular
// scalar (whose only check is UTF-8 for a string) or a singular proto3
// message (e.g. the destination peer), and otherwise (maps, repeated
// fields, groups) decoded on its own by proto.Unmarshal into a throwaway
// message of its parent's type, so it is refused exactly when the whole
// message would be; unknown fields are skipped, as proto.Unmarshal keeps
// them unread. FuzzDecodeRequest compares both on arbitrary bytes.

// wireRequest is what Check reads of a CheckRequest. It is a proto.Message
// too: codecs other than the sidecar's decode the whole message into full
// through ProtoReflect; after the sidecar's codec, ProtoReflect is the
// message decoded from raw (for whatever else looks at it, e.g. a stats
// handler).
type wireRequest struct {
	req     authz.Request
	version string
	raw     []byte // the bytes decodeRequest read, when the sidecar's codec decoded it
	full    *authv3.CheckRequest
}

// ProtoReflect is the request as a message.
func (w *wireRequest) ProtoReflect() protoreflect.Message {
	if w.full == nil {
		w.full = new(authv3.CheckRequest)
		if w.raw != nil {
			_ = proto.Unmarshal(w.raw, w.full) // decodeRequest accepted it, so does proto.Unmarshal
		}
	}
	return w.full.ProtoReflect()
}

// request is the authz.Request and config version of the decoded request.
func (w *wireRequest) request() (authz.Request, string) {
	if w.raw == nil && w.full != nil {
		return RequestFrom(w.full), requestVersion(w.full)
	}
	return w.req, w.version
}

var (
	errWire = errors.New("proto: cannot parse invalid wire-format data")
	errUTF8 = errors.New("proto: string field contains invalid UTF-8")

	typeCheckRequest = (*authv3.CheckRequest)(nil).ProtoReflect().Descriptor()
	typeAttributes   = (*authv3.AttributeContext)(nil).ProtoReflect().Descriptor()
	typePeer         = (*authv3.AttributeContext_Peer)(nil).ProtoReflect().Descriptor()
	typeAddress      = (*corev3.Address)(nil).ProtoReflect().Descriptor()
	typeSocket       = (*corev3.SocketAddress)(nil).ProtoReflect().Descriptor()
	typeRequest      = (*authv3.AttributeContext_Request)(nil).ProtoReflect().Descriptor()
	typeHTTP         = (*authv3.AttributeContext_HttpRequest)(nil).ProtoReflect().Descriptor()
	typeHeaderMap    = (*corev3.HeaderMap)(nil).ProtoReflect().Descriptor()
	typeHeaderValue  = (*corev3.HeaderValue)(nil).ProtoReflect().Descriptor()
)

// Field numbers Check reads (TestDecodeRequestFieldNumbers holds them to
// the descriptors).
const (
	fRequestAttributes   = 1  // CheckRequest.attributes
	fAttrSource          = 1  // AttributeContext.source
	fAttrRequest         = 4  // AttributeContext.request
	fAttrContextExt      = 10 // AttributeContext.context_extensions
	fPeerAddress         = 1  // Peer.address
	fPeerPrincipal       = 4  // Peer.principal
	fAddressSocket       = 1  // Address.socket_address (oneof address)
	fAddressPipe         = 2  // Address.pipe (oneof address)
	fAddressInternal     = 3  // Address.envoy_internal_address (oneof address)
	fSocketAddress       = 2  // SocketAddress.address
	fReqHTTP             = 2  // Request.http
	fHTTPID              = 1  // HttpRequest.id
	fHTTPMethod          = 2  // HttpRequest.method
	fHTTPHeaders         = 3  // HttpRequest.headers
	fHTTPPath            = 4  // HttpRequest.path
	fHTTPHost            = 5  // HttpRequest.host
	fHTTPHeaderMap       = 13 // HttpRequest.header_map
	fHeaderMapHeaders    = 1  // HeaderMap.headers
	fHeaderValueKey      = 1  // HeaderValue.key
	fHeaderValueValue    = 2  // HeaderValue.value
	fHeaderValueRawValue = 3  // HeaderValue.raw_value
)

// reqDecoder holds what is read so far; repeated occurrences of a message
// field merge into it, as protobuf merges them.
type reqDecoder struct {
	id, method, path, host string
	headers                map[string]string
	headerMap              map[string]string // non-nil once header_map is present
	sourceIP, principal    string
	route, revision        string
}

// decodeRequest decodes b (which it keeps: the strings point into it, so
// it must not change) as RequestFrom(m) and requestVersion(m) of the
// CheckRequest m that proto.Unmarshal makes of it, and fails exactly when
// proto.Unmarshal fails.
func decodeRequest(b []byte) (authz.Request, string, error) {
	var d reqDecoder
	if err := message(b, typeCheckRequest, 1, d.checkRequest); err != nil {
		return authz.Request{}, "", err
	}
	headers := d.headers
	if len(headers) == 0 && d.headerMap != nil {
		headers = d.headerMap
	}
	id := d.id
	if rid := headers["x-request-id"]; rid != "" {
		id = rid
	}
	path, query, _ := strings.Cut(d.path, "?")
	return authz.Request{
		RouteID: d.route, Method: d.method, Path: path, Query: query, Host: d.host, Headers: headers,
		SourceIP: d.sourceIP, Principal: d.principal, RequestID: id,
	}, configVersion(d.revision), nil
}

// fieldFunc reads one field of a message at depth level; handled false
// leaves it to other.
type fieldFunc func(num protowire.Number, typ protowire.Type, v []byte, level int) (handled bool, err error)

// message walks the fields of one message of type md at depth level (the
// request is level 1), as protobuf's decoder does.
func message(b []byte, md protoreflect.MessageDescriptor, level int, f fieldFunc) error {
	if level > protowire.DefaultRecursionLimit {
		return errWire
	}
	for len(b) > 0 {
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 || num > protowire.MaxValidNumber {
			return errWire
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[tn:])
		if vn < 0 {
			return errWire
		}
		field, v := b[:tn+vn], b[tn:tn+vn]
		b = b[tn+vn:]
		handled := false
		if typ == protowire.BytesType {
			payload, _ := protowire.ConsumeBytes(v)
			var err error
			if handled, err = f(num, typ, payload, level); err != nil {
				return err
			}
		}
		if !handled {
			if err := other(md, level, num, typ, field, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ignore reads no field: message then checks each with other.
func ignore(protowire.Number, protowire.Type, []byte, int) (bool, error) { return false, nil }

// other checks a field Check does not read as proto.Unmarshal checks it.
func other(md protoreflect.MessageDescriptor, level int, num protowire.Number, typ protowire.Type, field, v []byte) error {
	fd := md.Fields().ByNumber(num)
	if fd == nil {
		return nil // unknown: kept unread
	}
	singular := fd.Cardinality() != protoreflect.Repeated && fd.Kind() != protoreflect.GroupKind && fd.Syntax() != protoreflect.Editions
	if singular && fd.Message() != nil && fd.Message().Syntax() == protoreflect.Proto3 {
		// A singular proto3 message (no required fields): another wire
		// type makes it unknown; its own is walked like the fields read.
		if typ != protowire.BytesType {
			return nil
		}
		payload, _ := protowire.ConsumeBytes(v)
		return message(payload, fd.Message(), level+1, ignore)
	}
	if singular && fd.Message() == nil {
		// A singular scalar: its own wire type is read by ConsumeFieldValue
		// above, any other makes it unknown. Only a proto3 string checks
		// more.
		if fd.Kind() == protoreflect.StringKind && typ == protowire.BytesType && fd.Syntax() == protoreflect.Proto3 {
			s, _ := protowire.ConsumeBytes(v)
			if !utf8.Valid(s) {
				return errUTF8
			}
		}
		return nil
	}
	// Maps, repeated fields, the rest: the field alone, decoded into its
	// parent's type at the depth the whole decode would reach it.
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return err // not reached: every message here is generated and registered
	}
	return proto.UnmarshalOptions{RecursionLimit: protowire.DefaultRecursionLimit - (level - 1)}.Unmarshal(field, mt.New().Interface())
}

// str is a proto3 string field's value, pointing into the request's bytes.
func str(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errUTF8
	}
	if len(v) == 0 {
		return "", nil
	}
	return unsafe.String(unsafe.SliceData(v), len(v)), nil
}

func (d *reqDecoder) checkRequest(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	if num != fRequestAttributes {
		return false, nil
	}
	return true, message(v, typeAttributes, level+1, d.attributes)
}

func (d *reqDecoder) attributes(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	switch num {
	case fAttrSource:
		return true, message(v, typePeer, level+1, d.peer)
	case fAttrRequest:
		return true, message(v, typeRequest, level+1, d.request)
	case fAttrContextExt:
		k, val, err := mapEntry(v)
		if err != nil {
			return true, err
		}
		switch k {
		case contract.ContextRoute:
			d.route = val
		case contract.ContextRevision:
			d.revision = val
		}
		return true, nil
	}
	return false, nil
}

func (d *reqDecoder) peer(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	switch num {
	case fPeerAddress:
		return true, message(v, typeAddress, level+1, d.address)
	case fPeerPrincipal:
		s, err := str(v)
		d.principal = s
		return true, err
	}
	return false, nil
}

func (d *reqDecoder) address(num protowire.Number, typ protowire.Type, v []byte, level int) (bool, error) {
	switch num {
	case fAddressSocket:
		// Merged into the socket address the oneof holds, or a new one
		// when it holds another member (sourceIP is "" then).
		return true, message(v, typeSocket, level+1, d.socketAddress)
	case fAddressPipe, fAddressInternal:
		// Another member of the oneof replaces the socket address; the
		// field itself is checked by other.
		field := protowire.AppendTag(nil, num, typ)
		field = protowire.AppendBytes(field, v)
		if err := other(typeAddress, level, num, typ, field, field[protowire.SizeTag(num):]); err != nil {
			return true, err
		}
		d.sourceIP = ""
		return true, nil
	}
	return false, nil
}

func (d *reqDecoder) socketAddress(num protowire.Number, _ protowire.Type, v []byte, _ int) (bool, error) {
	if num != fSocketAddress {
		return false, nil
	}
	s, err := str(v)
	d.sourceIP = s
	return true, err
}

func (d *reqDecoder) request(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	if num != fReqHTTP {
		return false, nil
	}
	return true, message(v, typeHTTP, level+1, d.http)
}

func (d *reqDecoder) http(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	var err error
	switch num {
	case fHTTPID:
		d.id, err = str(v)
	case fHTTPMethod:
		d.method, err = str(v)
	case fHTTPPath:
		d.path, err = str(v)
	case fHTTPHost:
		d.host, err = str(v)
	case fHTTPHeaders:
		k, val, err := mapEntry(v)
		if err != nil {
			return true, err
		}
		if d.headers == nil {
			d.headers = make(map[string]string, 16)
		}
		d.headers[k] = val
	case fHTTPHeaderMap:
		if d.headerMap == nil {
			d.headerMap = map[string]string{}
		}
		err = message(v, typeHeaderMap, level+1, d.headerMapField)
	default:
		return false, nil
	}
	return true, err
}

func (d *reqDecoder) headerMapField(num protowire.Number, _ protowire.Type, v []byte, level int) (bool, error) {
	if num != fHeaderMapHeaders {
		return false, nil
	}
	var hv headerValue
	if err := message(v, typeHeaderValue, level+1, hv.field); err != nil {
		return true, err
	}
	val := hv.value
	if val == "" {
		val = string(hv.raw)
	}
	d.headerMap[strings.ToLower(hv.key)] = val
	return true, nil
}

type headerValue struct {
	key, value string
	raw        []byte
}

func (h *headerValue) field(num protowire.Number, _ protowire.Type, v []byte, _ int) (bool, error) {
	var err error
	switch num {
	case fHeaderValueKey:
		h.key, err = str(v)
	case fHeaderValueValue:
		h.value, err = str(v)
	case fHeaderValueRawValue:
		h.raw = v
	default:
		return false, nil
	}
	return true, err
}

// mapEntry decodes a map<string, string> entry as protobuf does: a missing
// key or value is "", a repeated one counts last, a field of another
// number or wire type is skipped.
func mapEntry(b []byte) (k, v string, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return "", "", errWire
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", "", errWire
			}
			b = b[n:]
			str, err := str(s)
			if err != nil {
				return "", "", err
			}
			if num == 1 {
				k = str
			} else {
				v = str
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", "", errWire
		}
		b = b[n:]
	}
	return k, v, nil
}
