package accesslog

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"github.com/gatehouse-edge/gatehouse/contract"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// FromHTTPWire is FromHTTP for an HTTPAccessLogEntry in protobuf wire
// form: it reads only the fields a Record needs, straight from the bytes,
// without building the message (its header maps and metadata Structs were
// most of the ingest CPU). Anything the fast reader does not handle the
// way proto.Unmarshal would (a singular message field sent twice, which
// proto merges, a known field with an unexpected wire type, invalid UTF-8
// in a field a Record keeps) falls back to proto.Unmarshal and FromHTTP,
// so the result is the same either way. b is not retained.
func (p *Redactor) FromHTTPWire(node, group string, b []byte) (Record, error) {
	var d WireDecoder
	return d.FromHTTP(p, node, group, b)
}

// WireDecoder is FromHTTPWire with buffers kept from entry to entry: the
// strings of the records it returns are cut from shared blocks that are
// never written again (a block lives as long as any of its strings), and
// header names and masked values are built in reused scratch space. Use
// one per stream; it is not safe for concurrent use.
type WireDecoder struct {
	w     wireHTTP
	block strings.Builder // the current string block; only appended to
	keys  []byte          // scratch: lower-cased header names
	vals  []byte          // scratch: masked header values, redacted path and query, upstream host, flags
	json  []byte          // scratch: the headers JSON
	kept  []wireKV
}

// FromHTTP converts one HTTPAccessLogEntry in wire form under p.
func (d *WireDecoder) FromHTTP(p *Redactor, node, group string, b []byte) (Record, error) {
	d.w = wireHTTP{headers: d.w.headers[:0]}
	if d.w.parse(b) {
		return p.fromWire(node, group, &d.w, d), nil
	}
	e := new(alv3.HTTPAccessLogEntry)
	if err := proto.Unmarshal(b, e); err != nil {
		return Record{}, err
	}
	return p.FromHTTP(node, group, e), nil
}

type wireKV struct{ k, v []byte }

type wireTime struct {
	set  bool
	sec  int64
	nano int32
}

type wireAddr struct {
	set  bool // socket_address is the oneof's last member
	addr []byte
	port uint32
}

// wireHTTP holds what FromHTTP reads, as slices of the entry's bytes.
type wireHTTP struct {
	start, duration, lastTx wireTime
	logType                 int32
	route, upCluster        []byte
	client, upstream        wireAddr
	tls                     bool
	tlsVersion              int32
	sni, sanURI, subject    []byte
	peer                    bool
	flags                   uint32 // bit i-1: ResponseFlags field i (1..28)
	flagsSet                bool
	authz                   [len(authzKeys)][]byte // the ext_authz metadata strings
	versionTag              []byte                 // custom_tags[contract.ConfigVersionTag]

	method                         int32
	authority, path, ua, requestID []byte
	bodyIn, bodyOut                uint64
	status                         uint32
	headers                        []wireKV // its array is reused from entry to entry
}

// next reads the field at the start of b (a message in wire form): its
// number and wire type, the value of a varint or the bytes of a
// length-delimited field (other wire types are skipped), and how many
// bytes it took, n < 0 on malformed input. One-byte tags, varints and
// lengths (nearly every field of an entry) are read inline; the rest, and
// every error, is protowire's.
func next(b []byte) (num protowire.Number, typ protowire.Type, v uint64, val []byte, n int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 {
		num, typ, n = protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	} else if num, typ, n = protowire.ConsumeTag(b); n < 0 {
		return 0, 0, 0, nil, -1
	}
	rest := b[n:]
	switch typ {
	case protowire.VarintType:
		if len(rest) > 0 && rest[0] < 0x80 {
			return num, typ, uint64(rest[0]), nil, n + 1
		}
		v, m := protowire.ConsumeVarint(rest)
		if m < 0 {
			return 0, 0, 0, nil, -1
		}
		return num, typ, v, nil, n + m
	case protowire.BytesType:
		var l uint64
		m := 1
		if len(rest) > 0 && rest[0] < 0x80 {
			l = uint64(rest[0])
		} else if l, m = protowire.ConsumeVarint(rest); m < 0 {
			return 0, 0, 0, nil, -1
		}
		if l > uint64(len(rest)-m) {
			return 0, 0, 0, nil, -1
		}
		end := m + int(l)
		return num, typ, 0, rest[m:end], n + end
	default:
		m := protowire.ConsumeFieldValue(num, typ, rest)
		if m < 0 {
			return 0, 0, 0, nil, -1
		}
		return num, typ, 0, nil, n + m
	}
}

