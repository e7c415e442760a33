package ratelimit

import (
	"fmt"
	"sort"
	"time"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// SpecRules are the rate limits of one EdgeRoute, as the control plane
// ships them to the sidecars (contract.RateLimitRulesType, wrapped by
// contract.Wrap under contract.RateLimitPrefix+Spec). Plain JSON.
type SpecRules struct {
	Spec   string      `json:"spec"`
	Limits []SpecLimit `json:"limits"`
}

// SpecLimit is one rateLimits entry of one route.
type SpecLimit struct {
	// Route is "<spec>/<route>", Name the rateLimits entry name.
	Route string `json:"route"`
	Name  string `json:"name"`
	// Descriptor is what Envoy sends, in order: route, limit, then one
	// entry per `by` source with an empty value (any value).
	Descriptor    []DescriptorEntry `json:"descriptor"`
	Requests      uint32            `json:"requests"`
	WindowSeconds int64             `json:"windowSeconds"`
	// Unit is second|minute|hour|day when the limit was written with one.
	Unit      string `json:"unit,omitempty"`
	Algorithm string `json:"algorithm"`
	Burst     uint32 `json:"burst,omitempty"`
	Scope     string `json:"scope"`
	Shadow    bool   `json:"shadow,omitempty"`
	// OnFailure is "deny" or "allow" when the limit overrides the
	// sidecar's --failure-mode for hits it cannot count; "" inherits it.
	OnFailure string `json:"onFailure,omitempty"`
}

// DescriptorEntry is one (key, value) of a descriptor; Value "" matches any.
type DescriptorEntry struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// Compile turns one EdgeRoute's rateLimits into SpecRules. It is pure; the
// spec is expected to be validated, but Compile re-checks what it relies on
// and names the field of any problem.
func Compile(r *spec.EdgeRoute) (*SpecRules, error) {
	out := &SpecRules{Spec: r.Metadata.Name, Limits: []SpecLimit{}}
	for ri, rt := range r.Spec.Routes {
		for li, rl := range rt.RateLimits {
			path := fmt.Sprintf("spec %s: spec.routes[%d].rateLimits[%d]", r.Metadata.Name, ri, li)
			lim, err := spec.ParseLimit(rl.Limit)
			if err != nil {
				return nil, fmt.Errorf("%s.limit: %w", path, err)
			}
			id := spec.RouteID(r.Metadata.Name, rt.Name)
			sl := SpecLimit{
				Route:         id,
				Name:          rl.Name,
				Descriptor:    []DescriptorEntry{{Key: "route", Value: id}, {Key: "limit", Value: rl.Name}},
				Requests:      lim.Requests,
				WindowSeconds: int64(lim.Window / time.Second),
				Unit:          lim.Unit,
				Algorithm:     rl.EffectiveAlgorithm(),
				Burst:         rl.Burst,
				Scope:         rl.EffectiveScope(),
				Shadow:        rl.Shadow,
				OnFailure:     rl.OnFailure,
			}
			for bi, by := range rl.By {
				src, err := spec.ParseSource(by)
				if err != nil {
					return nil, fmt.Errorf("%s.by[%d]: %w", path, bi, err)
				}
				if err := spec.CheckSourceCredential(src, r.Spec.Identity); err != nil {
					return nil, fmt.Errorf("%s.by[%d]: %w", path, bi, err)
				}
				sl.Descriptor = append(sl.Descriptor, DescriptorEntry{Key: src.DescriptorKey()})
			}
			if err := sl.check(); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out.Limits = append(out.Limits, sl)
		}
	}
	return out, nil
}

func (l *SpecLimit) check() error {
	if l.Requests == 0 {
		return fmt.Errorf("limit %s/%s: requests must be above 0", l.Route, l.Name)
	}
	if l.WindowSeconds < 1 {
		return fmt.Errorf("limit %s/%s: window must be at least 1s", l.Route, l.Name)
	}
	if len(l.Descriptor) == 0 {
		return fmt.Errorf("limit %s/%s: empty descriptor", l.Route, l.Name)
	}
	switch l.Algorithm {
	case config.FixedWindow, config.SlidingWindow:
		if l.Burst != 0 {
			return fmt.Errorf("limit %s/%s: burst is only valid with token-bucket", l.Route, l.Name)
		}
	case config.TokenBucket:
	default:
		return fmt.Errorf("limit %s/%s: unknown algorithm %q", l.Route, l.Name, l.Algorithm)
	}
	switch l.Scope {
	case spec.ScopeShared, spec.ScopeLocal:
	default:
		return fmt.Errorf("limit %s/%s: unknown scope %q", l.Route, l.Name, l.Scope)
	}
	switch l.OnFailure {
	case "", spec.OnFailureAllow, spec.OnFailureDeny:
	default:
		return fmt.Errorf("limit %s/%s: onFailure %q: want allow or deny", l.Route, l.Name, l.OnFailure)
	}
	return nil
}

// Window is the limit's window.
func (l *SpecLimit) Window() time.Duration { return time.Duration(l.WindowSeconds) * time.Second }

// Domain builds the config domain "gatehouse" from the rules of every spec
// (full fidelity: algorithm, burst, any window, scope). Rules are merged in
// spec-name order; a descriptor path that two limits share is an error.
func Domain(rules []*SpecRules) (*config.Domain, error) {
	d := &config.Domain{Name: contract.RateLimitDomain, Source: "specs"}
	sorted := append([]*SpecRules(nil), rules...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Spec < sorted[j].Spec })
	for _, sr := range sorted {
		for i := range sr.Limits {
			l := &sr.Limits[i]
			if err := l.check(); err != nil {
				return nil, fmt.Errorf("%s%s: %w", contract.RateLimitPrefix, sr.Spec, err)
			}
			pol := &config.Policy{
				RequestsPerUnit: l.Requests,
				Unit:            config.UnitFor(l.Window()),
				Window:          l.Window(),
				Name:            l.Route + "/" + l.Name,
				Algorithm:       l.Algorithm,
				Burst:           l.Burst,
				Local:           l.Scope == spec.ScopeLocal,
				OnFailure:       l.OnFailure,
			}
			src := fmt.Sprintf("%s%s limit %s/%s", contract.RateLimitPrefix, sr.Spec, l.Route, l.Name)
			if err := insert(&d.Descriptors, l.Descriptor, pol, l.Shadow, src); err != nil {
				return nil, err
			}
		}
	}
	return d, config.Validate(d)
}

