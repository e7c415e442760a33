package authn

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are authn's Prometheus metrics. Labels are bounded: the JWKS URI
// (without its query) comes from configuration, never from a request.
type Metrics struct {
	jwksFetches *prometheus.CounterVec
	cacheLookup *prometheus.CounterVec
	jwksAge     *prometheus.Desc
	cacheHit    prometheus.Counter
	cacheMiss   prometheus.Counter
	cacheRefHit prometheus.Counter

	mu      sync.Mutex
	sources map[*RemoteJWKS]struct{}
}

// NewMetrics registers authn's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authn_jwks_fetches_total",
			Help: "JWKS fetches by URI and result (success|failure).",
		}, []string{"jwks_uri", "result"}),
		cacheLookup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authn_token_cache_lookups_total",
			Help: "Verified-token cache lookups by result: hit (verified token), refusal_hit (token refused before for good), miss; hit ratio = (hit + refusal_hit) / all.",
		}, []string{"result"}),
		jwksAge: prometheus.NewDesc("gatehouse_authn_jwks_age_seconds",
			"Seconds since the last successful fetch of a JWKS (its staleness); tokens are refused once it exceeds the configured maximum.",
			[]string{"jwks_uri"}, nil),
		sources: map[*RemoteJWKS]struct{}{},
	}
	for _, c := range []prometheus.Collector{m.jwksFetches, m.cacheLookup, m} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering authn metrics: %w", err)
		}
	}
	m.cacheHit = m.cacheLookup.WithLabelValues("hit")
	m.cacheMiss = m.cacheLookup.WithLabelValues("miss")
	m.cacheRefHit = m.cacheLookup.WithLabelValues("refusal_hit")
	return m, nil
}

// Describe implements prometheus.Collector for the JWKS age gauge.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.jwksAge }

// Collect reports the age of every running remote JWKS.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for r := range m.sources {
		age, ok := r.Age()
		if !ok || seen[r.label] {
			continue
		}
		seen[r.label] = true
		ch <- prometheus.MustNewConstMetric(m.jwksAge, prometheus.GaugeValue, age.Seconds(), r.label)
	}
}

func (m *Metrics) addSource(r *RemoteJWKS) {
	m.mu.Lock()
	m.sources[r] = struct{}{}
	m.mu.Unlock()
}

func (m *Metrics) removeSource(r *RemoteJWKS) {
	m.mu.Lock()
	delete(m.sources, r)
	m.mu.Unlock()
}

func (m *Metrics) cacheResult(result string) {
	if m == nil {
		return
	}
	switch result {
	case "hit":
		m.cacheHit.Inc()
	case "refusal_hit":
		m.cacheRefHit.Inc()
	default:
		m.cacheMiss.Inc()
	}
}