// validUTF8 is utf8.Valid with ASCII, nearly every string of an entry,
// checked eight bytes at a time inline.
func validUTF8(b []byte) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 != 0 {
			return utf8.Valid(b[i:])
		}
	}
	for ; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return utf8.Valid(b[i:])
		}
	}
	return true
}

// once marks a singular message field seen; a second occurrence would be
// merged by proto, which the fast reader leaves to proto.
func once(seen *uint64, num protowire.Number) bool {
	bit := uint64(1) << (uint(num) & 63)
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// The readers below return false on malformed input and on anything they
// leave to proto.Unmarshal; they read every field with next, in order, so
// a field sent again replaces the earlier value as in proto.

func (w *wireHTTP) parse(b []byte) bool {
	w.headers = w.headers[:0]
	var seen uint64
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 && num != 3 && num != 4 {
			continue
		}
		if typ != protowire.BytesType || !once(&seen, num) {
			return false
		}
		var ok bool
		switch num {
		case 1:
			ok = w.common(val)
		case 3:
			ok = w.request(val)
		default:
			ok = w.response(val)
		}
		if !ok {
			return false
		}
	}
	return true
}

func parseWireTime(t *wireTime, b []byte) bool {
	t.set = true
	for len(b) > 0 {
		num, typ, v, _, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1, 2:
			if typ != protowire.VarintType {
				return false
			}
			if num == 1 {
				t.sec = int64(v)
			} else {
				t.nano = int32(v)
			}
		}
	}
	return true
}

// parseAddr reads a core.v3.Address (oneof socket_address=1, pipe=2,
// envoy_internal_address=3).
func parseAddr(a *wireAddr, b []byte) bool {
	sockets := 0
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num < 1 || num > 3 {
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		if num != 1 {
			a.set, a.addr, a.port = false, nil, 0
			continue
		}
		if sockets++; sockets > 1 {
			return false
		}
		a.set = true
		if !parseSocket(a, val) {
			return false
		}
	}
	return true
}

// parseSocket reads a SocketAddress: address=2, port_value=3 | named_port=4.
func parseSocket(a *wireAddr, b []byte) bool {
	for len(b) > 0 {
		num, typ, v, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 2, 4:
			if typ != protowire.BytesType {
				return false
			}
			if num == 4 {
				a.port = 0
				continue
			}
			if !validUTF8(val) {
				return false
			}
			a.addr = val
		case 3:
			if typ != protowire.VarintType {
				return false
			}
			a.port = uint32(v)
		}
	}
	return true
}

func (w *wireHTTP) common(b []byte) bool {
	var seen uint64
	for len(b) > 0 {
		num, typ, v, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 2, 4, 5, 12, 13, 16, 17, 23:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			var ok bool
			switch num {
			case 2:
				ok = parseAddr(&w.client, val)
			case 4:
				ok = w.tlsProps(val)
			case 5:
				ok = parseWireTime(&w.start, val)
			case 12:
				ok = parseWireTime(&w.lastTx, val)
			case 13:
				ok = parseAddr(&w.upstream, val)
			case 16:
				ok = w.responseFlags(val)
			case 17:
				ok = w.metadata(val)
			default:
				ok = parseWireTime(&w.duration, val)
			}
			if !ok {
				return false
			}
		case 15, 19:
			if typ != protowire.BytesType || !validUTF8(val) {
				return false
			}
			if num == 15 {
				w.upCluster = val
			} else {
				w.route = val
			}
		case 22: // custom_tags map<string, string>; a key sent again replaces the earlier entry
			if typ != protowire.BytesType {
				return false
			}
			k, v, ok := mapEntry(val, false)
			if !ok || !validUTF8(v) {
				return false
			}
			if string(k) == contract.ConfigVersionTag {
				w.versionTag = v
			}
		case 33:
			if typ != protowire.VarintType {
				return false
			}
			w.logType = int32(v)
		}
	}
	return true
}

