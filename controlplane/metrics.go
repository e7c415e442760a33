package controlplane

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	compileSeconds prometheus.Histogram
	specs          *prometheus.GaugeVec
	nacks          prometheus.Counter
	nacksDropped   prometheus.Counter
	reportsDropped prometheus.Counter
	reportErrors   prometheus.Counter
	certRefusals   prometheus.Counter
	groupsDropped  prometheus.Counter
	canaryNACKs    prometheus.Counter

	outcomeReports  prometheus.Counter
	outcomesDropped prometheus.Counter
	outcomesIgnored prometheus.Counter
	gateRollbacks   prometheus.Counter
	gatePromotions  *prometheus.CounterVec
	handshakeWaits  prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		compileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_controlplane_compile_seconds", Help: "Time to compile and validate one revision.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		specs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_controlplane_specs", Help: "Specs of the newest revision by state (published, failed).",
		}, []string{"state"}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_nacks_total", Help: "NACKs received from nodes (per node details on /debug/nodes).",
		}),
		nacksDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_nacks_dropped_total", Help: "NACKs not handed to the rollout because its queue was full.",
		}),
		reportsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_reports_dropped_total", Help: "Spec status reports dropped because the reporter was behind.",
		}),
		reportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_report_errors_total", Help: "Spec status reports the reporter failed to deliver.",
		}),
		certRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_cert_refusals_total", Help: "Certificate directory changes refused because they would break published specs.",
		}),
		groupsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_node_groups_dropped_total", Help: "Node groups dropped after the grace period without a connected node.",
		}),
		canaryNACKs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_controlplane_canary_nacks_ignored_total", Help: "NACKs of the canary candidate that did not count toward a rollback (unauthenticated node, or the same node again).",
		}),
	}
	m.outcomeReports = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_outcome_reports_total", Help: "Traffic outcome reports received from accesslog sidecars.",
	})
	m.outcomesDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_outcome_reports_dropped_total", Help: "Outcome reports dropped because the rollout loop was behind.",
	})
	m.outcomesIgnored = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_outcome_reports_ignored_total", Help: "Outcome reports (or keys) not counted: unauthenticated sender under mTLS, or the gate window full.",
	})
	m.gateRollbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_gate_rollbacks_total", Help: "Canary candidates rolled back by the health gate (traffic outcomes, not NACKs).",
	})
	m.gatePromotions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_gate_promotions_total", Help: "Candidates promoted after the soak, by gate verdict (healthy, unverified).",
	}, []string{"verdict"})
	m.handshakeWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_controlplane_tls_handshake_waits_expired_total", Help: "xDS connections closed because no TLS handshake slot came free in time (--xds-tls-handshakes, --xds-tls-handshake-timeout).",
	})
	reg.MustRegister(m.handshakeWaits)
	reg.MustRegister(m.outcomeReports, m.outcomesDropped, m.outcomesIgnored, m.gateRollbacks, m.gatePromotions)
	reg.MustRegister(m.compileSeconds, m.specs, m.nacks, m.nacksDropped, m.reportsDropped, m.reportErrors, m.certRefusals, m.groupsDropped, m.canaryNACKs)
	return m
}
