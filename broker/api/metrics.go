package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	enqueueFailures prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_broker_requests_total",
			Help: "OSB requests by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_broker_request_duration_seconds",
			Help:    "OSB request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
		enqueueFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_broker_enqueue_failures_total",
			Help: "Operations accepted whose message the queue refused (the outbox sweeper retries them).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.enqueueFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// instrument counts requests by their (bounded) route pattern.
func (a *API) instrument(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		a.m.requests.WithLabelValues(pattern, strconv.Itoa(sw.code)).Inc()
		a.m.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
	})
}
