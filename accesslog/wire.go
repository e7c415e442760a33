package accesslog

import (
	"bytes"
	"slices"
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
	vals  []byte          // scratch: masked header values
	json  []byte          // scratch: the headers JSON
	kept  []wireKV
}

// FromHTTP converts one HTTPAccessLogEntry in wire form under p.
func (d *WireDecoder) FromHTTP(p *Redactor, node, group string, b []byte) (Record, error) {
	d.w = wireHTTP{}
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
	headers                        []wireKV
	headerStack                    [16]wireKV
}

// walk calls fn for every field of a message; fn gets the varint value or
// the length-delimited bytes. Other wire types are skipped (typ tells fn).
// It stops with false on malformed input or when fn returns false.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		var v uint64
		var val []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false
		}
		b = b[n:]
		if !fn(num, typ, v, val) {
			return false
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

func str(val []byte) ([]byte, bool) { return val, utf8.Valid(val) }

func (w *wireHTTP) parse(b []byte) bool {
	w.headers = w.headerStack[:0]
	var seen uint64
	return walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		switch num {
		case 1, 3, 4:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			switch num {
			case 1:
				return w.common(val)
			case 3:
				return w.request(val)
			default:
				return w.response(val)
			}
		}
		return true
	})
}

func parseWireTime(t *wireTime, b []byte) bool {
	t.set = true
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
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
		return true
	})
}

// parseAddr reads a core.v3.Address (oneof socket_address=1, pipe=2,
// envoy_internal_address=3).
func parseAddr(a *wireAddr, b []byte) bool {
	sockets := 0
	return walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		switch num {
		case 1, 2, 3:
			if typ != protowire.BytesType {
				return false
			}
			if num != 1 {
				a.set, a.addr, a.port = false, nil, 0
				return true
			}
			if sockets++; sockets > 1 {
				return false
			}
			a.set = true
			// SocketAddress: address=2, port_value=3 | named_port=4.
			return walk(val, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
				switch num {
				case 2, 4:
					if typ != protowire.BytesType {
						return false
					}
					if num == 4 {
						a.port = 0
						return true
					}
					var ok bool
					a.addr, ok = str(val)
					return ok
				case 3:
					if typ != protowire.VarintType {
						return false
					}
					a.port = uint32(v)
				}
				return true
			})
		}
		return true
	})
}

func (w *wireHTTP) common(b []byte) bool {
	var seen uint64
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 2, 4, 5, 12, 13, 16, 17, 23:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			switch num {
			case 2:
				return parseAddr(&w.client, val)
			case 4:
				return w.tlsProps(val)
			case 5:
				return parseWireTime(&w.start, val)
			case 12:
				return parseWireTime(&w.lastTx, val)
			case 13:
				return parseAddr(&w.upstream, val)
			case 16:
				return w.responseFlags(val)
			case 17:
				return w.metadata(val)
			default:
				return parseWireTime(&w.duration, val)
			}
		case 15, 19:
			if typ != protowire.BytesType {
				return false
			}
			s, ok := str(val)
			if num == 15 {
				w.upCluster = s
			} else {
				w.route = s
			}
			return ok
		case 22: // custom_tags map<string, string>; a key sent again replaces the earlier entry
			if typ != protowire.BytesType {
				return false
			}
			k, v, ok := mapEntry(val, false)
			if ok && !utf8.Valid(v) {
				return false
			}
			if string(k) == contract.ConfigVersionTag {
				w.versionTag = v
			}
			return ok
		case 33:
			if typ != protowire.VarintType {
				return false
			}
			w.logType = int32(v)
		}
		return true
	})
}

