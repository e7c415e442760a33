package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Bounds on a request; anything larger is INVALID_ARGUMENT. They bound
// only what the configuration decides (how many descriptors and entries,
// the keys); descriptor values come from the client and are never a
// reason to refuse a request: a value longer than MaxKeyValueBytes is
// counted under its hash (see HashedValue), so one long value cannot void
// the other limits of the request.
const (
	MaxDescriptors      = 64
	MaxEntries          = 32
	MaxEntryBytes       = 4096 // the keys of one descriptor, values not counted
	MaxDomainBytes      = 256
	maxHitsAddend       = 1 << 32
	nearLimitRatio      = 0.8
	defaultBackendLabel = "backend"
)

// FailureMode decides descriptors when the shared backend fails.
type FailureMode int

// Failure modes.
const (
	FailAllow FailureMode = iota // answer OK (fail open), the default
	FailDeny                     // answer OVER_LIMIT (fail closed)
)

// ParseFailureMode parses "allow" or "deny".
func ParseFailureMode(s string) (FailureMode, error) {
	switch s {
	case "allow", "":
		return FailAllow, nil
	case "deny":
		return FailDeny, nil
	}
	return FailAllow, fmt.Errorf("failure mode %q: want allow or deny", s)
}

func (f FailureMode) String() string {
	if f == FailDeny {
		return "deny"
	}
	return "allow"
}

// Options configure a Service. Backend is required.
type Options struct {
	// Backend counts shared-scope limits (Memory, or a Redis backend).
	Backend Backend
	// BackendName labels backend metrics ("memory", "redis").
	BackendName string
	// Local counts local-scope limits; default a fresh Memory. When Backend
	// is itself a *Memory, it is used for both.
	Local *Memory
	// Clock defaults to SystemClock.
	Clock Clock
	// Log is where the service logs; nil discards (slog.Default is never
	// used).
	Log *slog.Logger
	// Metrics may be nil (no metrics).
	Metrics *Metrics
	// FailureMode decides hits that cannot be counted (Backend returns an
	// error, or a Memory at its cap has no room for a new counter), for
	// limits without their own (Limit.FailClosed, Limit.FailOpen).
	FailureMode FailureMode
	// GlobalShadowMode turns every OVER_LIMIT overall code into OK (still
	// counted and reported per descriptor).
	GlobalShadowMode bool
	// GlobalQuotaMode (envoyproxy's QUOTA_MODE) treats every descriptor
	// as quota_mode: the request is OVER_LIMIT only when all of them are.
	GlobalQuotaMode bool
	// ResponseHeaders (envoyproxy's LIMIT_RESPONSE_HEADERS_ENABLED) adds
	// the limit, remaining and reset headers for the descriptor closest
	// to its limit (an over-limit one wins), as envoyproxy/ratelimit
	// does: the limit is the plain requests_per_unit.
	ResponseHeaders bool
	// LimitHeader, RemainingHeader and ResetHeader name those headers
	// (envoyproxy's LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER,
	// LIMIT_RESET_HEADER); defaults RateLimit-Limit, RateLimit-Remaining,
	// RateLimit-Reset.
	LimitHeader, RemainingHeader, ResetHeader string
	// ResponseDynamicMetadata (envoyproxy's RESPONSE_DYNAMIC_METADATA)
	// returns the domain, the descriptors, the hits addend and the
	// metadata of the config descriptors that were not over their limit
	// as the response's dynamic metadata.
	ResponseDynamicMetadata bool
	// BoundedMetricLabels keeps every metric's rule label the configured
	// rule path; off (the default, envoyproxy's naming), limits with
	// detailed_metric or value_to_metric are counted under a name that
	// carries the request's values (key7_<value>), at most
	// MaxDetailedSeries names per process, later ones under the rule.
	BoundedMetricLabels bool
	// MaxDetailedSeries bounds the request-dependent metric names; 0 =
	// DefaultMaxDetailedSeries.
	MaxDetailedSeries int
	// KeyPrefix is prepended to every backend key (envoyproxy's
	// CACHE_KEY_PREFIX); default "".
	KeyPrefix string
}

