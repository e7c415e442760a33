// Package config owns the envoyproxy/ratelimit configuration format as
// Gatehouse reads it: the YAML files of a config directory (domain, nested
// descriptors, rate_limit, shadow_mode, ...) loaded with file:line errors,
// and the xDS RateLimitConfig proto, both into one plain data model (Domain,
// Descriptor, Policy). It validates what envoyproxy/ratelimit validates. It
// holds no state, does no matching and counts nothing; it must not import
// any other Gatehouse package.
package config

import (
	"fmt"
	"strings"
	"time"
)

// Units envoyproxy/ratelimit accepts in rate_limit.unit, and their length.
var unitWindows = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"week":   7 * 24 * time.Hour,
	"month":  30 * 24 * time.Hour,
	"year":   365 * 24 * time.Hour,
}

// UnitWindow returns the window length of a named unit (lower case) and
// whether the unit is known.
func UnitWindow(unit string) (time.Duration, bool) {
	w, ok := unitWindows[unit]
	return w, ok
}

// UnitFor returns the named unit whose length is exactly w, or "".
func UnitFor(w time.Duration) string {
	for u, d := range unitWindows {
		if d == w {
			return u
		}
	}
	return ""
}

// Algorithms a Policy can ask for. FixedWindow is what envoyproxy/ratelimit
// does and the default.
const (
	FixedWindow   = "fixed-window"
	SlidingWindow = "sliding-window"
	TokenBucket   = "token-bucket"
)

// Domain is one rate-limit domain: the descriptors of one YAML file (or of
// several, when files share a domain and are merged).
type Domain struct {
	Name        string
	Descriptors []Descriptor
	// Source is where the domain was declared ("file.yaml:3", "xds
	// resource gatehouse", ...), for error messages.
	Source string
}

// Descriptor is one level of the descriptor tree.
type Descriptor struct {
	Key   string
	Value string // "" matches any value; a value with '*' is a wildcard
	// Policy is the limit applied when a request's descriptor ends at this
	// level; nil when this level only nests further descriptors.
	Policy         *Policy
	Descriptors    []Descriptor
	ShadowMode     bool
	DetailedMetric bool
	ValueToMetric  bool
	QuotaMode      bool
	ShareThreshold bool
	// Metadata is the descriptor's metadata map (JSON-like values), sent
	// back in dynamic metadata when the service is asked to.
	Metadata map[string]any
	// Source is "file:line" of the descriptor, or another label.
	Source string
}

// Policy is a rate_limit block plus the Gatehouse extensions.
type Policy struct {
	RequestsPerUnit uint32
	// Unit is second|minute|hour|day|week|month|year, or "" when the
	// window is an arbitrary duration (a Gatehouse extension).
	Unit      string
	Window    time.Duration
	Unlimited bool
	Name      string
	Replaces  []string
	// Gatehouse extensions: algorithm (default fixed-window), burst
	// (token-bucket only; default RequestsPerUnit) and local scope (never
	// leaves the sidecar's memory).
	Algorithm string
	Burst     uint32
	Local     bool
	// OnFailure (Gatehouse extension, spec onFailure) is "deny" or
	// "allow" when the limit overrides the service's failure mode for
	// hits that cannot be counted; "" inherits it.
	OnFailure string
}

// EffectiveAlgorithm is Algorithm or FixedWindow.
func (p *Policy) EffectiveAlgorithm() string {
	if p.Algorithm == "" {
		return FixedWindow
	}
	return p.Algorithm
}

// Error is one problem of a config source, with where it is.
type Error struct {
	Source string // file:line or another label
	Reason string
}

func (e *Error) Error() string { return e.Source + ": " + e.Reason }

// ErrorList is every problem found; it is returned as an error.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As reach the items.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Validate checks one domain the way envoyproxy/ratelimit does when it
// loads a file: non-empty domain and keys, no duplicate composite key at
// one level, a known unit unless unlimited, sane replaces, share_threshold
// only on wildcards; plus the Gatehouse extensions.
func Validate(d *Domain) error {
	var errs ErrorList
	if d.Name == "" {
		errs = append(errs, &Error{Source: d.Source, Reason: "config file cannot have empty domain"})
	}
	validateLevel(&errs, d.Name, d.Descriptors)
	return errs.err()
}

func validateLevel(errs *ErrorList, parent string, ds []Descriptor) {
	seen := map[string]bool{}
	for i := range ds {
		d := &ds[i]
		fail := func(format string, args ...any) {
			*errs = append(*errs, &Error{Source: d.Source, Reason: fmt.Sprintf(format, args...)})
		}
		if d.Key == "" {
			fail("descriptor has empty key")
			continue
		}
		final := d.Key
		if d.Value != "" {
			final += "_" + d.Value
		}
		if seen[final] {
			fail("duplicate descriptor composite key '%s.%s'", parent, final)
		}
		seen[final] = true
		if d.ShareThreshold && !strings.Contains(final, "*") {
			fail("share_threshold can only be used with wildcard values (containing '*'), but found key '%s'", final)
		}
		if p := d.Policy; p != nil {
			validatePolicy(fail, p)
		}
		validateLevel(errs, parent+"."+final, d.Descriptors)
	}
}

func validatePolicy(fail func(string, ...any), p *Policy) {
	if p.Unlimited {
		if p.Unit != "" || p.Window != 0 {
			fail("should not specify rate limit unit when unlimited")
		}
	} else {
		if p.Window <= 0 {
			fail("invalid rate limit unit '%s'", p.Unit)
		} else if p.Window%time.Second != 0 {
			fail("rate limit window %s is not a whole number of seconds", p.Window)
		}
	}
	for _, r := range p.Replaces {
		if r == "" {
			fail("should not have an empty replaces entry")
		} else if r == p.Name {
			fail("replaces should not contain name of same descriptor")
		}
	}
	switch p.Algorithm {
	case "", FixedWindow, SlidingWindow:
		if p.Burst != 0 {
			fail("burst is only valid with algorithm token-bucket")
		}
	case TokenBucket:
	default:
		fail("unknown algorithm %q: want fixed-window, sliding-window or token-bucket", p.Algorithm)
	}
}