func (w *wireHTTP) tlsProps(b []byte) bool {
	w.tls = true
	var seen uint64
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return false
			}
			w.tlsVersion = int32(v)
		case 3:
			if typ != protowire.BytesType {
				return false
			}
			var ok bool
			w.sni, ok = str(val)
			return ok
		case 5:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			w.peer = true
			// CertificateProperties: subject_alt_name=1 (repeated; oneof
			// uri=1 | dns=2 | ip_address=3), subject=2.
			return walk(val, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
				switch num {
				case 1:
					if typ != protowire.BytesType {
						return false
					}
					var uri []byte
					ok := walk(val, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
						switch num {
						case 1, 2, 3:
							if typ != protowire.BytesType {
								return false
							}
							uri = nil
							if num == 1 {
								var ok bool
								uri, ok = str(val)
								return ok
							}
						}
						return true
					})
					if len(w.sanURI) == 0 {
						w.sanURI = uri
					}
					return ok
				case 2:
					if typ != protowire.BytesType {
						return false
					}
					var ok bool
					w.subject, ok = str(val)
					return ok
				}
				return true
			})
		}
		return true
	})
}

func (w *wireHTTP) responseFlags(b []byte) bool {
	w.flagsSet = true
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
		if num < 1 || num > 28 {
			return true
		}
		bit := uint32(1) << (num - 1)
		if num == 13 { // unauthorized_details: present is enough
			if typ != protowire.BytesType {
				return false
			}
			w.flags |= bit
			return true
		}
		if typ != protowire.VarintType {
			return false
		}
		if v != 0 {
			w.flags |= bit
		} else {
			w.flags &^= bit
		}
		return true
	})
}

// mapEntry reads a map entry (key=1, value=2); a message value sent twice
// would be merged, so it is refused.
func mapEntry(b []byte, msgValue bool) (k, v []byte, ok bool) {
	values := 0
	ok = walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		switch num {
		case 1, 2:
			if typ != protowire.BytesType {
				return false
			}
			if num == 1 {
				var ok bool
				k, ok = str(val)
				return ok
			}
			if values++; msgValue && values > 1 {
				return false
			}
			v = val
		}
		return true
	})
	return k, v, ok
}

// metadata reads core.v3.Metadata: filter_metadata=1 map<string, Struct>.
// A map key sent again replaces the earlier entry.
func (w *wireHTTP) metadata(b []byte) bool {
	return walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		if num != 1 {
			return true
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := mapEntry(val, true)
		if ok && string(k) == contract.ExtAuthzNamespace {
			w.authz = [len(authzKeys)][]byte{}
			ok = w.authzStruct(v)
		}
		return ok
	})
}

// authzKeys are the ext_authz metadata fields a Record keeps, in the
// order of wireHTTP.authz.
var authzKeys = [...]string{"subject", "provider", "kind", "apikey_id", "rule", "decision", contract.ConfigVersionKey}

// valueKinds are the wire types of google.protobuf.Value's oneof members
// (null_value=1 … list_value=6); a member sent with another wire type is
// an unknown field to proto.
var valueKinds = [7]protowire.Type{1: protowire.VarintType, 2: protowire.Fixed64Type, 3: protowire.BytesType,
	4: protowire.VarintType, 5: protowire.BytesType, 6: protowire.BytesType}

// authzStruct reads the ext_authz Struct (fields=1 map<string, Value>;
// Value is a oneof, string_value=3; a key sent again replaces the earlier
// entry) into w.authz.
func (w *wireHTTP) authzStruct(b []byte) bool {
	return walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		if num != 1 {
			return true
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := mapEntry(val, true)
		if !ok {
			return false
		}
		slot := -1
		for i, key := range authzKeys {
			if string(k) == key {
				slot = i
				break
			}
		}
		if slot < 0 {
			return true
		}
		var s []byte
		ok = walk(v, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
			if num < 1 || num > 6 || typ != valueKinds[num] {
				return true // unknown to proto
			}
			s = nil
			if num == 3 {
				var ok bool
				s, ok = str(val)
				return ok
			}
			return true
		})
		w.authz[slot] = s
		return ok
	})
}