// Service answers RLS ShouldRateLimit requests. It is safe for concurrent
// use; SetRules swaps the configuration atomically, without blocking or
// dropping requests in flight.
type Service struct {
	rules   atomic.Pointer[Rules]
	backend Backend
	name    string
	local   *Memory
	clock   Clock
	log     *slog.Logger
	metrics *Metrics
	opts    Options
	pool    sync.Pool
	// memOnly: the shared backend is the in-process Memory, so keys may
	// point into per-call scratch (Memory copies what it keeps).
	memOnly bool
	reqOK   prometheus.Counter
	reqOver prometheus.Counter
	// lastWarn is when (unix ms) the backend failure was last logged.
	lastWarn atomic.Int64
	// overrides holds the "override" rule stats per configured domain.
	overrides sync.Map
	// detailed holds the stats of request-dependent metric names
	// (detailed_metric, value_to_metric); detailedN counts them.
	detailed  sync.Map
	detailedN atomic.Int64
}

// DefaultMaxDetailedSeries is the default bound on request-dependent
// metric names (Options.MaxDetailedSeries).
const DefaultMaxDetailedSeries = 10000

// Default response header names (envoyproxy/ratelimit's).
const (
	DefaultLimitHeader     = "RateLimit-Limit"
	DefaultRemainingHeader = "RateLimit-Remaining"
	DefaultResetHeader     = "RateLimit-Reset"
)

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Backend == nil {
		return nil, errors.New("ratelimit: Options.Backend is required")
	}
	s := &Service{backend: o.Backend, name: o.BackendName, local: o.Local, clock: o.Clock, log: o.Log, metrics: o.Metrics, opts: o}
	if s.name == "" {
		s.name = defaultBackendLabel
	}
	_, s.memOnly = o.Backend.(*Memory)
	if s.metrics != nil {
		s.reqOK = s.metrics.requests.WithLabelValues("ok")
		s.reqOver = s.metrics.requests.WithLabelValues("over_limit")
	}
	if s.local == nil {
		if m, ok := o.Backend.(*Memory); ok {
			s.local = m
		} else {
			s.local = NewMemory()
		}
	}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.opts.LimitHeader == "" {
		s.opts.LimitHeader = DefaultLimitHeader
	}
	if s.opts.RemainingHeader == "" {
		s.opts.RemainingHeader = DefaultRemainingHeader
	}
	if s.opts.ResetHeader == "" {
		s.opts.ResetHeader = DefaultResetHeader
	}
	if s.opts.MaxDetailedSeries <= 0 {
		s.opts.MaxDetailedSeries = DefaultMaxDetailedSeries
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.pool.New = func() any { return new(scratch) }
	s.rules.Store(&Rules{domains: map[string]*node{}})
	return s, nil
}

// SetRules replaces the configuration.
func (s *Service) SetRules(r *Rules) { s.rules.Store(r) }

// Rules is the configuration in use.
func (s *Service) Rules() *Rules { return s.rules.Load() }

// InvalidRequestError is a malformed request (INVALID_ARGUMENT at the RLS
// boundary).
type InvalidRequestError struct{ Reason string }

func (e *InvalidRequestError) Error() string { return "invalid rate limit request: " + e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidRequestError{Reason: fmt.Sprintf(format, args...)}
}

// Validate checks a request's shape: domain, descriptors and entries
// present and of sane size.
func Validate(req *rlsv3.RateLimitRequest) error {
	if req == nil {
		return invalid("no request")
	}
	if req.GetDomain() == "" {
		return invalid("rate limit domain must not be empty")
	}
	if len(req.GetDomain()) > MaxDomainBytes {
		return invalid("domain is %d bytes, over %d", len(req.GetDomain()), MaxDomainBytes)
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return invalid("rate limit descriptor list must not be empty")
	}
	if len(ds) > MaxDescriptors {
		return invalid("%d descriptors, over the limit of %d", len(ds), MaxDescriptors)
	}
	for i, d := range ds {
		es := d.GetEntries()
		if len(es) == 0 {
			return invalid("descriptor %d has no entries", i)
		}
		if len(es) > MaxEntries {
			return invalid("descriptor %d has %d entries, over the limit of %d", i, len(es), MaxEntries)
		}
		size := 0
		for j, e := range es {
			if e.GetKey() == "" {
				return invalid("descriptor %d entry %d has an empty key", i, j)
			}
			size += len(e.GetKey())
		}
		if size > MaxEntryBytes {
			return invalid("descriptor %d keys are %d bytes, over %d", i, size, MaxEntryBytes)
		}
		if h := d.GetHitsAddend(); h != nil && h.GetValue() >= maxHitsAddend {
			return invalid("descriptor %d hits_addend %d is too large", i, h.GetValue())
		}
		if o := d.GetLimit(); o != nil && responseWindow(rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit())) == 0 {
			return invalid("descriptor %d limit override has unit %s", i, o.GetUnit())
		}
	}
	return nil
}

