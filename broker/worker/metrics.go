package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	tasks           *prometheus.CounterVec
	ops             *prometheus.CounterVec
	conflicts       *prometheus.CounterVec
	specWrites      prometheus.Counter
	publishTimeouts prometheus.Counter
	duration        prometheus.Histogram
	ackBatch        prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_broker_worker_tasks_total",
			Help: "Task deliveries by outcome (done, retry, dead, poison).",
		}, []string{"outcome"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_broker_operations_total",
			Help: "Finished operations by kind and final state.",
		}, []string{"kind", "state"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_broker_worker_conflicts_total",
			Help: "Conditional writes lost to a concurrent writer, by record (instance, binding, spec).",
		}, []string{"record"}),
		specWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_broker_worker_spec_writes_total",
			Help: "Specs written to the route store.",
		}),
		publishTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_broker_worker_publish_timeouts_total",
			Help: "Attempts that gave up waiting for the control plane's report.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_broker_worker_task_duration_seconds",
			Help:    "Time from receiving a task to finishing it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		ackBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_broker_worker_ack_batch_size",
			Help:    "Messages acknowledged per batch delete.",
			Buckets: []float64{1, 2, 4, 6, 8, 10},
		}),
	}
	for _, c := range []prometheus.Collector{m.tasks, m.ops, m.conflicts, m.specWrites, m.publishTimeouts, m.duration, m.ackBatch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
