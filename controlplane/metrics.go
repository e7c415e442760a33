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
	reg.MustRegister(m.compileSeconds, m.specs, m.nacks, m.nacksDropped, m.reportsDropped, m.reportErrors, m.certRefusals, m.groupsDropped, m.canaryNACKs)
	return m
}
