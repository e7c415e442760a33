package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limit is a parsed rate limit such as "100/minute" or "5000/15m".
type Limit struct {
	Requests uint32
	// Window is the length of one window.
	Window time.Duration
	// Unit is "second", "minute", "hour" or "day" when the limit was written
	// with a named unit (the units envoyproxy/ratelimit understands), and ""
	// for a Gatehouse duration window such as "30s".
	Unit string
}

var namedUnits = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
}

// String writes the limit back in spec form.
func (l Limit) String() string {
	if l.Unit != "" {
		return fmt.Sprintf("%d/%s", l.Requests, l.Unit)
	}
	return fmt.Sprintf("%d/%s", l.Requests, l.Window)
}

// ParseLimit parses "N/second|minute|hour|day" or "N/<Go duration>".
func ParseLimit(s string) (Limit, error) {
	count, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("limit %q must look like N/unit, e.g. 100/minute or 5000/15m", s)
	}
	n, err := strconv.ParseUint(count, 10, 64)
	if err != nil {
		return Limit{}, fmt.Errorf("limit %q: request count %q is not a whole number", s, count)
	}
	if n == 0 {
		return Limit{}, fmt.Errorf("limit %q: request count must be greater than 0", s)
	}
	if n > math.MaxUint32 {
		return Limit{}, fmt.Errorf("limit %q: request count is larger than %d", s, uint32(math.MaxUint32))
	}
	if w, ok := namedUnits[per]; ok {
		return Limit{Requests: uint32(n), Window: w, Unit: per}, nil
	}
	w, err := time.ParseDuration(per)
	if err != nil {
		return Limit{}, fmt.Errorf("limit %q: unknown unit %q: want second, minute, hour, day or a duration such as 30s", s, per)
	}
	if w < time.Second {
		return Limit{}, fmt.Errorf("limit %q: window %s is under 1s", s, w)
	}
	if w%time.Second != 0 {
		return Limit{}, fmt.Errorf("limit %q: window %s is not a whole number of seconds", s, w)
	}
	return Limit{Requests: uint32(n), Window: w}, nil
}

// Descriptor source kinds usable in rateLimits[].by.
const (
	SourceIdentitySubject = "identity.subject"
	SourceIdentityClaim   = "identity.claim" // identity.claim.<name>
	SourceAPIKeyID        = "apikey.id"
	SourceHeader          = "header" // header.<name>
	SourceClientIP        = "client.ip"
	// SourceClientIP64 is client.ip with IPv6 clients grouped by their /64
	// (an IPv6 client usually holds a whole /64, so per-address limits
	// and counters would be its to multiply); IPv4 clients are counted per
	// address, as with client.ip.
	SourceClientIP64    = "client.ip/64"
	SourceRequestMethod = "request.method"
	SourceRequestPath   = "request.path"
)

// Source is a parsed descriptor source: Kind is one of the Source*
// constants, Arg the claim or header name where the kind takes one.
type Source struct {
	Kind string
	Arg  string
}

// Key is the descriptor key the source produces on the wire: the source
// text itself, e.g. "identity.subject" or "header.x-tenant".
func (s Source) Key() string {
	if s.Arg == "" {
		return s.Kind
	}
	return s.Kind + "." + s.Arg
}

// DescriptorKey is the rate-limit descriptor key Envoy sends for this
// source. It is Key() for every source except client.ip: Envoy's
// remote_address action always uses the key "remote_address", so that is
// the key in the RateLimitConfig too (envoyproxy/ratelimit sees the same).
//
// client.ip/64 uses Envoy's masked_remote_address action (IPv6 prefix
// length 64, IPv4 32), whose key is always "masked_remote_address" and
// whose value is the client's network in CIDR form ("2001:db8:1:2::/64").
func (s Source) DescriptorKey() string {
	switch s.Kind {
	case SourceClientIP:
		return "remote_address"
	case SourceClientIP64:
		return "masked_remote_address"
	}
	return s.Key()
}

// Failure modes a rateLimits entry may set in onFailure.
const (
	OnFailureAllow = "allow"
	OnFailureDeny  = "deny"
)

// CheckOnFailure checks a rateLimits[].onFailure value: "" (the sidecar's
// --failure-mode), allow or deny.
func CheckOnFailure(s string) error {
	switch s {
	case "", OnFailureAllow, OnFailureDeny:
		return nil
	}
	return fmt.Errorf("unknown onFailure %q: want allow or deny (deny: answer 429 when the limit cannot be counted, for login or payment limits)", s)
}

// credentialHeaders carry credentials on every route: a limit keyed by
// them would write the credential, in clear, into counter keys (Redis).
var credentialHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
}

// CheckSourceCredential refuses a header source that carries a
// credential: Authorization, Proxy-Authorization, Cookie, or a header an
// apiKeys provider of the spec reads keys from. Counter keys hold
// descriptor values as they are (Redis keys, debug output), so the limit
// would store the secret in clear; the verified caller (apikey.id,
// identity.subject) counts the same requests without it.
func CheckSourceCredential(src Source, id *Identity) error {
	if src.Kind != SourceHeader {
		return nil
	}
	name := strings.ToLower(src.Arg)
	what := ""
	if credentialHeaders[name] {
		what = "it carries credentials"
	} else if id != nil {
		for _, p := range id.APIKeys {
			if p.Header != "" && strings.EqualFold(p.Header, name) {
				what = fmt.Sprintf("apiKeys provider %q reads keys from it", p.Name)
				break
			}
		}
	}
	if what == "" {
		return nil
	}
	return fmt.Errorf("source %q is refused: %s, and a rate-limit key would hold it in clear; count the verified caller with apikey.id or identity.subject instead", src.Key(), what)
}

// ParseSource parses one rateLimits[].by item.
func ParseSource(s string) (Source, error) {
	switch s {
	case SourceIdentitySubject, SourceAPIKeyID, SourceClientIP, SourceClientIP64, SourceRequestMethod, SourceRequestPath:
		return Source{Kind: s}, nil
	}
	for _, kind := range []string{SourceIdentityClaim, SourceHeader} {
		if arg, ok := strings.CutPrefix(s, kind+"."); ok {
			if arg == "" || strings.ContainsAny(arg, " \t/") {
				return Source{}, fmt.Errorf("source %q: %s needs a name after the dot", s, kind)
			}
			if kind == SourceHeader {
				arg = strings.ToLower(arg)
			}
			return Source{Kind: kind, Arg: arg}, nil
		}
	}
	return Source{}, fmt.Errorf("unknown source %q: want identity.subject, identity.claim.<name>, apikey.id, header.<name>, client.ip, client.ip/64, request.method or request.path", s)
}
