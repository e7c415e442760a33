package controlplane

import (
	"context"
	"time"
)

// report is one ReportPublished call.
type report struct {
	spec     string
	revision int64
	err      error
}

// report queues a batch for the reporter without blocking the rebuild
// loop; when the reporter falls 64 batches behind, the batch is dropped
// and counted (the next revision reports every spec again).
func (cp *ControlPlane) report(batch []report) {
	if len(batch) == 0 {
		return
	}
	select {
	case cp.reports <- batch:
	default:
		cp.metrics.reportsDropped.Add(float64(len(batch)))
		cp.log.Warn("reporter is behind; dropping status reports", "reports", len(batch))
	}
}

func (cp *ControlPlane) reportLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-cp.reports:
			for _, r := range batch {
				if r.spec == "" {
					continue // a document without a name cannot be reported
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := cp.cfg.Reporter.ReportPublished(rctx, r.spec, r.revision, r.err)
				cancel()
				if err != nil {
					cp.metrics.reportErrors.Inc()
					cp.log.Warn("reporting spec status failed", "spec", r.spec, "error", err)
				}
			}
		}
	}
}
