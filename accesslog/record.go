package accesslog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Record is one access-log entry in the flat schema every store keeps.
// Secrets are masked before a Record exists (see Redactor.FromHTTP).
type Record struct {
	Time            time.Time `json:"time"`           // request start, UTC, millisecond precision
	RequestID       string    `json:"request_id"`     // x-request-id
	Kind            string    `json:"kind"`           // "http" or "tcp"
	LogType         string    `json:"log_type"`       // Envoy AccessLogType, e.g. DownstreamEnd
	Node            string    `json:"node"`           // Envoy node id
	NodeGroup       string    `json:"node_group"`     // Envoy node cluster
	Route           string    `json:"route"`          // <spec>/<route>
	Authority       string    `json:"authority"`      // Host / :authority
	Method          string    `json:"method"`         // GET, POST, ...
	Path            string    `json:"path"`           // path without the query
	Query           string    `json:"query"`          // raw query, secrets masked
	Status          uint32    `json:"status"`         // HTTP status; 0 for tcp
	ResponseFlags   string    `json:"response_flags"` // Envoy short codes, comma-separated (UAEX, RL, ...)
	DurationUS      int64     `json:"duration_us"`    // total duration in microseconds
	BytesIn         uint64    `json:"bytes_in"`       // request body (http) or received bytes (tcp)
	BytesOut        uint64    `json:"bytes_out"`      // response body (http) or sent bytes (tcp)
	ClientIP        string    `json:"client_ip"`      // downstream remote address
	ClientPort      uint32    `json:"client_port"`    //
	TLSVersion      string    `json:"tls_version"`    // TLSv1_2, TLSv1_3, ...
	TLSSNI          string    `json:"tls_sni"`        //
	PeerPrincipal   string    `json:"peer_principal"` // peer certificate URI SAN, or subject
	UserAgent       string    `json:"user_agent"`     //
	Headers         string    `json:"headers"`        // kept request headers as a JSON object, secrets masked
	UpstreamCluster string    `json:"upstream_cluster"`
	UpstreamHost    string    `json:"upstream_host"`
	Subject         string    `json:"subject"`        // ext_authz metadata
	Provider        string    `json:"provider"`       //
	AuthKind        string    `json:"auth_kind"`      // jwt | apiKey | mtls
	APIKeyID        string    `json:"apikey_id"`      //
	Rule            string    `json:"rule"`           //
	Decision        string    `json:"decision"`       // allow | deny | shadow-deny
	ConfigVersion   string    `json:"config_version"` // the node group's config (xDS) version that served the request

	// Where the record is stored: its batch in the hash chain and its index
	// in that batch. Set by the store; not part of the hashed content.
	Batch uint64 `json:"batch"`
	Index uint32 `json:"index"`
}

// Denied reports whether the request was refused by auth or rate limiting:
// an ext_authz deny, Envoy's UAEX or RL flag, or status 401, 403 or 429.
func (r *Record) Denied() bool {
	if r.Decision == "deny" || r.Status == 401 || r.Status == 403 || r.Status == 429 {
		return true
	}
	return hasFlag(r.ResponseFlags, "UAEX") || hasFlag(r.ResponseFlags, "RL")
}

func hasFlag(flags, f string) bool {
	for flags != "" {
		var cur string
		cur, flags, _ = strings.Cut(flags, ",")
		if cur == f {
			return true
		}
	}
	return false
}

// Columns is the order of the stored columns, shared by every backend and
// by the CSV export.
var Columns = []string{
	"time", "request_id", "kind", "log_type", "node", "node_group", "route",
	"authority", "method", "path", "query", "status", "response_flags",
	"duration_us", "bytes_in", "bytes_out", "client_ip", "client_port",
	"tls_version", "tls_sni", "peer_principal", "user_agent", "headers",
	"upstream_cluster", "upstream_host", "subject", "provider", "auth_kind",
	"apikey_id", "rule", "decision", "config_version",
}

// strs lists the string fields in Columns order (minus the non-strings),
// for encoding.
func (r *Record) strs() [24]*string {
	return [24]*string{
		&r.RequestID, &r.Kind, &r.LogType, &r.Node, &r.NodeGroup, &r.Route,
		&r.Authority, &r.Method, &r.Path, &r.Query, &r.ResponseFlags,
		&r.ClientIP, &r.TLSVersion, &r.TLSSNI, &r.PeerPrincipal, &r.UserAgent,
		&r.Headers, &r.UpstreamCluster, &r.UpstreamHost, &r.Subject,
		&r.Provider, &r.AuthKind, &r.APIKeyID, &r.Rule,
	}
}

// AppendBinary appends the canonical binary form of r's content (every
// column, not Batch/Index) to b. The spool and the hash chain both use it,
// so a stored record hashes the same as the record that was received.
//
// A record with a ConfigVersion sets bit 32 of the status varint and
// carries the version as one more string at the end; a record without one
// encodes exactly as before the column existed, so spools and hash chains
// written earlier still decode and verify.
func (r *Record) AppendBinary(b []byte) []byte {
	b = binary.AppendVarint(b, r.Time.UnixMilli())
	st := uint64(r.Status)
	if r.ConfigVersion != "" {
		st |= hasConfigVersion
	}
	b = binary.AppendUvarint(b, st)
	b = binary.AppendVarint(b, r.DurationUS)
	b = binary.AppendUvarint(b, r.BytesIn)
	b = binary.AppendUvarint(b, r.BytesOut)
	b = binary.AppendUvarint(b, uint64(r.ClientPort))
	for _, s := range r.strs() {
		b = binary.AppendUvarint(b, uint64(len(*s)))
		b = append(b, *s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Decision)))
	b = append(b, r.Decision...)
	if r.ConfigVersion != "" {
		b = binary.AppendUvarint(b, uint64(len(r.ConfigVersion)))
		b = append(b, r.ConfigVersion...)
	}
	return b
}