func responseWindow(u rlsv3.RateLimitResponse_RateLimit_Unit) time.Duration {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return time.Second
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return time.Minute
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return time.Hour
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 24 * time.Hour
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 24 * time.Hour
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 24 * time.Hour
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 24 * time.Hour
	}
	return 0
}

// scratch is per-call working memory, pooled.
type scratch struct {
	limits  []*Limit
	addends []uint64
	shared  []Hit
	sharedI []int
	local   []Hit
	localI  []int
	results []Result
	lres    []Result
	// stats[i] are the metrics descriptor i is counted under.
	stats []*ruleStats
	key   []byte
	// shares[i] are descriptor i's share_threshold values (nil: none).
	shares [][]string
}

// ShouldRateLimit decides one request: it looks up every descriptor's
// limit, counts the matched ones in one backend call (local-scope limits in
// memory), and answers as Envoy expects. The error is an
// *InvalidRequestError for a malformed request; backend failures are
// answered by the failure mode, not returned.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := Validate(req); err != nil {
		if s.metrics != nil {
			s.metrics.invalid.Inc()
		}
		return nil, err
	}
	rules := s.rules.Load()
	now := s.clock.Now()
	nowMs := now.UnixMilli()
	ds := req.GetDescriptors()
	n := len(ds)

	sc := s.pool.Get().(*scratch)
	defer s.pool.Put(sc)
	sc.limits = grow(sc.limits, n)
	sc.addends = grow(sc.addends, n)
	sc.results = grow(sc.results, n)
	sc.shares = grow(sc.shares, n)
	sc.stats = grow(sc.stats, n)
	sc.shared, sc.sharedI, sc.local, sc.localI = sc.shared[:0], sc.sharedI[:0], sc.local[:0], sc.localI[:0]
	if cap(sc.key) < 64*n {
		sc.key = make([]byte, 0, 128*n)
	}
	sc.key = sc.key[:0]

	var replacing map[string]bool
	requestAddend := uint64(max(1, req.GetHitsAddend()))
	for i, d := range ds {
		var l *Limit
		if o := d.GetLimit(); o != nil && rules.HasDomain(req.GetDomain()) {
			l, sc.shares[i] = overrideLimit(o, s.overrideStats(req.GetDomain())), nil
		} else {
			l, sc.shares[i] = rules.match(req.GetDomain(), d, sc.shares[i])
		}
		sc.limits[i] = l
		if l != nil {
			sc.stats[i] = l.stats
			if l.path != nil && s.metrics != nil && !s.opts.BoundedMetricLabels {
				sc.stats[i] = s.detailedStats(req.GetDomain(), d, sc.shares[i], l)
			}
		}
		if h := d.GetHitsAddend(); h != nil {
			sc.addends[i] = h.GetValue()
		} else {
			sc.addends[i] = requestAddend
		}
		if l != nil && len(l.Replaces) > 0 {
			if replacing == nil {
				replacing = map[string]bool{}
			}
			for _, name := range l.Replaces {
				replacing[name] = true
			}
		}
	}
	for i, l := range sc.limits {
		if l == nil || l.Unlimited || (l.Name != "" && replacing[l.Name]) {
			if l != nil && !l.Unlimited {
				sc.limits[i] = nil
			}
			continue
		}
		h := Hit{Key: s.key(sc, req.GetDomain(), ds[i], sc.shares[i], l, nowMs, s.memOnly || l.Local), Limit: l, Addend: sc.addends[i]}
		if l.Local {
			sc.local, sc.localI = append(sc.local, h), append(sc.localI, i)
		} else {
			sc.shared, sc.sharedI = append(sc.shared, h), append(sc.sharedI, i)
		}
	}

	failed := false
	if len(sc.shared) > 0 {
		sc.lres = grow(sc.lres, len(sc.shared))
		var start time.Time
		if !s.memOnly {
			start = time.Now()
		}
		err := s.backend.Decide(ctx, now, sc.shared, sc.lres)
		if !s.memOnly {
			reason := ""
			if err != nil {
				reason = "error"
				var t interface{ Timeout() bool }
				if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout() {
					reason = "timeout"
				}
			}
			s.metrics.ObserveBackend(s.name, time.Since(start).Seconds(), reason)
		}
		if err != nil {
			failed = true
			// At most one line a second: an outage at 10k requests/s must
			// not become 10k log lines/s.
			if last := s.lastWarn.Load(); nowMs-last >= 1000 && s.lastWarn.CompareAndSwap(last, nowMs) {
				s.log.Warn("rate limit backend failed; applying failure mode", "backend", s.name, "failure_mode", s.opts.FailureMode.String(),
					"descriptors", len(sc.shared), "error", err)
			}
		}
		for j, i := range sc.sharedI {
			switch {
			case failed:
				sc.results[i] = s.failureResult(sc.shared[j].Limit, nowMs, "backend")
			case sc.lres[j].Unstored:
				sc.results[i] = s.failureResult(sc.shared[j].Limit, nowMs, "memory_full")
			default:
				sc.results[i] = sc.lres[j]
			}
		}
	}
	if len(sc.local) > 0 {
		sc.lres = grow(sc.lres, len(sc.local))
		_ = s.local.Decide(ctx, now, sc.local, sc.lres)
		for j, i := range sc.localI {
			if sc.lres[j].Unstored {
				sc.results[i] = s.failureResult(sc.local[j].Limit, nowMs, "memory_full")
			} else {
				sc.results[i] = sc.lres[j]
			}
		}
	}
	resp := s.respond(sc, n)
	if s.opts.ResponseDynamicMetadata {
		resp.DynamicMetadata = dynamicMetadata(req, sc.limits[:n], resp.GetStatuses())
	}
	return resp, nil
}