func (w *wireHTTP) request(b []byte) bool {
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return false
			}
			w.method = int32(v)
		case 3, 5, 6, 9:
			if typ != protowire.BytesType {
				return false
			}
			s, ok := str(val)
			switch num {
			case 3:
				w.authority = s
			case 5:
				w.path = s
			case 6:
				w.ua = s
			default:
				w.requestID = s
			}
			return ok
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
			if ok && !utf8.Valid(v) {
				return false
			}
			w.headers = append(w.headers, wireKV{k, v})
			return ok
		}
		return true
	})
}

func (w *wireHTTP) response(b []byte) bool {
	var seen uint64
	return walk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 1:
			if typ != protowire.BytesType || !once(&seen, num) {
				return false
			}
			// UInt32Value: value=1.
			return walk(val, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
				if num == 1 {
					if typ != protowire.VarintType {
						return false
					}
					w.status = uint32(v)
				}
				return true
			})
		case 3:
			if typ != protowire.VarintType {
				return false
			}
			w.bodyOut = v
		}
		return true
	})
}

func (t wireTime) duration() time.Duration {
	return (&durationpb.Duration{Seconds: t.sec, Nanos: t.nano}).AsDuration()
}

// fromWire is FromHTTP (and common) over a parsed entry.
func (p *Redactor) fromWire(node, group string, w *wireHTTP, d *WireDecoder) Record {
	r := Record{Kind: "http", Node: node, NodeGroup: group}
	if w.start.set {
		r.Time = time.Unix(w.start.sec, int64(w.start.nano)).UTC().Truncate(time.Millisecond)
	}
	if w.logType != int32(alv3.AccessLogType_NotSet) {
		r.LogType = alv3.AccessLogType(w.logType).String()
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
			r.TLSVersion = alv3.TLSProperties_TLSVersion(w.tlsVersion).String()
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
			r.UpstreamHost = string(w.upstream.addr) + ":" + itoa(w.upstream.port)
		} else {
			r.UpstreamHost = d.str(w.upstream.addr)
		}
	}
	if w.flagsSet {
		r.ResponseFlags = flagString(w.flags)
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
		r.Method = corev3.RequestMethod(w.method).String()
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
	r.Headers = p.wireHeaders(r.Route, w.headers, d)
	return r
}

// flagCodeByField are Envoy's short codes by ResponseFlags field number - 1
// (the order flagCodes writes them in).
var flagCodeByField = [28]string{"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI",
	"FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT",
	"UPE", "NC", "OM", "DF", "DR"}

func flagString(bits uint32) string {
	if bits == 0 {
		return ""
	}
	var b []byte
	for i, code := range flagCodeByField {
		if bits&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, code...)
		}
	}
	return string(b)
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
func (p *Redactor) wireHeaders(route string, h []wireKV, d *WireDecoder) string {
	if len(h) == 0 {
		return ""
	}
	rp := p.route(route)
	kept := d.kept[:0]
	d.keys, d.vals = d.keys[:0], d.vals[:0]
next:
	for i, e := range h {
		for _, later := range h[i+1:] {
			if string(later.k) == string(e.k) {
				continue next
			}
		}
		// Slices of the scratch stay valid when it grows: bytes already
		// written are not rewritten within one entry.
		start := len(d.keys)
		d.keys = appendLower(d.keys, e.k)
		k := d.keys[start:len(d.keys):len(d.keys)]
		if rp.keep != nil && !rp.keep[string(k)] {
			d.keys = d.keys[:start]
			continue
		}
		v := e.v
		if ks := unsafe.String(unsafe.SliceData(k), len(k)); p.secretHeader(rp, ks) {
			vs := len(d.vals)
			d.vals = p.appendMask(d.vals, e.v)
			v = d.vals[vs:len(d.vals):len(d.vals)]
		} else if isURLHeader(ks) {
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
	slices.SortFunc(kept, func(a, b wireKV) int { return bytes.Compare(a.k, b.k) })
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

// appendLower appends strings.ToLower(b) to dst.
func appendLower(dst, b []byte) []byte {
	start := len(dst)
	for _, c := range b {
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
