package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Served is a role's Run started by Serve: it runs until Stop, which the
// test's cleanup calls if the test did not.
type Served struct {
	t          testing.TB
	name       string
	stopWithin time.Duration
	cancel     context.CancelFunc
	exited     chan struct{} // closed when run has returned err
	err        error
	stop       sync.Once
}

// Serve runs run in its own goroutine under a context that Stop cancels,
// the way the sidecar tests start a sidecar's Run. name says what runs in
// the failure messages ("Run", "sidecar").
func Serve(t testing.TB, name string, stopWithin time.Duration, run func(ctx context.Context) error) *Served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Served{t: t, name: name, stopWithin: stopWithin, cancel: cancel, exited: make(chan struct{})}
	go func() { s.err = run(ctx); close(s.exited) }()
	t.Cleanup(s.Stop)
	return s
}

// Stop cancels run's context and waits up to the stopWithin of Serve for
// run to return, failing the test when it returns an error or does not
// return. Only the first call does anything.
func (s *Served) Stop() {
	s.stop.Do(func() {
		s.cancel()
		select {
		case <-s.exited:
			if s.err != nil {
				s.t.Errorf("%s returned %v", s.name, s.err)
			}
		case <-time.After(s.stopWithin):
			s.t.Errorf("%s did not stop within %s", s.name, s.stopWithin)
		}
	})
}

// AwaitReady returns what ready delivers (a role's listening addresses,
// sent by its Config.Ready), failing the test when s's run returns first
// or nothing arrives within.
func AwaitReady[T any](t testing.TB, s *Served, ready <-chan T, within time.Duration) T {
	t.Helper()
	select {
	case v := <-ready:
		return v
	case <-s.exited:
		t.Fatalf("%s: %v", s.name, s.err)
	case <-time.After(within):
		t.Fatalf("%s did not listen within %s", s.name, within)
	}
	var none T
	return none
}

// Dial is a plaintext gRPC client connection to addr, closed at cleanup.
func Dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
