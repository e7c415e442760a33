package accesslog

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"hash/fnv"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
)

// Mask replaces a redacted value when no HMAC key is configured.
const Mask = "REDACTED"

// Redactor turns ALS entries into redacted records under the current spec
// settings. It is immutable; build a new one when settings change.
type Redactor struct {
	routes map[string]*routePolicy
	// unknown applies to requests Envoy logs with no route (404, NR): the
	// strictest policy the settings allow, the union of every spec's
	// redacted headers and API-key header and query names, and query
	// names holding a secret word are masked too.
	unknown *routePolicy
	// pending applies to named routes the settings do not have yet (a
	// spec Envoy got before this sidecar did): nothing says which of
	// their names are secret, so every value is masked but a few safe
	// headers, as before any settings arrive (StrictRedactor).
	pending *routePolicy
	hmacKey []byte
	hmacs   sync.Pool // *hmacState: keyed HMAC-SHA256 states, Reset between uses
}

// SecretWords mark a header name as secret on every route when it
// contains one of them (x-auth-user, x-hub-signature, x-partner-key,
// x-goog-iap-jwt-assertion), and a query parameter name on routes the
// settings do not name.
var SecretWords = []string{
	"token", "secret", "password", "passwd", "api-key", "apikey", "session", "credential",
	"auth", "signature", "sig", "jwt", "key", "assertion", "bearer", "cookie",
}

// URLHeaders carry a URL whose query string, fragment, path parameters and
// user info are redacted like the request's own (the value is kept).
var URLHeaders = []string{"referer", "origin", "x-original-url", "x-original-uri", "x-forwarded-uri", "x-envoy-original-path", "x-rewrite-url"}

// safeHeaders keep their values under StrictRedactor.
var safeHeaders = map[string]bool{"user-agent": true, "x-request-id": true, "content-type": true, "accept": true}

// StrictRedactor is the redactor before any settings have arrived: a spec may
// name secret headers or query parameters the defaults do not know, so
// every header value (but user-agent, x-request-id, content-type, accept)
// and every query value is masked.
func StrictRedactor(hmacKey []byte) *Redactor {
	p := NewRedactor(nil, hmacKey)
	p.unknown = p.pending
	return p
}

type routePolicy struct {
	keep map[string]bool // nil: keep every header Envoy sent
	// kept is keep with each name's treatment decided once, when the
	// policy is built (secretHeader, isURLHeader): the wire decoder's
	// only lookup per header. Bounded by the spec's header list (no name
	// Envoy sends is ever added); nil when keep is nil.
	kept        *keptHeaders
	redact      map[string]bool
	redactQuery map[string]bool
	// queryNames is redactQuery by length, for the wire decoder: a
	// name is compared with the few of its length instead of hashed.
	queryNames byLength
	queryWords bool // a query name containing a SecretWords entry is masked
	strict     bool // every value is masked but safeHeaders
	sample     float64
}

// NewRedactor compiles the settings of every spec. hmacKey, when not empty,
// makes masked values "REDACTED.<16 hex of HMAC-SHA256(key, value)>" so
// equal secrets can be correlated without being stored; the key itself is
// never stored or logged.
func NewRedactor(specs []*SpecSettings, hmacKey []byte) *Redactor {
	p := &Redactor{
		routes:  map[string]*routePolicy{},
		hmacKey: append([]byte(nil), hmacKey...),
	}
	if len(p.hmacKey) > 0 {
		p.hmacs.New = func() any { return &hmacState{h: hmac.New(sha256.New, p.hmacKey)} }
	}
	p.unknown = &routePolicy{redact: set(DefaultRedactHeaders, nil), redactQuery: set(DefaultRedactQuery, nil), queryWords: true, sample: 1}
	p.pending = &routePolicy{strict: true, sample: 1}
	for _, s := range specs {
		if s == nil {
			continue
		}
		for id, rs := range s.Routes {
			rp := &routePolicy{
				keep:        set(rs.Headers, nil),
				redact:      set(DefaultRedactHeaders, rs.Redact),
				redactQuery: set(DefaultRedactQuery, rs.RedactQuery),
				sample:      rs.SampleRate,
			}
			if rp.keep == nil {
				rp.keep = map[string]bool{}
			}
			rp.kept = p.keptHeaders(rp)
			p.routes[id] = rp
			for _, h := range rs.Redact {
				p.unknown.redact[strings.ToLower(h)] = true
			}
			for _, q := range rs.RedactQuery {
				p.unknown.redactQuery[strings.ToLower(q)] = true
			}
		}
	}
	p.unknown.queryNames = newByLength(p.unknown.redactQuery)
	for _, rp := range p.routes {
		rp.queryNames = newByLength(rp.redactQuery)
	}
	return p
}

