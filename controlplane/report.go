package controlplane

import (
	"context"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// report is one ReportPublished call.
type report struct {
	spec     string
	revision int64
	err      error
	// note, on a published spec, is told to the broker with it (see
	// source.NoteReporter), e.g. that a group serving it has no node.
	note string
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
				cp.deliver(ctx, r)
			}
		}
	}
}

// reportTries bounds the attempts at one report; the wait between two
// doubles from reportRetry. A report is only sent when a revision changes,
// so one lost to a passing store error would leave the broker's operation
// waiting for good. Repeating one is harmless: the store keeps the newest
// revision, and source.BrokerReporter skips what would change nothing.
const (
	reportTries = 5
	reportRetry = 100 * time.Millisecond
)

func (cp *ControlPlane) deliver(ctx context.Context, r report) {
	wait := reportRetry
	for try := 1; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		if nr, ok := cp.cfg.Reporter.(source.NoteReporter); ok && r.err == nil && r.note != "" {
			err = nr.ReportPublishedNote(rctx, r.spec, r.revision, r.note)
		} else {
			err = cp.cfg.Reporter.ReportPublished(rctx, r.spec, r.revision, r.err)
		}
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		if try == reportTries {
			cp.metrics.reportErrors.Inc()
			cp.log.Warn("reporting spec status failed; giving up", "spec", r.spec, "revision", r.revision, "attempts", try, "error", err)
			return
		}
		cp.log.Warn("reporting spec status failed; retrying", "spec", r.spec, "revision", r.revision, "attempt", try, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}