func (w *wireHTTP) tlsProps(b []byte) bool {
	w.tls = true
	var seen uint64
	for len(b) > 0 {
		num, typ, v, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return false
			}
			w.tlsVersion = int32(v)
		case 3:
			if typ != protowire.BytesType || !validUTF8(val) {
				return false
			}
			w.sni = val
		case 5:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			w.peer = true
			if !w.certificate(val) {
				return false
			}
		}
	}
	return true
}

// certificate reads CertificateProperties: subject_alt_name=1 (repeated;
// oneof uri=1 | dns=2 | ip_address=3), subject=2.
func (w *wireHTTP) certificate(b []byte) bool {
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return false
			}
			var uri []byte
			for len(val) > 0 {
				num, typ, _, s, n := next(val)
				if n < 0 {
					return false
				}
				val = val[n:]
				if num < 1 || num > 3 {
					continue
				}
				if typ != protowire.BytesType {
					return false
				}
				uri = nil
				if num == 1 {
					if !validUTF8(s) {
						return false
					}
					uri = s
				}
			}
			if len(w.sanURI) == 0 {
				w.sanURI = uri
			}
		case 2:
			if typ != protowire.BytesType || !validUTF8(val) {
				return false
			}
			w.subject = val
		}
	}
	return true
}

func (w *wireHTTP) responseFlags(b []byte) bool {
	w.flagsSet = true
	for len(b) > 0 {
		num, typ, v, _, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num < 1 || num > 28 {
			continue
		}
		bit := uint32(1) << (num - 1)
		if num == 13 { // unauthorized_details: present is enough
			if typ != protowire.BytesType {
				return false
			}
			w.flags |= bit
			continue
		}
		if typ != protowire.VarintType {
			return false
		}
		if v != 0 {
			w.flags |= bit
		} else {
			w.flags &^= bit
		}
	}
	return true
}

// mapEntry reads a map entry (key=1, value=2); a message value sent twice
// would be merged, so it is refused.
func mapEntry(b []byte, msgValue bool) (k, v []byte, ok bool) {
	// What proto.Marshal writes for short entries: key (tag 0x0a) then
	// value (tag 0x12), one-byte lengths, nothing else.
	if len(b) >= 4 && b[0] == 0x0a && b[1] < 0x80 {
		if kl := int(b[1]); 2+kl+2 <= len(b) && b[2+kl] == 0x12 && b[3+kl] < 0x80 && 4+kl+int(b[3+kl]) == len(b) {
			k = b[2 : 2+kl]
			return k, b[4+kl:], validUTF8(k)
		}
	}
	values := 0
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return k, v, false
		}
		b = b[n:]
		if num != 1 && num != 2 {
			continue
		}
		if typ != protowire.BytesType {
			return k, v, false
		}
		if num == 1 {
			if !validUTF8(val) {
				return val, v, false
			}
			k = val
			continue
		}
		if values++; msgValue && values > 1 {
			return k, v, false
		}
		v = val
	}
	return k, v, true
}

// metadata reads core.v3.Metadata: filter_metadata=1 map<string, Struct>.
// A map key sent again replaces the earlier entry.
func (w *wireHTTP) metadata(b []byte) bool {
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 {
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := mapEntry(val, true)
		if !ok {
			return false
		}
		if string(k) == contract.ExtAuthzNamespace {
			w.authz = [len(authzKeys)][]byte{}
			if !w.authzStruct(v) {
				return false
			}
		}
	}
	return true
}

// authzKeys are the ext_authz metadata fields a Record keeps, in the
// order of wireHTTP.authz.
var authzKeys = [...]string{"subject", "provider", "kind", "apikey_id", "rule", "decision", contract.ConfigVersionKey}

// authzSlot is the index of k in authzKeys, or -1.
func authzSlot(k []byte) int {
	for i, key := range authzKeys {
		if string(k) == key {
			return i
		}
	}
	return -1
}