// failMode is the failure mode of one limit: its own (spec onFailure) or
// the service's.
func (s *Service) failMode(l *Limit) FailureMode {
	switch {
	case l.FailClosed:
		return FailDeny
	case l.FailOpen:
		return FailAllow
	}
	return s.opts.FailureMode
}

// failureResult answers a hit that could not be counted (cause "backend":
// the backend failed; "memory_full": no room for a new counter) with the
// limit's failure mode, and counts it.
func (s *Service) failureResult(l *Limit, nowMs int64, cause string) Result {
	r := Result{ResetMillis: fixedReset(nowMs, max(1, l.WindowMillis())), ByFailureMode: true}
	mode := s.failMode(l)
	if mode == FailDeny {
		r.Over = true
		r.Used = l.Capacity() + 1
	}
	if s.metrics != nil {
		if cause == "backend" {
			s.metrics.failureMode.WithLabelValues(mode.String()).Inc()
		} else {
			s.metrics.memoryFull.WithLabelValues(mode.String()).Inc()
		}
	}
	return r
}

func (s *Service) respond(sc *scratch, n int) *rlsv3.RateLimitResponse {
	resp, statuses, durs := newResponse(n)
	resp.OverallCode = rlsv3.RateLimitResponse_OK
	// The descriptor the headers describe, chosen as envoyproxy/ratelimit
	// does: the first with the least remaining, then the last one over a
	// plain (not quota) limit.
	var closest *rlsv3.RateLimitResponse_DescriptorStatus
	minRemaining := uint32(math.MaxUint32)
	failedRate, failedQuota, quota := 0, 0, 0
	for i := 0; i < n; i++ {
		st := &statuses[i]
		resp.Statuses[i] = st
		st.Code = rlsv3.RateLimitResponse_OK
		l := sc.limits[i]
		if l != nil && l.Unlimited {
			st.LimitRemaining = math.MaxUint32
			continue
		}
		isQuota := s.opts.GlobalQuotaMode || l != nil && l.Quota
		if isQuota {
			quota++
		}
		if l == nil {
			continue
		}
		r := &sc.results[i]
		if !r.ByFailureMode {
			sc.stats[i].record(l, r, sc.addends[i])
		}
		st.CurrentLimit = l.current
		d := &durs[i]
		d.Seconds, d.Nanos = r.ResetMillis/1000, int32(r.ResetMillis%1000)*1e6
		st.DurationUntilReset = d
		capacity := l.Capacity()
		if !r.Over && r.Used < capacity {
			st.LimitRemaining = uint32(min(capacity-r.Used, math.MaxUint32))
		}
		if st.LimitRemaining < minRemaining {
			closest, minRemaining = st, st.LimitRemaining
		}
		// Shadow mode never fails a descriptor; quota mode fails the
		// descriptor, and the request only when every quota descriptor
		// is over.
		if r.Over && !l.Shadow {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			if isQuota {
				failedQuota++
			} else {
				failedRate++
				closest, minRemaining = st, 0
			}
		}
	}
	if failedRate > 0 || quota > 0 && failedQuota == quota {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		if s.opts.GlobalShadowMode {
			resp.OverallCode = rlsv3.RateLimitResponse_OK
			if s.metrics != nil {
				s.metrics.globalShadow.Inc()
			}
		}
	}
	if s.metrics != nil {
		if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
			s.reqOver.Inc()
		} else {
			s.reqOK.Inc()
		}
	}
	if s.opts.ResponseHeaders && closest != nil {
		reset := closest.GetDurationUntilReset().AsDuration()
		secs := int64((reset + time.Second - 1) / time.Second)
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{
			{Key: s.opts.LimitHeader, Value: strconv.FormatUint(uint64(closest.GetCurrentLimit().GetRequestsPerUnit()), 10)},
			{Key: s.opts.RemainingHeader, Value: strconv.FormatUint(uint64(closest.LimitRemaining), 10)},
			{Key: s.opts.ResetHeader, Value: strconv.FormatInt(secs, 10)},
		}
	}
	return resp
}

