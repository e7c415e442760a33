package accesslog

// The wire decoder and redactor as they were at commit dd76589, before
// the loop rewrite, kept as the reference the differential tests and the
// fuzzer compare the fast path with (wire_diff_test.go). Two changes
// since: a mask takes a fresh HMAC of the same key instead of one from
// the Redactor's pool, whose type changed; and the one-entry wrapper
// FromHTTPWire, which no test called, is left out (the tests use
// refWireDecoder directly). Do not optimise this file: its worth is that
// it is the old code.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
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

// refRedactor is a Redactor whose methods are the old ones.
type refRedactor struct{ *Redactor }

// refWireDecoder is the old FromHTTPWire with buffers kept from entry to
// entry: the strings of the records it returns are cut from shared blocks
// that are never written again (a block lives as long as any of its
// strings), and header names and masked values are built in reused
// scratch space. Use one per stream; it is not safe for concurrent use.
type refWireDecoder struct {
	w     refWireHTTP
	block strings.Builder // the current string block; only appended to
	keys  []byte          // scratch: lower-cased header names
	vals  []byte          // scratch: masked header values
	json  []byte          // scratch: the headers JSON
	kept  []refWireKV
}

// FromHTTP converts one HTTPAccessLogEntry in wire form under p.
func (d *refWireDecoder) FromHTTP(p refRedactor, node, group string, b []byte) (Record, error) {
	d.w = refWireHTTP{}
	if d.w.parse(b) {
		return p.fromWire(node, group, &d.w, d), nil
	}
	e := new(alv3.HTTPAccessLogEntry)
	if err := proto.Unmarshal(b, e); err != nil {
		return Record{}, err
	}
	return p.FromHTTP(node, group, e), nil
}

type refWireKV struct{ k, v []byte }

type refWireTime struct {
	set  bool
	sec  int64
	nano int32
}

type refWireAddr struct {
	set  bool // socket_address is the oneof's last member
	addr []byte
	port uint32
}

// refWireHTTP holds what FromHTTP reads, as slices of the entry's bytes.
type refWireHTTP struct {
	start, duration, lastTx refWireTime
	logType                 int32
	route, upCluster        []byte
	client, upstream        refWireAddr
	tls                     bool
	tlsVersion              int32
	sni, sanURI, subject    []byte
	peer                    bool
	flags                   uint32 // bit i-1: ResponseFlags field i (1..28)
	flagsSet                bool
	authz                   [len(refAuthzKeys)][]byte // the ext_authz metadata strings
	versionTag              []byte                    // custom_tags[contract.ConfigVersionTag]

	method                         int32
	authority, path, ua, requestID []byte
	bodyIn, bodyOut                uint64
	status                         uint32
	headers                        []refWireKV
	headerStack                    [16]refWireKV
}