// valueKinds are the wire types of google.protobuf.Value's oneof members
// (null_value=1 … list_value=6); a member sent with another wire type is
// an unknown field to proto.
var valueKinds = [7]protowire.Type{1: protowire.VarintType, 2: protowire.Fixed64Type, 3: protowire.BytesType,
	4: protowire.VarintType, 5: protowire.BytesType, 6: protowire.BytesType}

// authzStruct reads the ext_authz Struct (fields=1 map<string, Value>;
// Value is a oneof, string_value=3; a key sent again replaces the earlier
// entry) into w.authz.
func (w *wireHTTP) authzStruct(b []byte) bool {
	for len(b) > 0 {
		num, typ, _, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 {
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := mapEntry(val, true)
		if !ok {
			return false
		}
		slot := authzSlot(k)
		if slot < 0 {
			continue
		}
		// What proto.Marshal writes for a string: string_value (tag
		// 0x1a) alone, a one-byte length.
		if len(v) >= 2 && v[0] == 0x1a && v[1] < 0x80 && 2+int(v[1]) == len(v) {
			if !validUTF8(v[2:]) {
				return false
			}
			w.authz[slot] = v[2:]
			continue
		}
		var s []byte
		for len(v) > 0 {
			num, typ, _, val, n := next(v)
			if n < 0 {
				return false
			}
			v = v[n:]
			if num < 1 || num > 6 || typ != valueKinds[num] {
				continue // unknown to proto
			}
			s = nil
			if num == 3 {
				if !validUTF8(val) {
					return false
				}
				s = val
			}
		}
		w.authz[slot] = s
	}
	return true
}

func (w *wireHTTP) request(b []byte) bool {
	for len(b) > 0 {
		num, typ, v, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return false
			}
			w.method = int32(v)
		case 3, 5, 6, 9:
			if typ != protowire.BytesType || !validUTF8(val) {
				return false
			}
			switch num {
			case 3:
				w.authority = val
			case 5:
				w.path = val
			case 6:
				w.ua = val
			default:
				w.requestID = val
			}
		case 12:
			if typ != protowire.VarintType {
				return false
			}
			w.bodyIn = v
		case 13:
			if typ != protowire.BytesType {
				return false
			}
			k, v, ok := mapEntry(val, false)
			if !ok || !validUTF8(v) {
				return false
			}
			w.headers = append(w.headers, wireKV{k, v})
		}
	}
	return true
}

func (w *wireHTTP) response(b []byte) bool {
	var seen uint64
	for len(b) > 0 {
		num, typ, v, val, n := next(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			// UInt32Value: value=1.
			for len(val) > 0 {
				num, typ, v, _, n := next(val)
				if n < 0 {
					return false
				}
				val = val[n:]
				if num == 1 {
					if typ != protowire.VarintType {
						return false
					}
					w.status = uint32(v)
				}
			}
		case 3:
			if typ != protowire.VarintType {
				return false
			}
			w.bodyOut = v
		}
	}
	return true
}

func (t wireTime) duration() time.Duration {
	return (&durationpb.Duration{Seconds: t.sec, Nanos: t.nano}).AsDuration()
}

// protoEnum is a generated enum type.
type protoEnum interface {
	~int32
	String() string
}

// enumNames are the String() of an enum's values 0..n-1, computed once:
// String() looks the name up in the descriptor, a cost per entry.
func enumNames[E protoEnum](n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = E(i).String()
	}
	return out
}

// enumString is v.String() through names.
func enumString[E protoEnum](names []string, v E) string {
	if v >= 0 && int(v) < len(names) {
		return names[v]
	}
	return v.String()
}

var (
	logTypeNames    = enumNames[alv3.AccessLogType](len(alv3.AccessLogType_name))
	tlsVersionNames = enumNames[alv3.TLSProperties_TLSVersion](len(alv3.TLSProperties_TLSVersion_name))
	methodNames     = enumNames[corev3.RequestMethod](len(corev3.RequestMethod_name))
)