// hasConfigVersion is the status-varint bit saying a ConfigVersion string
// follows Decision (statuses fit in 32 bits).
const hasConfigVersion = 1 << 32

var errShort = errors.New("truncated record")

// DecodeBinary reads one record written by AppendBinary from b and returns
// the rest of b.
func (r *Record) DecodeBinary(b []byte) ([]byte, error) { return r.decodeBinary(b, "") }

// decodeBinary is DecodeBinary; with back set, b is a suffix of back's
// bytes and the record's strings are cut from back instead of copied
// (one allocation per spool frame instead of one per field).
func (r *Record) decodeBinary(b []byte, back string) ([]byte, error) {
	var v [6]uint64 // time (zigzag), status, duration (zigzag), bytes in and out, port
	for i := range v {
		if len(b) > 0 && b[0] < 0x80 { // one byte: most of them
			v[i], b = uint64(b[0]), b[1:]
			continue
		}
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return b, fmt.Errorf("record: %w", errShort)
		}
		v[i], b = x, b[n:]
	}
	r.Time = time.UnixMilli(unzigzag(v[0])).UTC()
	st, port := v[1], v[5]
	r.DurationUS = unzigzag(v[2])
	r.BytesIn, r.BytesOut = v[3], v[4]
	withVersion := st&hasConfigVersion != 0
	st &^= hasConfigVersion
	if st > math.MaxUint32 || port > math.MaxUint32 {
		return b, fmt.Errorf("record: status or port out of range")
	}
	r.Status, r.ClientPort = uint32(st), uint32(port)
	var ok bool
	for _, p := range r.strs() {
		if *p, b, ok = readString(b, back); !ok {
			return b, fmt.Errorf("record: %w", errShort)
		}
	}
	if r.Decision, b, ok = readString(b, back); !ok {
		return b, fmt.Errorf("record: %w", errShort)
	}
	r.ConfigVersion = ""
	if withVersion {
		if r.ConfigVersion, b, ok = readString(b, back); !ok {
			return b, fmt.Errorf("record: %w", errShort)
		}
	}
	return b, nil
}

// unzigzag reverses binary.AppendVarint's zig-zag encoding.
func unzigzag(u uint64) int64 {
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// readString reads one length-prefixed string of AppendBinary from b: cut
// from back when it is set (b is a suffix of back), else copied.
func readString(b []byte, back string) (string, []byte, bool) {
	var l uint64
	if len(b) > 0 && b[0] < 0x80 {
		l, b = uint64(b[0]), b[1:]
	} else {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return "", b, false
		}
		l, b = x, b[n:]
	}
	if l > uint64(len(b)) {
		return "", b, false
	}
	var s string
	if back != "" {
		off := len(back) - len(b)
		s = back[off : off+int(l)]
	} else {
		s = string(b[:l])
	}
	return s, b[l:], true
}

// recordTimes walks n records in AppendBinary form, checking that b holds
// exactly them, each as AppendBinary writes it (minimal varints, values
// in range, a config version only when flagged and not empty: the bytes
// a decoded record encodes to again, so a hash over them is the hash
// over the records), and returns their earliest and latest Time (n > 0).
func recordTimes(b []byte, n int) (first, last time.Time, err error) {
	var lo, hi int64
	for i := range n {
		var v [6]uint64 // time (zigzag), status, duration (zigzag), bytes in and out, port
		for j := range v {
			x, k := binary.Uvarint(b)
			if k <= 0 || (k > 1 && b[k-1] == 0) {
				return first, last, fmt.Errorf("record %d: %w", i, errNotCanonical)
			}
			v[j], b = x, b[k:]
		}
		if v[1]&^hasConfigVersion > math.MaxUint32 || v[5] > math.MaxUint32 {
			return first, last, fmt.Errorf("record %d: status or port out of range", i)
		}
		strs := 25 // strs() and Decision
		if v[1]&hasConfigVersion != 0 {
			strs++
		}
		for j := range strs {
			l, k := binary.Uvarint(b)
			if k <= 0 || (k > 1 && b[k-1] == 0) || l > uint64(len(b)-k) || (j == 25 && l == 0) {
				return first, last, fmt.Errorf("record %d: %w", i, errNotCanonical)
			}
			b = b[k+int(l):]
		}
		ms := unzigzag(v[0])
		if i == 0 || ms < lo {
			lo = ms
		}
		if i == 0 || ms > hi {
			hi = ms
		}
	}
	if len(b) > 0 {
		return first, last, fmt.Errorf("%d bytes after %d records", len(b), n)
	}
	return time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC(), nil
}

var errNotCanonical = errors.New("truncated, or not as AppendBinary writes it")