// byLength is a set of names grouped by length.
type byLength [][]string

func newByLength(set map[string]bool) byLength {
	var b byLength
	for name := range set {
		for len(b) <= len(name) {
			b = append(b, nil)
		}
		b[len(name)] = append(b[len(name)], name)
	}
	return b
}

func (b byLength) has(name string) bool {
	if len(name) >= len(b) {
		return false
	}
	for _, s := range b[len(name)] {
		if s == name {
			return true
		}
	}
	return false
}

// Routes is the number of routes the policy knows.
func (p *Redactor) Routes() int { return len(p.routes) }

func set(a, b []string) map[string]bool {
	if len(a)+len(b) == 0 {
		return nil
	}
	m := make(map[string]bool, len(a)+len(b))
	for _, s := range a {
		m[strings.ToLower(s)] = true
	}
	for _, s := range b {
		m[strings.ToLower(s)] = true
	}
	return m
}

func (p *Redactor) route(id string) *routePolicy {
	if rp, ok := p.routes[id]; ok {
		return rp
	}
	if id == "" {
		return p.unknown
	}
	return p.pending
}

// hmacState is a keyed HMAC-SHA256 with room for its sum, so a mask
// allocates nothing.
type hmacState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// appendMask appends the stored form of the secret value v (mask's
// result) to dst.
func (p *Redactor) appendMask(dst, v []byte) []byte {
	if len(p.hmacKey) == 0 || len(v) == 0 {
		return append(dst, Mask...)
	}
	m := p.hmacs.Get().(*hmacState)
	m.h.Reset()
	m.h.Write(v)
	dst = append(dst, Mask+"."...)
	dst = hex.AppendEncode(dst, m.h.Sum(m.sum[:0])[:8])
	p.hmacs.Put(m)
	return dst
}

// mask returns the stored form of a secret value.
func (p *Redactor) mask(v string) string {
	if len(p.hmacKey) == 0 || v == "" {
		return Mask
	}
	var out [len(Mask) + 1 + 16]byte
	return string(p.appendMask(out[:0], unsafe.Slice(unsafe.StringData(v), len(v))))
}

// headerAction is what happens to a kept header's value.
type headerAction uint8

const (
	headerPlain  headerAction = iota // kept as sent
	headerSecret                     // masked
	headerURL                        // kept with its URL's secrets masked
)

// headerAction decides the value of header name (lower case) on route rp.
func (p *Redactor) headerAction(rp *routePolicy, name string) headerAction {
	if p.secretHeader(rp, name) {
		return headerSecret
	}
	if isURLHeader(name) {
		return headerURL
	}
	return headerPlain
}

// keptHeaders are a route's kept header names (lower case) and what
// happens to each one's value.
type keptHeaders struct {
	few  []keptName              // up to maxFewKept names: compared in turn
	many map[string]headerAction // more
}

type keptName struct {
	name string
	act  headerAction
}

// maxFewKept: up to this many kept names, comparing a name with each
// (lengths first) costs less than hashing it.
const maxFewKept = 8

func (p *Redactor) keptHeaders(rp *routePolicy) *keptHeaders {
	k := new(keptHeaders)
	if len(rp.keep) <= maxFewKept {
		for name := range rp.keep {
			k.few = append(k.few, keptName{name, p.headerAction(rp, name)})
		}
		return k
	}
	k.many = make(map[string]headerAction, len(rp.keep))
	for name := range rp.keep {
		k.many[name] = p.headerAction(rp, name)
	}
	return k
}

// lookup reports whether name (lower case) is kept and what happens to
// its value.
func (k *keptHeaders) lookup(name string) (headerAction, bool) {
	if k.many != nil {
		a, ok := k.many[name]
		return a, ok
	}
	for _, e := range k.few {
		if e.name == name {
			return e.act, true
		}
	}
	return 0, false
}

func (p *Redactor) secretHeader(rp *routePolicy, name string) bool {
	if rp.strict {
		return !safeHeaders[name]
	}
	return rp.redact[name] || hasSecretWord(name)
}

