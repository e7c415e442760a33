package ratelimit

import (
	"context"
	"net/netip"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Algorithm selects how a Limit counts.
type Algorithm uint8

// The algorithms.
const (
	// FixedWindow counts hits per calendar window (window start = now
	// rounded down to a multiple of the window), exactly as
	// envoyproxy/ratelimit does: every hit is counted, also over the limit.
	FixedWindow Algorithm = iota
	// SlidingWindow weighs the previous window's count by the part of it
	// still inside the sliding window and adds the current window's count;
	// a hit that would go over is not counted.
	SlidingWindow
	// TokenBucket is GCRA: Requests tokens per Window refill, Burst (default
	// Requests) tokens at most; a hit that would go over takes nothing.
	TokenBucket
)

func (a Algorithm) String() string {
	switch a {
	case SlidingWindow:
		return "sliding-window"
	case TokenBucket:
		return "token-bucket"
	}
	return "fixed-window"
}

// Limit is one resolved limit: what a matched descriptor is counted against.
// Limits are immutable once built.
type Limit struct {
	Requests  uint32
	Window    time.Duration
	Algorithm Algorithm
	Burst     uint32 // token bucket capacity; 0 means Requests
	Local     bool   // never leaves this process, whatever the backend
	Shadow    bool   // counted and reported, never OVER_LIMIT
	// Quota (quota_mode), as envoyproxy/ratelimit's HEAD has it: an
	// over-limit hit makes the descriptor OVER_LIMIT, but the request is
	// OVER_LIMIT only when every quota descriptor of it is over (or a
	// plain rate limit is).
	Quota     bool
	Unlimited bool
	// FailClosed (spec onFailure: deny) answers OVER_LIMIT when the hit
	// cannot be counted (backend error or timeout, full Redis queue, full
	// Memory), whatever the service's failure mode; FailOpen (onFailure:
	// allow) answers OK. Neither: the service's FailureMode decides.
	FailClosed bool
	FailOpen   bool
	Name       string
	Replaces   []string
	// Rule names the config entry ("domain.key_value.key"), the metric label.
	Rule string

	// Metadata is the config descriptor's metadata, returned in dynamic
	// metadata (Options.ResponseDynamicMetadata); nil when none.
	Metadata *structpb.Struct

	current *rlsv3.RateLimitResponse_RateLimit
	stats   *ruleStats
	// path describes the config levels from the domain to this limit,
	// for envoyproxy's request-dependent stat names (detailed_metric,
	// value_to_metric); nil when the name is Rule whatever the request.
	path     []metricLevel
	detailed bool
}

// metricLevel is one config level on the way to a limit.
type metricLevel struct {
	key, value    string // as configured; value "" = any value
	wildcard      bool   // value contains '*'
	valueToMetric bool
}

// Capacity is the most hits the limit allows at once.
func (l *Limit) Capacity() uint64 {
	if l.Algorithm == TokenBucket && l.Burst > 0 {
		return uint64(l.Burst)
	}
	return uint64(l.Requests)
}

// WindowMillis is the window in milliseconds.
func (l *Limit) WindowMillis() int64 { return l.Window.Milliseconds() }

// Hit asks a backend to count Addend hits (0 = only look) of the descriptor
// stored under Key against Limit.
type Hit struct {
	Key    string
	Limit  *Limit
	Addend uint64
}

// Result is a backend's answer for one Hit.
type Result struct {
	// Used is the count after the hit (fixed and sliding windows: hits in
	// the window, weighted for sliding; token bucket: tokens in use).
	Used uint64
	// Over reports the hit went over the limit.
	Over bool
	// ResetMillis is the time until the window ends (fixed, sliding), or
	// until the next token (token bucket, over) or a full bucket (within).
	ResetMillis int64
	// FromCache reports a backend answered from its over-limit cache.
	FromCache bool
	// Unstored reports the backend had no room for a new counter (Memory
	// at its cap): the hit was not counted, and the service answers it
	// with the limit's failure mode.
	Unstored bool
	// ByFailureMode reports the answer came from the failure mode, not
	// from a counter (set by the service).
	ByFailureMode bool
}

// Backend counts hits. Decide fills out[i] for hits[i], all at time now;
// the hits of one call are decided together (one round trip for a remote
// backend). An error means no hit of the call was decided.
type Backend interface {
	Decide(ctx context.Context, now time.Time, hits []Hit, out []Result) error
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(ctx context.Context, now time.Time, hits []Hit, out []Result) error

// Decide calls f.
func (f BackendFunc) Decide(ctx context.Context, now time.Time, hits []Hit, out []Result) error {
	return f(ctx, now, hits, out)
}

// MaskedRemoteAddress is the value Envoy's masked_remote_address
// rate-limit action sends for a client address: the client's network with
// the given prefix lengths, in CIDR form ("2001:db8:1:2::/64",
// "198.51.100.7/32"). It returns "" for something that is not an IP.
func MaskedRemoteAddress(ip string, v4Len, v6Len int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := v6Len
	if a.Is4() {
		bits = v4Len
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}
