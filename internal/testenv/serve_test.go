package testenv

import (
	"context"
	"testing"
	"time"
)

// Serve hands run a live context, AwaitReady returns what run sends, and
// Stop cancels the context and waits for run to return (once).
func TestServeAwaitReadyStop(t *testing.T) {
	ready := make(chan string, 1)
	returned := make(chan struct{})
	s := Serve(t, "run", 5*time.Second, func(ctx context.Context) error {
		defer close(returned)
		ready <- "127.0.0.1:1"
		<-ctx.Done()
		return nil
	})
	if got := AwaitReady(t, s, ready, 5*time.Second); got != "127.0.0.1:1" {
		t.Fatalf("AwaitReady = %q", got)
	}
	select {
	case <-returned:
		t.Fatal("run returned before Stop")
	default:
	}
	s.Stop()
	select {
	case <-returned:
	default:
		t.Fatal("Stop returned before run did")
	}
	s.Stop() // the cleanup's call: nothing left to do
}