func hasSecretWord(name string) bool {
	for _, w := range SecretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// secretParam reports whether a query or path parameter name (decoded,
// lower case) is masked.
func (p *Redactor) secretParam(rp *routePolicy, key string) bool {
	return rp.strict || rp.queryNames.has(key) || (rp.queryWords && hasSecretWord(key))
}

func isURLHeader(name string) bool {
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
func (p *Redactor) RedactQuery(route, raw string) string {
	if raw == "" {
		return ""
	}
	return string(p.appendQuery(make([]byte, 0, len(raw)+16), p.route(route), raw))
}

// RedactPath masks the values of secret-named path parameters
// (/login;jsessionid=…) and of a query string hidden behind an encoded
// question mark (/x%3Ftoken=…). A path with neither is returned as is.
func (p *Redactor) RedactPath(route, path string) string {
	if !pathHasParams(path) {
		return path
	}
	return string(p.appendPath(make([]byte, 0, len(path)+16), p.route(route), path))
}

// appendQuery appends raw with the values of secret-named parameters
// masked.
func (p *Redactor) appendQuery(dst []byte, rp *routePolicy, raw string) []byte {
	for raw != "" {
		i := indexParamSep(raw)
		part := raw
		if i >= 0 {
			part = raw[:i]
		}
		name, val, hasVal := strings.Cut(part, "=")
		key := name
		if hasQueryEscape(name) {
			if un, err := url.QueryUnescape(name); err == nil {
				key = un
			}
		}
		dst = append(dst, name...)
		if p.secretParam(rp, lowerASCII(key)) {
			dst = append(dst, '=')
			// Without a key the mask does not depend on the value
			// but for its being empty, which unescaping keeps.
			if len(p.hmacKey) > 0 {
				if un, err := url.QueryUnescape(val); err == nil {
					val = un
				}
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

// hasQueryEscape is strings.ContainsAny(s, "%+"): whether
// url.QueryUnescape could change s.
func hasQueryEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || s[i] == '+' {
			return true
		}
	}
	return false
}

// indexParamSep is strings.IndexAny(s, "&;").
func indexParamSep(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '&' || s[i] == ';' {
			return i
		}
	}
	return -1
}

// lowerASCII is strings.ToLower without an allocation for names that are
// already lower case ASCII.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}

// pathHasParams reports whether a path has something RedactPath looks at.
func pathHasParams(path string) bool {
	return strings.IndexByte(path, ';') >= 0 || encodedQuestion(path) >= 0
}

// encodedQuestion is the index of the first %3F (any case) in s, or -1.
func encodedQuestion(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && s[i+1] == '3' && (s[i+2] == 'f' || s[i+2] == 'F') {
			return i
		}
	}
	return -1
}

// appendPath appends path with secret path parameters masked.
func (p *Redactor) appendPath(dst []byte, rp *routePolicy, path string) []byte {
	var query string
	hasQuery := false
	if i := encodedQuestion(path); i >= 0 {
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
func (p *Redactor) appendURL(dst []byte, rp *routePolicy, v string) []byte {
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

// Keep reports whether an entry survives sampling: denied entries always
// do; others with probability SampleRate, decided by the request id so a
// request is kept or dropped consistently.
func (p *Redactor) Keep(r *Record) bool {
	rp := p.route(r.Route)
	if rp.sample >= 1 || r.Denied() {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(r.RequestID))
	return float64(h.Sum64()%1_000_000) < rp.sample*1_000_000
}

// FromHTTP converts one HTTP ALS entry, redacting as it goes. node and
// group come from the stream's identifier.
func (p *Redactor) FromHTTP(node, group string, e *alv3.HTTPAccessLogEntry) Record {
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

// FromTCP converts one TCP ALS entry.
func (p *Redactor) FromTCP(node, group string, e *alv3.TCPAccessLogEntry) Record {
	r := Record{Kind: "tcp", Node: node, NodeGroup: group}
	p.common(&r, e.GetCommonProperties())
	if e.GetCommonProperties().GetAccessLogType() == alv3.AccessLogType_NotSet {
		r.LogType = "TcpConnectionEnd"
	}
	r.BytesIn = e.GetConnectionProperties().GetReceivedBytes()
	r.BytesOut = e.GetConnectionProperties().GetSentBytes()
	return r
}

func (p *Redactor) headers(route string, h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	rp := p.route(route)
	var stack [16]kv
	kept := stack[:0]
	for k, v := range h {
		k = strings.ToLower(k)
		if rp.keep != nil && !rp.keep[k] {
			continue
		}
		if p.secretHeader(rp, k) {
			v = p.mask(v)
		} else if isURLHeader(k) {
			v = string(p.appendURL(nil, rp, v))
		}
		kept = append(kept, kv{k, v})
	}
	return headersJSON(kept)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		// A run of bytes written as they are, appended at once.
		j := i
		for j < len(s) && jsonPlain[s[j]] {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			default: // c < 0x20
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
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

// jsonPlain marks the bytes appendJSONString writes as they are: ASCII
// but control characters, quote and backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (p *Redactor) common(r *Record, c *alv3.AccessLogCommon) {
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
			r.UpstreamHost += ":" + itoa(port)
		}
	}
	r.ResponseFlags = flagCodes(c.GetResponseFlags())
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

func itoa(v uint32) string {
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

func flagCodes(f *alv3.ResponseFlags) string {
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