// smallResponse holds a response for up to 4 descriptors in one
// allocation (Envoy typically sends one to three).
type smallResponse struct {
	resp rlsv3.RateLimitResponse
	ptrs [4]*rlsv3.RateLimitResponse_DescriptorStatus
	sts  [4]rlsv3.RateLimitResponse_DescriptorStatus
	durs [4]durationpb.Duration
}

// oneResponse is smallResponse for the common single descriptor.
type oneResponse struct {
	resp rlsv3.RateLimitResponse
	ptrs [1]*rlsv3.RateLimitResponse_DescriptorStatus
	sts  [1]rlsv3.RateLimitResponse_DescriptorStatus
	durs [1]durationpb.Duration
}

func newResponse(n int) (*rlsv3.RateLimitResponse, []rlsv3.RateLimitResponse_DescriptorStatus, []durationpb.Duration) {
	if n == 1 {
		b := &oneResponse{}
		b.resp.Statuses = b.ptrs[:]
		return &b.resp, b.sts[:], b.durs[:]
	}
	if n <= 4 {
		b := &smallResponse{}
		b.resp.Statuses = b.ptrs[:n]
		return &b.resp, b.sts[:n], b.durs[:n]
	}
	resp := &rlsv3.RateLimitResponse{Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)}
	return resp, make([]rlsv3.RateLimitResponse_DescriptorStatus, n), make([]durationpb.Duration, n)
}

// overrideLimit is the limit Envoy sent with the descriptor (a route-level
// override): a fixed window, never shadow, counted as rule "override".
func overrideLimit(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride, stats *ruleStats) *Limit {
	return &Limit{
		Requests: o.GetRequestsPerUnit(),
		Window:   responseWindow(rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit())),
		Rule:     "override",
		stats:    stats,
		current: &rlsv3.RateLimitResponse_RateLimit{
			RequestsPerUnit: o.GetRequestsPerUnit(),
			Unit:            rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit()),
		},
	}
}