func insert(level *[]config.Descriptor, path []DescriptorEntry, pol *config.Policy, shadow bool, src string) error {
	e := path[0]
	idx := -1
	for i := range *level {
		if (*level)[i].Key == e.Key && (*level)[i].Value == e.Value {
			idx = i
			break
		}
	}
	if idx < 0 {
		*level = append(*level, config.Descriptor{Key: e.Key, Value: e.Value, Source: src})
		idx = len(*level) - 1
	}
	d := &(*level)[idx]
	if len(path) == 1 {
		if d.Policy != nil {
			return fmt.Errorf("%s: descriptor already has a limit (%s)", src, d.Source)
		}
		d.Policy, d.ShadowMode, d.Source = pol, shadow, src
		return nil
	}
	return insert(&d.Descriptors, path[1:], pol, shadow, src)
}

// RateLimitConfig renders the rules of every spec as the RateLimitConfig
// envoyproxy/ratelimit loads for domain "gatehouse" (name "gatehouse"):
// descriptors nested in the order Envoy sends them, each limit with its
// unit and shadow_mode. What envoyproxy/ratelimit cannot serve is left out
// or approximated, with one warning each:
//   - a window other than second/minute/hour/day (e.g. 30s) is left out:
//     "envoyproxy/ratelimit cannot serve <route>/<limit> (window 30s)";
//   - sliding-window and token-bucket limits are served as fixed windows;
//   - local scope is served as shared (envoyproxy/ratelimit has one store).
func RateLimitConfig(rules []*SpecRules) (*rlsconfv3.RateLimitConfig, []string) {
	out := &rlsconfv3.RateLimitConfig{Name: contract.RateLimitDomain, Domain: contract.RateLimitDomain}
	var warnings []string
	sorted := append([]*SpecRules(nil), rules...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Spec < sorted[j].Spec })
	idx := map[protoKey]*rlsconfv3.RateLimitDescriptor{}
	for _, sr := range sorted {
		for _, l := range sr.Limits {
			id := l.Route + "/" + l.Name
			unit, ok := protoUnitOf(l.Window())
			if !ok {
				warnings = append(warnings, fmt.Sprintf("envoyproxy/ratelimit cannot serve %s (window %s)", id, l.Window()))
				continue
			}
			if l.Algorithm != config.FixedWindow && l.Algorithm != "" {
				warnings = append(warnings, fmt.Sprintf("envoyproxy/ratelimit serves %s as a fixed window (algorithm %s)", id, l.Algorithm))
			}
			if l.Scope == spec.ScopeLocal {
				warnings = append(warnings, fmt.Sprintf("envoyproxy/ratelimit serves %s from its shared store (scope local)", id))
			}
			if l.OnFailure != "" {
				warnings = append(warnings, fmt.Sprintf("envoyproxy/ratelimit ignores onFailure %s of %s (it has one failure mode)", l.OnFailure, id))
			}
			if len(l.Descriptor) == 0 {
				continue
			}
			pol := &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: l.Requests, Name: id}
			protoInsert(idx, nil, &out.Descriptors, l.Descriptor, pol, l.Shadow)
		}
	}
	return out, warnings
}

func protoUnitOf(w time.Duration) (rlsconfv3.RateLimitUnit, bool) {
	return config.ProtoUnit(&config.Policy{Window: w})
}

// protoKey names a descriptor by its parent (nil at the top) and its
// key/value, so protoInsert finds an existing one without scanning its
// level (thousands of routes share the top level).
type protoKey struct {
	parent     *rlsconfv3.RateLimitDescriptor
	key, value string
}

func protoInsert(idx map[protoKey]*rlsconfv3.RateLimitDescriptor, parent *rlsconfv3.RateLimitDescriptor, level *[]*rlsconfv3.RateLimitDescriptor, path []DescriptorEntry, pol *rlsconfv3.RateLimitPolicy, shadow bool) {
	e := path[0]
	k := protoKey{parent, e.Key, e.Value}
	d := idx[k]
	if d == nil {
		d = &rlsconfv3.RateLimitDescriptor{Key: e.Key, Value: e.Value}
		*level = append(*level, d)
		idx[k] = d
	}
	if len(path) == 1 {
		if d.RateLimit == nil {
			d.RateLimit, d.ShadowMode = pol, shadow
		}
		return
	}
	protoInsert(idx, d, &d.Descriptors, path[1:], pol, shadow)
}
