package ratelimit

import (
	"fmt"
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-edge/gatehouse/ratelimit/config"
)

// Rules is a loaded configuration: every domain's descriptor tree, ready for
// lookup. It is immutable; a reload builds a new Rules and swaps it in.
type Rules struct {
	domains map[string]*node
	// Sources lists where the rules came from, for logs and /debug.
	Sources []string
}

type node struct {
	// children by descriptor key, then value ("" = any value).
	children  map[string]map[string]*node
	wildcards []wildcard
	limit     *Limit
	// shareThreshold: values matched by this node's wildcard share one
	// counter (share_threshold).
	shareThreshold bool
}

type wildcard struct {
	final string   // "key_val*ue" as configured
	parts []string // final split on '*'
	node  *node
	// shared is the wildcard value ("files*") that replaces the request's
	// value in the counter key when share_threshold is set; "" otherwise.
	shared string
}

// NewRules compiles validated domains into a lookup structure; metrics may
// be nil. Two domains with the same name are an error.
func NewRules(domains []*config.Domain, m *Metrics) (*Rules, error) {
	r := &Rules{domains: map[string]*node{}}
	for _, d := range domains {
		if err := config.Validate(d); err != nil {
			return nil, err
		}
		if _, dup := r.domains[d.Name]; dup {
			return nil, fmt.Errorf("%s: duplicate domain '%s'", d.Source, d.Name)
		}
		root := &node{}
		if err := root.load(d.Name, d.Name, d.Descriptors, nil, m); err != nil {
			return nil, err
		}
		r.domains[d.Name] = root
		r.Sources = append(r.Sources, d.Source)
	}
	return r, nil
}

func (n *node) load(domain, parent string, ds []config.Descriptor, path []metricLevel, m *Metrics) error {
	for i := range ds {
		d := &ds[i]
		final := d.Key
		if d.Value != "" {
			final += "_" + d.Value
		}
		level := metricLevel{key: d.Key, value: d.Value, wildcard: strings.Contains(d.Value, "*"), valueToMetric: d.ValueToMetric}
		childPath := append(path[:len(path):len(path)], level)
		child := &node{}
		if p := d.Policy; p != nil {
			l, err := newLimit(p, d.ShadowMode)
			if err != nil {
				return fmt.Errorf("%s: %w", d.Source, err)
			}
			l.Quota = d.QuotaMode
			l.Rule = parent + "." + final
			l.stats = m.rule(domain, l.Rule)
			l.detailed = d.DetailedMetric
			vtm := false
			for _, lv := range childPath {
				vtm = vtm || lv.valueToMetric
			}
			if l.detailed || vtm {
				l.path = childPath
			}
			if len(d.Metadata) > 0 {
				md, err := structpb.NewStruct(d.Metadata)
				if err != nil {
					return fmt.Errorf("%s: error parsing metadata: %w", d.Source, err)
				}
				l.Metadata = md
			}
			child.limit = l
		}
		child.shareThreshold = d.ShareThreshold
		if err := child.load(domain, parent+"."+final, d.Descriptors, childPath, m); err != nil {
			return err
		}
		if n.children == nil {
			n.children = map[string]map[string]*node{}
		}
		byValue := n.children[d.Key]
		if byValue == nil {
			byValue = map[string]*node{}
			n.children[d.Key] = byValue
		}
		byValue[d.Value] = child
		if strings.Contains(final, "*") {
			w := wildcard{final: final, parts: strings.Split(final, "*"), node: child}
			if d.ShareThreshold {
				w.shared = strings.TrimPrefix(final, d.Key+"_")
			}
			n.wildcards = append(n.wildcards, w)
		}
	}
	return nil
}

func newLimit(p *config.Policy, shadow bool) (*Limit, error) {
	l := &Limit{
		Requests:  p.RequestsPerUnit,
		Window:    p.Window,
		Burst:     p.Burst,
		Local:     p.Local,
		Shadow:    shadow,
		Unlimited: p.Unlimited,
		Name:      p.Name,
		Replaces:  p.Replaces,
	}
	switch p.OnFailure {
	case "deny":
		l.FailClosed = true
	case "allow":
		l.FailOpen = true
	case "":
	default:
		return nil, fmt.Errorf("on_failure %q: want allow or deny", p.OnFailure)
	}
	switch p.EffectiveAlgorithm() {
	case config.SlidingWindow:
		l.Algorithm = SlidingWindow
	case config.TokenBucket:
		l.Algorithm = TokenBucket
	}
	if !l.Unlimited && l.Requests == 0 && l.Algorithm != FixedWindow {
		return nil, fmt.Errorf("%s needs requests_per_unit above 0", l.Algorithm)
	}
	l.current = &rlsv3.RateLimitResponse_RateLimit{
		Name:            p.Name,
		RequestsPerUnit: p.RequestsPerUnit,
		Unit:            responseUnit(p.Window),
	}
	return l, nil
}