// overrideStats are the metrics of Envoy's limit overrides in a domain
// (only configured domains get here, so the labels stay bounded).
func (s *Service) overrideStats(domain string) *ruleStats {
	if s.metrics == nil {
		return nil
	}
	if v, ok := s.overrides.Load(domain); ok {
		return v.(*ruleStats)
	}
	v, _ := s.overrides.LoadOrStore(domain, s.metrics.rule(domain, "override"))
	return v.(*ruleStats)
}

// MaxKeyValueBytes is the longest descriptor value that goes into a
// counter key as it is; a longer one is counted under HashedValue.
const MaxKeyValueBytes = 128

// hashMark starts a hashed value in a counter key. A client value that
// itself starts with it is hashed too, so no plain value can name the
// counter of a hashed one.
const hashMark = "#sha256:"

// AppendKeyValue appends the form a descriptor value takes in a counter
// key: the value itself when it is at most MaxKeyValueBytes long (and does
// not start with the hash mark), otherwise "#sha256:" and the first 16
// bytes of its SHA-256 in hex (41 bytes whatever the value's length).
func AppendKeyValue(b []byte, v string) []byte {
	if len(v) <= MaxKeyValueBytes && !strings.HasPrefix(v, hashMark) {
		return append(b, v...)
	}
	// Sum256 keeps no reference to its input: no copy of a long value.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(v), len(v)))
	b = append(b, hashMark...)
	return hex.AppendEncode(b, sum[:16])
}

// HashedValue is AppendKeyValue as a string, for tests and tools.
func HashedValue(v string) string { return string(AppendKeyValue(nil, v)) }

// PathWithoutQuery is a request.path descriptor value without its query
// string: Envoy sends ":path" whole, and a per-path limit must not be
// escaped with a random "?x=". The fragment never reaches Envoy.
func PathWithoutQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// key builds the backend key of a descriptor. Fixed windows use
// envoyproxy/ratelimit's format, so both services can share a Redis:
// <prefix><domain>_<key>_<value>_..._<window start, unix seconds>. Sliding
// windows and token buckets get their own namespaces (their values are not
// plain counters): <prefix>gh:sw:<window s>:<domain>_<key>_<value>_... and
// gh:tb:. A value longer than MaxKeyValueBytes is written as its hash
// (AppendKeyValue); in domain gatehouse a request.path value is counted
// without its query string (PathWithoutQuery).
func (s *Service) key(sc *scratch, domain string, d *ratelimitv3.RateLimitDescriptor, shared []string, l *Limit, nowMs int64, borrowed bool) string {
	start := len(sc.key)
	b := append(sc.key, s.opts.KeyPrefix...)
	winS := int64(l.Window / time.Second)
	switch l.Algorithm {
	case SlidingWindow:
		b = append(b, "gh:sw:"...)
		b = strconv.AppendInt(b, winS, 10)
		b = append(b, ':')
	case TokenBucket:
		b = append(b, "gh:tb:"...)
		b = strconv.AppendInt(b, winS, 10)
		b = append(b, ':')
	}
	b = append(b, domain...)
	b = append(b, '_')
	gatehouse := domain == contract.RateLimitDomain
	for i, e := range d.GetEntries() {
		b = append(b, e.GetKey()...)
		b = append(b, '_')
		if shared != nil && shared[i] != "" {
			b = append(b, shared[i]...) // share_threshold: one counter for the pattern
		} else {
			v := e.GetValue()
			if gatehouse && e.GetKey() == spec.SourceRequestPath {
				v = PathWithoutQuery(v)
			}
			b = AppendKeyValue(b, v)
		}
		b = append(b, '_')
	}
	if l.Algorithm == FixedWindow {
		nowS := nowMs / 1000
		b = strconv.AppendInt(b, nowS/winS*winS, 10)
	}
	sc.key = b
	if borrowed {
		// Valid until the call ends; Memory copies keys it keeps.
		return unsafe.String(&b[start], len(b)-start)
	}
	return string(b[start:])
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