// refWalk calls fn for every field of a message; fn gets the varint value or
// the length-delimited bytes. Other wire types are skipped (typ tells fn).
// It stops with false on malformed input or when fn returns false.
func refWalk(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool) bool {
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

// refOnce marks a singular message field seen; a second occurrence would be
// merged by proto, which the fast reader leaves to proto.
func refOnce(seen *uint64, num protowire.Number) bool {
	bit := uint64(1) << (uint(num) & 63)
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func refStr(val []byte) ([]byte, bool) { return val, utf8.Valid(val) }

func (w *refWireHTTP) parse(b []byte) bool {
	w.headers = w.headerStack[:0]
	var seen uint64
	return refWalk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		switch num {
		case 1, 3, 4:
			if typ != protowire.BytesType || !refOnce(&seen, num) {
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

func refParseWireTime(t *refWireTime, b []byte) bool {
	t.set = true
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
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

// refParseAddr reads a core.v3.Address (oneof socket_address=1, pipe=2,
// envoy_internal_address=3).
func refParseAddr(a *refWireAddr, b []byte) bool {
	sockets := 0
	return refWalk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
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
			return refWalk(val, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
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
					a.addr, ok = refStr(val)
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

func (w *refWireHTTP) common(b []byte) bool {
	var seen uint64
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 2, 4, 5, 12, 13, 16, 17, 23:
			if typ != protowire.BytesType || !refOnce(&seen, num) {
				return false
			}
			switch num {
			case 2:
				return refParseAddr(&w.client, val)
			case 4:
				return w.tlsProps(val)
			case 5:
				return refParseWireTime(&w.start, val)
			case 12:
				return refParseWireTime(&w.lastTx, val)
			case 13:
				return refParseAddr(&w.upstream, val)
			case 16:
				return w.responseFlags(val)
			case 17:
				return w.metadata(val)
			default:
				return refParseWireTime(&w.duration, val)
			}
		case 15, 19:
			if typ != protowire.BytesType {
				return false
			}
			s, ok := refStr(val)
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
			k, v, ok := refMapEntry(val, false)
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

func (w *refWireHTTP) tlsProps(b []byte) bool {
	w.tls = true
	var seen uint64
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
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
			w.sni, ok = refStr(val)
			return ok
		case 5:
			if typ != protowire.BytesType || !refOnce(&seen, num) {
				return false
			}
			w.peer = true
			// CertificateProperties: subject_alt_name=1 (repeated; oneof
			// uri=1 | dns=2 | ip_address=3), subject=2.
			return refWalk(val, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
				switch num {
				case 1:
					if typ != protowire.BytesType {
						return false
					}
					var uri []byte
					ok := refWalk(val, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
						switch num {
						case 1, 2, 3:
							if typ != protowire.BytesType {
								return false
							}
							uri = nil
							if num == 1 {
								var ok bool
								uri, ok = refStr(val)
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
					w.subject, ok = refStr(val)
					return ok
				}
				return true
			})
		}
		return true
	})
}

func (w *refWireHTTP) responseFlags(b []byte) bool {
	w.flagsSet = true
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
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

// refMapEntry reads a map entry (key=1, value=2); a message value sent twice
// would be merged, so it is refused.
func refMapEntry(b []byte, msgValue bool) (k, v []byte, ok bool) {
	values := 0
	ok = refWalk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		switch num {
		case 1, 2:
			if typ != protowire.BytesType {
				return false
			}
			if num == 1 {
				var ok bool
				k, ok = refStr(val)
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
func (w *refWireHTTP) metadata(b []byte) bool {
	return refWalk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		if num != 1 {
			return true
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := refMapEntry(val, true)
		if ok && string(k) == contract.ExtAuthzNamespace {
			w.authz = [len(refAuthzKeys)][]byte{}
			ok = w.authzStruct(v)
		}
		return ok
	})
}

// refAuthzKeys are the ext_authz metadata fields a Record keeps, in the
// order of refWireHTTP.authz.
var refAuthzKeys = [...]string{"subject", "provider", "kind", "apikey_id", "rule", "decision", contract.ConfigVersionKey}

// refValueKinds are the wire types of google.protobuf.Value's oneof members
// (null_value=1 … list_value=6); a member sent with another wire type is
// an unknown field to proto.
var refValueKinds = [7]protowire.Type{1: protowire.VarintType, 2: protowire.Fixed64Type, 3: protowire.BytesType,
	4: protowire.VarintType, 5: protowire.BytesType, 6: protowire.BytesType}

// authzStruct reads the ext_authz Struct (fields=1 map<string, Value>;
// Value is a oneof, string_value=3; a key sent again replaces the earlier
// entry) into w.authz.
func (w *refWireHTTP) authzStruct(b []byte) bool {
	return refWalk(b, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
		if num != 1 {
			return true
		}
		if typ != protowire.BytesType {
			return false
		}
		k, v, ok := refMapEntry(val, true)
		if !ok {
			return false
		}
		slot := -1
		for i, key := range refAuthzKeys {
			if string(k) == key {
				slot = i
				break
			}
		}
		if slot < 0 {
			return true
		}
		var s []byte
		ok = refWalk(v, func(num protowire.Number, typ protowire.Type, _ uint64, val []byte) bool {
			if num < 1 || num > 6 || typ != refValueKinds[num] {
				return true // unknown to proto
			}
			s = nil
			if num == 3 {
				var ok bool
				s, ok = refStr(val)
				return ok
			}
			return true
		})
		w.authz[slot] = s
		return ok
	})
}

func (w *refWireHTTP) request(b []byte) bool {
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
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
			s, ok := refStr(val)
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
			k, v, ok := refMapEntry(val, false)
			if ok && !utf8.Valid(v) {
				return false
			}
			w.headers = append(w.headers, refWireKV{k, v})
			return ok
		}
		return true
	})
}

func (w *refWireHTTP) response(b []byte) bool {
	var seen uint64
	return refWalk(b, func(num protowire.Number, typ protowire.Type, v uint64, val []byte) bool {
		switch num {
		case 1:
			if typ != protowire.BytesType || !refOnce(&seen, num) {
				return false
			}
			// UInt32Value: value=1.
			return refWalk(val, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
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

func (t refWireTime) duration() time.Duration {
	return (&durationpb.Duration{Seconds: t.sec, Nanos: t.nano}).AsDuration()
}

// fromWire is FromHTTP (and common) over a parsed entry.
func (p refRedactor) fromWire(node, group string, w *refWireHTTP, d *refWireDecoder) Record {
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
			r.UpstreamHost = string(w.upstream.addr) + ":" + refItoa(w.upstream.port)
		} else {
			r.UpstreamHost = d.str(w.upstream.addr)
		}
	}
	if w.flagsSet {
		r.ResponseFlags = refFlagString(w.flags)
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
	if ps := unsafe.String(unsafe.SliceData(path), len(path)); refPathHasParams(ps) {
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

// refFlagCodeByField are Envoy's short codes by ResponseFlags field number - 1
// (the order refFlagCodes writes them in).
var refFlagCodeByField = [28]string{"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI",
	"FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT",
	"UPE", "NC", "OM", "DF", "DR"}

func refFlagString(bits uint32) string {
	if bits == 0 {
		return ""
	}
	var b []byte
	for i, code := range refFlagCodeByField {
		if bits&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, code...)
		}
	}
	return string(b)
}

// refStr returns b as a string cut from the current block.
func (d *refWireDecoder) str(b []byte) string {
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
func (p refRedactor) wireHeaders(route string, h []refWireKV, d *refWireDecoder) string {
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
		d.keys = refAppendLower(d.keys, e.k)
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
		} else if refIsURLHeader(ks) {
			vs := len(d.vals)
			d.vals = p.appendURL(d.vals, rp, unsafe.String(unsafe.SliceData(e.v), len(e.v)))
			v = d.vals[vs:len(d.vals):len(d.vals)]
		}
		kept = append(kept, refWireKV{k, v})
	}
	d.kept = kept
	if len(kept) == 0 {
		return ""
	}
	slices.SortFunc(kept, func(a, b refWireKV) int { return bytes.Compare(a.k, b.k) })
	b := append(d.json[:0], '{')
	for i, e := range kept {
		if i > 0 {
			b = append(b, ',')
		}
		b = refAppendJSONString(b, e.k)
		b = append(b, ':')
		b = refAppendJSONString(b, e.v)
	}
	b = append(b, '}')
	d.json = b
	return d.str(b)
}

// refAppendLower appends strings.ToLower(b) to dst.
func refAppendLower(dst, b []byte) []byte {
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

type refKv struct{ k, v string }

func refHeadersJSON(kept []refKv) string {
	if len(kept) == 0 {
		return ""
	}
	slices.SortFunc(kept, func(a, b refKv) int { return strings.Compare(a.k, b.k) })
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for i, e := range kept {
		if i > 0 {
			b = append(b, ',')
		}
		b = refAppendJSONString(b, e.k)
		b = append(b, ':')
		b = refAppendJSONString(b, e.v)
	}
	return string(append(b, '}'))
}

func (p refRedactor) route(id string) *routePolicy {
	if rp, ok := p.routes[id]; ok {
		return rp
	}
	if id == "" {
		return p.unknown
	}
	return p.pending
}

// appendMask appends the stored form of the secret value v (mask's
// result) to dst.
func (p refRedactor) appendMask(dst, v []byte) []byte {
	if len(p.hmacKey) == 0 || len(v) == 0 {
		return append(dst, Mask...)
	}
	m := hmac.New(sha256.New, p.hmacKey) // the pool's type has changed; the computation has not
	m.Reset()
	m.Write(v)
	var sum [sha256.Size]byte
	dst = append(dst, Mask+"."...)
	dst = hex.AppendEncode(dst, m.Sum(sum[:0])[:8])
	return dst
}

// mask returns the stored form of a secret value.
func (p refRedactor) mask(v string) string {
	if len(p.hmacKey) == 0 || v == "" {
		return Mask
	}
	m := hmac.New(sha256.New, p.hmacKey) // the pool's type has changed; the computation has not
	m.Reset()
	m.Write([]byte(v))
	var sum [sha256.Size]byte
	var out [len(Mask) + 1 + 16]byte
	copy(out[:], Mask+".")
	hex.Encode(out[len(Mask)+1:], m.Sum(sum[:0])[:8])
	return string(out[:])
}

func (p refRedactor) secretHeader(rp *routePolicy, name string) bool {
	if rp.strict {
		return !safeHeaders[name]
	}
	return rp.redact[name] || refHasSecretWord(name)
}

func refHasSecretWord(name string) bool {
	for _, w := range SecretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// secretParam reports whether a query or path parameter name (decoded,
// lower case) is masked.
func (p refRedactor) secretParam(rp *routePolicy, key string) bool {
	return rp.strict || rp.redactQuery[key] || (rp.queryWords && refHasSecretWord(key))
}

func refIsURLHeader(name string) bool {
	for _, h := range URLHeaders {
		if name == h {
			return true
		}
	}
	return false
}

// RedactQuery masks the values of secret-named parameters in a raw query
// string, keeping everything else byte for byte. Parameters are separated
// by & or ;.
func (p refRedactor) RedactQuery(route, raw string) string {
	if raw == "" {
		return ""
	}
	return string(p.appendQuery(make([]byte, 0, len(raw)+16), p.route(route), raw))
}

// RedactPath masks the values of secret-named path parameters
// (/login;jsessionid=…) and of a query string hidden behind an encoded
// question mark (/x%3Ftoken=…). A path with neither is returned as is.
func (p refRedactor) RedactPath(route, path string) string {
	if !refPathHasParams(path) {
		return path
	}
	return string(p.appendPath(make([]byte, 0, len(path)+16), p.route(route), path))
}

// appendQuery appends raw with the values of secret-named parameters
// masked.
func (p refRedactor) appendQuery(dst []byte, rp *routePolicy, raw string) []byte {
	for raw != "" {
		i := strings.IndexAny(raw, "&;")
		part := raw
		if i >= 0 {
			part = raw[:i]
		}
		name, val, hasVal := strings.Cut(part, "=")
		key := name
		if un, err := url.QueryUnescape(name); err == nil {
			key = un
		}
		dst = append(dst, name...)
		if p.secretParam(rp, refLowerASCII(key)) {
			dst = append(dst, '=')
			if un, err := url.QueryUnescape(val); err == nil {
				val = un
			}
			dst = p.appendMask(dst, unsafe.Slice(unsafe.StringData(val), len(val)))
		} else if hasVal {
			dst = append(dst, '=')
			dst = append(dst, val...)
		}
		if i < 0 {
			break
		}
		dst = append(dst, raw[i])
		raw = raw[i+1:]
	}
	return dst
}

// refLowerASCII is strings.ToLower without an allocation for names that are
// already lower case ASCII.
func refLowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}

// refPathHasParams reports whether a path has something RedactPath looks at.
func refPathHasParams(path string) bool {
	return strings.IndexByte(path, ';') >= 0 || refEncodedQuestion(path) >= 0
}

// refEncodedQuestion is the index of the first %3F (any case) in s, or -1.
func refEncodedQuestion(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && s[i+1] == '3' && (s[i+2] == 'f' || s[i+2] == 'F') {
			return i
		}
	}
	return -1
}

// appendPath appends path with secret path parameters masked.
func (p refRedactor) appendPath(dst []byte, rp *routePolicy, path string) []byte {
	var query string
	hasQuery := false
	if i := refEncodedQuestion(path); i >= 0 {
		path, query, hasQuery = path[:i], path[i+3:], true
	}
	for path != "" {
		i := strings.IndexByte(path, ';')
		if i < 0 {
			dst = append(dst, path...)
			break
		}
		dst = append(dst, path[:i+1]...)
		path = path[i+1:]
		end := strings.IndexByte(path, '/')
		if end < 0 {
			end = len(path)
		}
		// The segment's parameters up to the next /, separated by ; or &.
		dst = p.appendQuery(dst, rp, path[:end])
		path = path[end:]
	}
	if hasQuery {
		dst = append(dst, "%3F"...)
		dst = p.appendQuery(dst, rp, query)
	}
	return dst
}

// appendURL appends a URL-valued header with the user info, path
// parameters, query string and fragment redacted.
func (p refRedactor) appendURL(dst []byte, rp *routePolicy, v string) []byte {
	if i := strings.Index(v, "://"); i >= 0 {
		dst = append(dst, v[:i+3]...)
		v = v[i+3:]
		end := strings.IndexAny(v, "/?#")
		if end < 0 {
			end = len(v)
		}
		if at := strings.LastIndexByte(v[:end], '@'); at >= 0 {
			dst = p.appendMask(dst, unsafe.Slice(unsafe.StringData(v[:at]), at))
			v = v[at:]
			end -= at
		}
		dst = append(dst, v[:end]...)
		v = v[end:]
	}
	rest, frag, hasFrag := strings.Cut(v, "#")
	path, query, hasQuery := strings.Cut(rest, "?")
	dst = p.appendPath(dst, rp, path)
	if hasQuery {
		dst = append(dst, '?')
		dst = p.appendQuery(dst, rp, query)
	}
	if hasFrag {
		dst = append(dst, '#')
		dst = p.appendQuery(dst, rp, frag)
	}
	return dst
}

// FromHTTP converts one HTTP ALS entry, redacting as it goes. node and
// group come from the stream's identifier.
func (p refRedactor) FromHTTP(node, group string, e *alv3.HTTPAccessLogEntry) Record {
	c := e.GetCommonProperties()
	r := Record{Kind: "http", Node: node, NodeGroup: group}
	p.common(&r, c)
	if c.GetAccessLogType() == alv3.AccessLogType_NotSet {
		r.LogType = "DownstreamEnd"
	}
	req := e.GetRequest()
	resp := e.GetResponse()
	r.RequestID = req.GetRequestId()
	r.Authority = req.GetAuthority()
	if m := req.GetRequestMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		r.Method = m.String()
	}
	path, query, _ := strings.Cut(req.GetPath(), "?")
	r.Path = p.RedactPath(r.Route, path)
	r.Query = p.RedactQuery(r.Route, query)
	r.UserAgent = req.GetUserAgent()
	r.BytesIn = req.GetRequestBodyBytes()
	r.BytesOut = resp.GetResponseBodyBytes()
	r.Status = resp.GetResponseCode().GetValue()
	r.Headers = p.headers(r.Route, req.GetRequestHeaders())
	return r
}

func (p refRedactor) headers(route string, h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	rp := p.route(route)
	var stack [16]refKv
	kept := stack[:0]
	for k, v := range h {
		k = strings.ToLower(k)
		if rp.keep != nil && !rp.keep[k] {
			continue
		}
		if p.secretHeader(rp, k) {
			v = p.mask(v)
		} else if refIsURLHeader(k) {
			v = string(p.appendURL(nil, rp, v))
		}
		kept = append(kept, refKv{k, v})
	}
	return refHeadersJSON(kept)
}

// refAppendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func refAppendJSONString[T string | []byte](b []byte, s T) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func (p refRedactor) common(r *Record, c *alv3.AccessLogCommon) {
	if t := c.GetStartTime(); t != nil {
		r.Time = t.AsTime().UTC().Truncate(time.Millisecond)
	}
	if c.GetAccessLogType() != alv3.AccessLogType_NotSet {
		r.LogType = c.GetAccessLogType().String()
	}
	r.Route = c.GetRouteName()
	if d := c.GetDuration(); d != nil {
		r.DurationUS = d.AsDuration().Microseconds()
	} else if d := c.GetTimeToLastDownstreamTxByte(); d != nil {
		r.DurationUS = d.AsDuration().Microseconds()
	}
	if sa := c.GetDownstreamRemoteAddress().GetSocketAddress(); sa != nil {
		r.ClientIP = sa.GetAddress()
		r.ClientPort = sa.GetPortValue()
	}
	if tls := c.GetTlsProperties(); tls != nil {
		if tls.GetTlsVersion() != alv3.TLSProperties_VERSION_UNSPECIFIED {
			r.TLSVersion = tls.GetTlsVersion().String()
		}
		r.TLSSNI = tls.GetTlsSniHostname()
		if pc := tls.GetPeerCertificateProperties(); pc != nil {
			for _, san := range pc.GetSubjectAltName() {
				if u := san.GetUri(); u != "" {
					r.PeerPrincipal = u
					break
				}
			}
			if r.PeerPrincipal == "" {
				r.PeerPrincipal = pc.GetSubject()
			}
		}
	}
	r.UpstreamCluster = c.GetUpstreamCluster()
	if sa := c.GetUpstreamRemoteAddress().GetSocketAddress(); sa != nil {
		r.UpstreamHost = sa.GetAddress()
		if port := sa.GetPortValue(); port != 0 {
			r.UpstreamHost += ":" + refItoa(port)
		}
	}
	r.ResponseFlags = refFlagCodes(c.GetResponseFlags())
	if md := c.GetMetadata().GetFilterMetadata()[contract.ExtAuthzNamespace]; md != nil {
		f := md.GetFields()
		r.Subject = f["subject"].GetStringValue()
		r.Provider = f["provider"].GetStringValue()
		r.AuthKind = f["kind"].GetStringValue()
		r.APIKeyID = f["apikey_id"].GetStringValue()
		r.Rule = f["rule"].GetStringValue()
		r.Decision = f["decision"].GetStringValue()
		r.ConfigVersion = f[contract.ConfigVersionKey].GetStringValue()
	}
	if r.ConfigVersion == "" {
		r.ConfigVersion = c.GetCustomTags()[contract.ConfigVersionTag]
	}
}

func refItoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func refFlagCodes(f *alv3.ResponseFlags) string {
	if f == nil {
		return ""
	}
	flags := []struct {
		on   bool
		code string
	}{
		{f.GetFailedLocalHealthcheck(), "LH"}, {f.GetNoHealthyUpstream(), "UH"},
		{f.GetUpstreamRequestTimeout(), "UT"}, {f.GetLocalReset(), "LR"},
		{f.GetUpstreamRemoteReset(), "UR"}, {f.GetUpstreamConnectionFailure(), "UF"},
		{f.GetUpstreamConnectionTermination(), "UC"}, {f.GetUpstreamOverflow(), "UO"},
		{f.GetNoRouteFound(), "NR"}, {f.GetDelayInjected(), "DI"},
		{f.GetFaultInjected(), "FI"}, {f.GetRateLimited(), "RL"},
		{f.GetUnauthorizedDetails() != nil, "UAEX"}, {f.GetRateLimitServiceError(), "RLSE"},
		{f.GetDownstreamConnectionTermination(), "DC"}, {f.GetUpstreamRetryLimitExceeded(), "URX"},
		{f.GetStreamIdleTimeout(), "SI"}, {f.GetInvalidEnvoyRequestHeaders(), "IH"},
		{f.GetDownstreamProtocolError(), "DPE"}, {f.GetUpstreamMaxStreamDurationReached(), "UMSDR"},
		{f.GetResponseFromCacheFilter(), "RFCF"}, {f.GetNoFilterConfigFound(), "NFCF"},
		{f.GetDurationTimeout(), "DT"}, {f.GetUpstreamProtocolError(), "UPE"},
		{f.GetNoClusterFound(), "NC"}, {f.GetOverloadManager(), "OM"},
		{f.GetDnsResolutionFailure(), "DF"}, {f.GetDownstreamRemoteReset(), "DR"},
	}
	var b strings.Builder
	for _, fl := range flags {
		if fl.on {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(fl.code)
		}
	}
	return b.String()
}