// responseUnit maps a window to the RLS response unit, UNKNOWN when the
// window is not one of Envoy's units (e.g. 30s).
func responseUnit(w interface{ Seconds() float64 }) rlsv3.RateLimitResponse_RateLimit_Unit {
	switch w.Seconds() {
	case 1:
		return rlsv3.RateLimitResponse_RateLimit_SECOND
	case 60:
		return rlsv3.RateLimitResponse_RateLimit_MINUTE
	case 3600:
		return rlsv3.RateLimitResponse_RateLimit_HOUR
	case 86400:
		return rlsv3.RateLimitResponse_RateLimit_DAY
	case 7 * 86400:
		return rlsv3.RateLimitResponse_RateLimit_WEEK
	case 30 * 86400:
		return rlsv3.RateLimitResponse_RateLimit_MONTH
	case 365 * 86400:
		return rlsv3.RateLimitResponse_RateLimit_YEAR
	}
	return rlsv3.RateLimitResponse_RateLimit_UNKNOWN
}

// HasDomain reports whether a domain is loaded.
func (r *Rules) HasDomain(domain string) bool {
	_, ok := r.domains[domain]
	return ok
}

// Lookup finds the limit for one request descriptor with
// envoyproxy/ratelimit's semantics: walk the tree entry by entry, at each
// level preferring key+value, then a wildcard value, then the key alone;
// a limit applies only when the descriptor ends exactly at its level. It
// returns nil when nothing matches. Lookup does not handle per-descriptor
// limit overrides; Service does.
func (r *Rules) Lookup(domain string, d *ratelimitv3.RateLimitDescriptor) *Limit {
	l, _ := r.match(domain, d, nil)
	return l
}

// match is Lookup that also reports, for share_threshold wildcards, the
// value each entry counts under: shared[i] is the wildcard pattern for
// entry i, or "" for the request's own value. shared is nil when no entry
// shares; buf, when long enough, is used for it.
func (r *Rules) match(domain string, d *ratelimitv3.RateLimitDescriptor, buf []string) (*Limit, []string) {
	if r == nil {
		return nil, nil
	}
	n := r.domains[domain]
	if n == nil {
		return nil, nil
	}
	entries := d.GetEntries()
	var found *Limit
	var shared []string
	for i, e := range entries {
		var next *node
		if byValue := n.children[e.GetKey()]; byValue != nil && e.GetValue() != "" {
			next = byValue[e.GetValue()]
		}
		if next == nil && len(n.wildcards) > 0 {
			final := e.GetKey() + "_" + e.GetValue()
			for _, w := range n.wildcards {
				if wildcardMatch(w.parts, final) {
					next = w.node
					if w.shared != "" {
						if shared == nil {
							if cap(buf) >= len(entries) {
								shared = buf[:len(entries)]
								clear(shared)
							} else {
								shared = make([]string, len(entries))
							}
						}
						shared[i] = w.shared
					}
					break
				}
			}
		}
		if next == nil {
			if byValue := n.children[e.GetKey()]; byValue != nil {
				next = byValue[""]
			}
		}
		if next != nil && next.limit != nil && i == len(entries)-1 {
			found = next.limit
		}
		if next == nil || len(next.children) == 0 {
			break
		}
		n = next
	}
	if found == nil {
		return nil, nil
	}
	return found, shared
}

// wildcardMatch reports whether value matches a pattern split on '*'; each
// '*' matches any run of characters (envoyproxy/ratelimit's matching).
func wildcardMatch(parts []string, value string) bool {
	if len(parts) == 1 {
		return parts[0] == value
	}
	first, last := parts[0], parts[len(parts)-1]
	if !strings.HasPrefix(value, first) || !strings.HasSuffix(value, last) {
		return false
	}
	fixed := 0
	for _, p := range parts {
		fixed += len(p)
	}
	if len(value) < fixed {
		return false
	}
	rest := value[len(first) : len(value)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}
