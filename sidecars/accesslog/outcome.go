package accesslogsidecar

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/controlplane/outcome"
)

// outcomeMetrics count the reports to the control plane.
type outcomeMetrics struct {
	sent, failed, dropped prometheus.Counter
}

func newOutcomeMetrics(reg *prometheus.Registry) *outcomeMetrics {
	m := &outcomeMetrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_accesslog_outcome_reports_total", Help: "Traffic outcome reports sent to the control plane.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_accesslog_outcome_report_errors_total", Help: "Outcome reports the control plane did not take (their counts are lost; the gate then sees less traffic).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_accesslog_outcome_keys_dropped_total", Help: "Entries not counted because the outcome aggregate was at its key bound.",
		}),
	}
	reg.MustRegister(m.sent, m.failed, m.dropped)
	return m
}

// runOutcomeReports sends the outcome counts to the control plane every
// cfg.OutcomeInterval, over the xDS connection's TLS. It never holds up
// the ALS streams: they only bump counters in o.
func runOutcomeReports(ctx context.Context, cfg Config, o *accesslog.Outcomes, log *slog.Logger, reg *prometheus.Registry) error {
	m := newOutcomeMetrics(reg)
	every := cfg.OutcomeInterval
	if every == 0 {
		every = time.Second
	}
	opts := cfg.xdsDial
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(cfg.XDSServer, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		counts, dropped := o.Take()
		m.dropped.Add(float64(dropped))
		if len(counts) == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, every)
		err := outcome.Send(sctx, conn, outcome.Report{NodeID: cfg.NodeID, Counts: counts})
		cancel()
		if err != nil {
			m.failed.Inc()
			log.Warn("outcome report not taken by the control plane", "xds_server", cfg.XDSServer, "keys", len(counts), "error", err)
			continue
		}
		m.sent.Inc()
	}
}
