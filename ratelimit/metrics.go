package ratelimit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the rate-limit metrics of one process, registered on an
// injected registry. "domain" and "rule" come from the loaded
// configuration: rule is the config path such as
// "gatehouse.route_petstore/list.limit_per-user"; Envoy's per-descriptor
// limit overrides are counted as rule "override". Only limits whose config
// asks for it (detailed_metric, value_to_metric) get rule names with
// request values, envoyproxy/ratelimit's stat names ("domain.key7_<value>"),
// at most Options.MaxDetailedSeries of them per process; with
// Options.BoundedMetricLabels they keep the config path too.
type Metrics struct {
	totalHits   *prometheus.CounterVec
	overLimit   *prometheus.CounterVec
	nearLimit   *prometheus.CounterVec
	withinLimit *prometheus.CounterVec
	shadowMode  *prometheus.CounterVec
	overCache   *prometheus.CounterVec

	requests       *prometheus.CounterVec
	globalShadow   prometheus.Counter
	backendErrors  *prometheus.CounterVec
	backendLatency *prometheus.HistogramVec
	failureMode    *prometheus.CounterVec
	memoryFull     *prometheus.CounterVec
	invalid        prometheus.Counter
	batchKeys      *prometheus.HistogramVec
	// detailedOverflow counts hits whose request-dependent name was past
	// the bound and were counted under their rule.
	detailedOverflow prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	rule := []string{"domain", "rule"}
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: name, Help: help}, rule)
	}
	m := &Metrics{
		totalHits:   c("total_hits", "Hits counted against a rule (hits_addend summed)."),
		overLimit:   c("over_limit", "Hits over a rule's limit (including shadow mode and local-cache hits)."),
		nearLimit:   c("near_limit", "Hits within limit but above 80% of it."),
		withinLimit: c("within_limit", "Hits within a rule's limit."),
		shadowMode:  c("shadow_mode", "Hits over limit that were allowed because of shadow mode."),
		overCache:   c("over_limit_with_local_cache", "Over-limit hits answered from the local over-limit cache."),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "requests_total",
			Help: "ShouldRateLimit calls by overall code."}, []string{"code"}),
		globalShadow: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "global_shadow_mode_total",
			Help: "Responses turned from OVER_LIMIT to OK by global shadow mode."}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "backend_errors_total",
			Help: "Backend calls that failed, by backend and reason."}, []string{"backend", "reason"}),
		backendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "backend_seconds",
			Help:    "Latency of backend decisions, by backend.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}}, []string{"backend"}),
		failureMode: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "failure_mode_total",
			Help: "Descriptors decided by the failure mode because the backend failed."}, []string{"mode"}),
		memoryFull: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "memory_full_total",
			Help: "Descriptors decided by the failure mode because the memory backend was at --max-counters and had no room for a new counter."}, []string{"mode"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "invalid_requests_total",
			Help: "Requests rejected as INVALID_ARGUMENT."}),
		detailedOverflow: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "detailed_metric_overflow_total",
			Help: "Hits of detailed_metric/value_to_metric limits counted under their rule because the process already had --max-detailed-metrics request-dependent names."}),
		batchKeys: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "gatehouse", Subsystem: "ratelimit", Name: "backend_batch_keys",
			Help:    "Keys decided per backend round trip (requests batched together), by backend.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}, []string{"backend"}),
	}
	for _, col := range []prometheus.Collector{m.totalHits, m.overLimit, m.nearLimit, m.withinLimit, m.shadowMode, m.overCache,
		m.requests, m.globalShadow, m.backendErrors, m.backendLatency, m.failureMode, m.memoryFull, m.invalid, m.batchKeys, m.detailedOverflow} {
		if err := reg.Register(col); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("ratelimit metrics: already registered on this registry; create Metrics once per registry and share it")
			}
			return nil, err
		}
	}
	return m, nil
}

// ObserveBackend records the backend latency one request saw (queueing
// for a batch included) and its failure (reason "" for success, "error",
// "timeout"). The Service calls it; a nil Metrics ignores it.
func (m *Metrics) ObserveBackend(backend string, seconds float64, reason string) {
	if m == nil {
		return
	}
	m.backendLatency.WithLabelValues(backend).Observe(seconds)
	if reason != "" {
		m.backendErrors.WithLabelValues(backend, reason).Inc()
	}
}

// ObserveBatch records how many keys one backend round trip decided.
func (m *Metrics) ObserveBatch(backend string, keys int) {
	if m == nil {
		return
	}
	m.batchKeys.WithLabelValues(backend).Observe(float64(keys))
}

// ruleStats are the per-rule counters, resolved once per loaded config so
// the hot path only adds.
type ruleStats struct {
	total, over, near, within, shadow, cache prometheus.Counter
}

func (m *Metrics) rule(domain, rule string) *ruleStats {
	if m == nil {
		return nil
	}
	return &ruleStats{
		total:  m.totalHits.WithLabelValues(domain, rule),
		over:   m.overLimit.WithLabelValues(domain, rule),
		near:   m.nearLimit.WithLabelValues(domain, rule),
		within: m.withinLimit.WithLabelValues(domain, rule),
		shadow: m.shadowMode.WithLabelValues(domain, rule),
		cache:  m.overCache.WithLabelValues(domain, rule),
	}
}

// record accounts one decided hit the way envoyproxy/ratelimit does: of
// the addend hits, those past the limit are over, those between 80% and
// the limit are near.
func (s *ruleStats) record(l *Limit, r *Result, addend uint64) {
	if s == nil {
		return
	}
	add := func(c prometheus.Counter, n uint64) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(s.total, addend)
	limit := l.Capacity()
	near := uint64(float64(limit) * 0.8)
	before := r.Used - min(addend, r.Used)
	if r.Over {
		overN := addend
		if !r.FromCache && before < limit {
			overN = r.Used - limit
			add(s.near, limit-max(near, before))
		}
		add(s.over, overN)
		if r.FromCache {
			add(s.cache, addend)
		}
		if l.Shadow {
			add(s.shadow, overN)
		}
		return
	}
	add(s.within, addend)
	if r.Used > near {
		if before >= near {
			add(s.near, addend)
		} else {
			add(s.near, r.Used-near)
		}
	}
}
