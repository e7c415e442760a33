package authz

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics. Labels are bounded: route
// ids come from loaded policies (a request for an unknown route counts as
// route="unknown"), decisions and reasons are fixed sets.
type Metrics struct {
	checks   *prometheus.CounterVec
	latency  prometheus.Histogram
	updates  *prometheus.CounterVec
	routes   prometheus.Gauge
	unknown  *routeCounters
	noPolicy *routeCounters
}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authz_checks_total",
			Help: "Authorization decisions by route, decision (allow|deny|shadow-deny) and reason code.",
		}, []string{"route", "decision", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_authz_decision_duration_seconds",
			Help:    "Time to decide one request in the engine (authentication + rules).",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1, 0.5},
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authz_policy_updates_total",
			Help: "Policy set updates by result (success|failure); a failure keeps the last good set.",
		}, []string{"result"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_authz_routes",
			Help: "Routes in the current policy set.",
		}),
	}
	for _, c := range []prometheus.Collector{m.checks, m.latency, m.updates, m.routes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering authz metrics: %w", err)
		}
	}
	m.unknown = newRouteCounters(m, "unknown")
	m.noPolicy = newRouteCounters(m, "none")
	return m, nil
}

// routeCounters caches the counters of one route label, so the hot path
// does no label hashing after the first request of each kind.
type routeCounters struct {
	m     *Metrics
	route string
	mu    sync.RWMutex
	c     map[string]map[string]prometheus.Counter // decision → reason
}

func newRouteCounters(m *Metrics, route string) *routeCounters {
	return &routeCounters{m: m, route: route, c: map[string]map[string]prometheus.Counter{}}
}

func (rc *routeCounters) inc(decision, reason string) {
	rc.mu.RLock()
	c := rc.c[decision][reason]
	rc.mu.RUnlock()
	if c == nil {
		rc.mu.Lock()
		byReason := rc.c[decision]
		if byReason == nil {
			byReason = map[string]prometheus.Counter{}
			rc.c[decision] = byReason
		}
		if c = byReason[reason]; c == nil {
			c = rc.m.checks.WithLabelValues(rc.route, decision, reason)
			byReason[reason] = c
		}
		rc.mu.Unlock()
	}
	c.Inc()
}

func (m *Metrics) observe(r *route, d *Decision, took time.Duration) {
	rc := m.unknown
	if r != nil {
		rc = r.counters
	} else if d.ReasonCode == ReasonNoPolicy {
		rc = m.noPolicy
	}
	rc.inc(d.Metadata.Decision, d.ReasonCode)
	m.latency.Observe(took.Seconds())
}