// fromWire is FromHTTP (and common) over a parsed entry.
func (p *Redactor) fromWire(node, group string, w *wireHTTP, d *WireDecoder) Record {
	r := Record{Kind: "http", Node: node, NodeGroup: group}
	if w.start.set {
		r.Time = time.Unix(w.start.sec, int64(w.start.nano)).UTC().Truncate(time.Millisecond)
	}
	if w.logType != int32(alv3.AccessLogType_NotSet) {
		r.LogType = enumString(logTypeNames, alv3.AccessLogType(w.logType))
	} else {
		r.LogType = "DownstreamEnd"
	}
	r.Route = d.str(w.route)
	if w.duration.set {
		r.DurationUS = w.duration.duration().Microseconds()
	} else if w.lastTx.set {
		r.DurationUS = w.lastTx.duration().Microseconds()
	}
	if w.client.set {
		r.ClientIP = d.str(w.client.addr)
		r.ClientPort = w.client.port
	}
	if w.tls {
		if w.tlsVersion != int32(alv3.TLSProperties_VERSION_UNSPECIFIED) {
			r.TLSVersion = enumString(tlsVersionNames, alv3.TLSProperties_TLSVersion(w.tlsVersion))
		}
		r.TLSSNI = d.str(w.sni)
		if w.peer {
			if len(w.sanURI) > 0 {
				r.PeerPrincipal = d.str(w.sanURI)
			} else {
				r.PeerPrincipal = d.str(w.subject)
			}
		}
	}
	r.UpstreamCluster = d.str(w.upCluster)
	if w.upstream.set {
		if w.upstream.port != 0 {
			d.vals = strconv.AppendUint(append(append(d.vals[:0], w.upstream.addr...), ':'), uint64(w.upstream.port), 10)
			r.UpstreamHost = d.str(d.vals)
		} else {
			r.UpstreamHost = d.str(w.upstream.addr)
		}
	}
	if w.flagsSet {
		d.vals = appendFlags(d.vals[:0], w.flags)
		r.ResponseFlags = d.str(d.vals)
	}
	r.Subject, r.Provider, r.AuthKind = d.str(w.authz[0]), d.str(w.authz[1]), d.str(w.authz[2])
	r.APIKeyID, r.Rule, r.Decision = d.str(w.authz[3]), d.str(w.authz[4]), d.str(w.authz[5])
	r.ConfigVersion = d.str(w.authz[6])
	if r.ConfigVersion == "" {
		r.ConfigVersion = d.str(w.versionTag)
	}
	r.RequestID = d.str(w.requestID)
	r.Authority = d.str(w.authority)
	if w.method != int32(corev3.RequestMethod_METHOD_UNSPECIFIED) {
		r.Method = enumString(methodNames, corev3.RequestMethod(w.method))
	}
	path, query, _ := bytes.Cut(w.path, []byte("?"))
	rp := p.route(r.Route)
	if ps := unsafe.String(unsafe.SliceData(path), len(path)); pathHasParams(ps) {
		d.vals = p.appendPath(d.vals[:0], rp, ps)
		r.Path = d.str(d.vals)
	} else {
		r.Path = d.str(path)
	}
	if len(query) > 0 {
		d.vals = p.appendQuery(d.vals[:0], rp, unsafe.String(unsafe.SliceData(query), len(query)))
		r.Query = d.str(d.vals)
	}
	r.UserAgent = d.str(w.ua)
	r.BytesIn = w.bodyIn
	r.BytesOut = w.bodyOut
	r.Status = w.status
	r.Headers = p.wireHeaders(rp, w.headers, d)
	return r
}

// flagCodeByField are Envoy's short codes by ResponseFlags field number - 1
// (the order flagCodes writes them in).
var flagCodeByField = [28]string{"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI",
	"FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT",
	"UPE", "NC", "OM", "DF", "DR"}

// appendFlags appends the short codes of the flags set in bits,
// comma-separated.
func appendFlags(b []byte, bits uint32) []byte {
	start := len(b)
	for i, code := range flagCodeByField {
		if bits&(1<<i) != 0 {
			if len(b) > start {
				b = append(b, ',')
			}
			b = append(b, code...)
		}
	}
	return b
}

