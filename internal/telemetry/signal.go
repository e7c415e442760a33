package telemetry

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext is ctx cancelled on SIGINT or SIGTERM, which starts the
// graceful shutdown of every server run under it.
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
