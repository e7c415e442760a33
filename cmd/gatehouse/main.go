// Command gatehouse is the one Gatehouse binary: one subcommand per role.
// Each subcommand parses flags (with GATEHOUSE_<SUBCOMMAND>_<FLAG>
// environment twins) and calls a component's Run; no logic lives here.
// It must not import the test-support packages (internal/testenv,
// internal/browsertest, authn/authntest, accesslog/accesslogtest,
// broker/store/storetest, broker/queue/queuetest, the route53fake and
// cloudfrontfake doubles).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

func main() {
	ctx, stop := telemetry.SignalContext(context.Background())
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		if code, ok := err.(exitCode); ok {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with a code after the command has already
// printed what went wrong.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