// str returns b as a string cut from the current block.
func (d *WireDecoder) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	// A strings.Builder grows without zeroing its buffer (a made []byte
	// is zeroed first: a tenth of the decoder's time), and what it holds
	// is never written again, so the cut strings stay valid.
	if d.block.Cap()-d.block.Len() < len(b) {
		d.block = strings.Builder{}
		d.block.Grow(max(32<<10, len(b)))
	}
	start := d.block.Len()
	d.block.Write(b)
	return d.block.String()[start:]
}

// wireHeaders is headers over the entries of the map as sent: a key sent
// twice keeps its last value, as in the decoded map.
func (p *Redactor) wireHeaders(rp *routePolicy, h []wireKV, d *WireDecoder) string {
	if len(h) == 0 {
		return ""
	}
	kept := d.kept[:0]
	d.keys, d.vals = d.keys[:0], d.vals[:0]
next:
	for i, e := range h {
		for _, later := range h[i+1:] {
			if string(later.k) == string(e.k) {
				continue next
			}
		}
		// A name in lower case already (what Envoy sends) is used as it
		// is; another is lowered into the scratch, whose slices stay
		// valid when it grows: bytes already written are not rewritten
		// within one entry.
		k := e.k
		start := len(d.keys)
		if !isLowerASCII(k) {
			d.keys = appendLower(d.keys, e.k)
			k = d.keys[start:len(d.keys):len(d.keys)]
		}
		ks := unsafe.String(unsafe.SliceData(k), len(k))
		var act headerAction
		if rp.kept != nil {
			a, ok := rp.kept.lookup(ks)
			if !ok {
				d.keys = d.keys[:start]
				continue
			}
			act = a
		} else {
			act = p.headerAction(rp, ks)
		}
		v := e.v
		switch act {
		case headerSecret:
			vs := len(d.vals)
			d.vals = p.appendMask(d.vals, e.v)
			v = d.vals[vs:len(d.vals):len(d.vals)]
		case headerURL:
			vs := len(d.vals)
			d.vals = p.appendURL(d.vals, rp, unsafe.String(unsafe.SliceData(e.v), len(e.v)))
			v = d.vals[vs:len(d.vals):len(d.vals)]
		}
		kept = append(kept, wireKV{k, v})
	}
	d.kept = kept
	if len(kept) == 0 {
		return ""
	}
	sortByKey(kept)
	b := append(d.json[:0], '{')
	for i, e := range kept {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.k)
		b = append(b, ':')
		b = appendJSONString(b, e.v)
	}
	b = append(b, '}')
	d.json = b
	return d.str(b)
}

// sortByKey sorts kept by name as slices.SortFunc with bytes.Compare
// does, with the same order for equal names (two names that differ only
// in case): an insertion sort, what slices.SortFunc runs on 12 elements
// or fewer, inline.
func sortByKey(kept []wireKV) {
	if len(kept) > 12 {
		slices.SortFunc(kept, func(a, b wireKV) int { return bytes.Compare(a.k, b.k) })
		return
	}
	for i := 1; i < len(kept); i++ {
		for j := i; j > 0 && string(kept[j].k) < string(kept[j-1].k); j-- {
			kept[j], kept[j-1] = kept[j-1], kept[j]
		}
	}
}

// isLowerASCII reports whether b is ASCII with no upper-case letter, so
// strings.ToLower(b) is b.
func isLowerASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// appendLower appends strings.ToLower(b) to dst. Names Envoy sends are
// lower case already (HTTP/2 requires it): those are appended at once.
func appendLower(dst, b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < utf8.RuneSelf && (b[i] < 'A' || b[i] > 'Z') {
		i++
	}
	dst = append(dst, b[:i]...)
	if i == len(b) {
		return dst
	}
	start := len(dst) - i
	for _, c := range b[i:] {
		if c >= utf8.RuneSelf {
			return append(dst[:start], strings.ToLower(string(b))...)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

type kv struct{ k, v string }

func headersJSON(kept []kv) string {
	if len(kept) == 0 {
		return ""
	}
	slices.SortFunc(kept, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for i, e := range kept {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.k)
		b = append(b, ':')
		b = appendJSONString(b, e.v)
	}
	return string(append(b, '}'))
}
