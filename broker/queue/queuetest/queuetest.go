// Package queuetest is the conformance suite every queue backend passes
// (run from each backend's tests against the real backend). Imported by
// tests only; it must not import any backend.
package queuetest

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
)

// Backend is a fresh queue whose visibility timeout is Visibility, and a
// way to read what was dead-lettered.
type Backend struct {
	Queue       queue.Queue
	Visibility  time.Duration
	DeadLetters func(ctx context.Context) ([][]byte, error)
	// CrashRedeliveryAttempts is the Attempts the backend must report on
	// the first redelivery after a crash (a visibility timeout). 0 means 2,
	// the right answer; an emulator that does not count redeliveries sets
	// what its wire reports instead, so the driver is still held to a value
	// the test knows independently of the driver.
	CrashRedeliveryAttempts int
}

// Run runs the suite; open returns a fresh, empty queue per subtest.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("SendReceiveDeleteBatch", func(t *testing.T) { sendReceive(t, open(t)) })
	t.Run("RedeliveredAfterVisibility", func(t *testing.T) { redeliver(t, open(t)) })
	t.Run("ExtendAndRelease", func(t *testing.T) { extend(t, open(t)) })
	t.Run("DeadLetter", func(t *testing.T) { deadLetter(t, open(t)) })
}

// receiveN receives until n messages arrived or within passed.
func receiveN(t *testing.T, q queue.Queue, n int, within time.Duration) []queue.Message {
	t.Helper()
	ctx := context.Background()
	var got []queue.Message
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		ms, err := q.Receive(ctx, n-len(got), 500*time.Millisecond)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, ms...)
	}
	if len(got) != n {
		t.Fatalf("received %d messages within %s, want %d", len(got), within, n)
	}
	return got
}

func bodies(ms []queue.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Body))
	}
	sort.Strings(out)
	return out
}

func sendReceive(t *testing.T, b Backend) {
	ctx := context.Background()
	var want []string
	for i := range 5 {
		body := fmt.Sprintf(`{"op":"op%d","instance":"i"}`, i)
		want = append(want, body)
		if err := b.Queue.Send(ctx, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveN(t, b.Queue, 5, 10*time.Second)
	if d := cmp.Diff(want, bodies(got)); d != "" {
		t.Fatalf("bodies (-want +got):\n%s", d)
	}
	for _, m := range got {
		if m.Attempts != 1 || m.Receipt == "" {
			t.Fatalf("first delivery %+v: want Attempts 1 and a receipt", m)
		}
	}
	if err := b.Queue.Delete(ctx, got...); err != nil {
		t.Fatalf("batch delete: %v", err)
	}
	// Nothing comes back, even after the visibility timeout.
	ms, err := b.Queue.Receive(ctx, 10, b.Visibility+1500*time.Millisecond)
	if err != nil || len(ms) != 0 {
		t.Fatalf("after delete: Receive = %d messages, %v; want none", len(ms), err)
	}
}

func redeliver(t *testing.T, b Backend) {
	ctx := context.Background()
	if err := b.Queue.Send(ctx, []byte(`{"op":"x","instance":"i"}`)); err != nil {
		t.Fatal(err)
	}
	first := receiveN(t, b.Queue, 1, 10*time.Second)[0]
	// A "crashed" worker never deletes: the message comes back.
	second := receiveN(t, b.Queue, 1, b.Visibility+10*time.Second)[0]
	if first.Attempts != 1 {
		t.Fatalf("first delivery: Attempts = %d, want 1", first.Attempts)
	}
	want := 2
	if b.CrashRedeliveryAttempts != 0 {
		want = b.CrashRedeliveryAttempts
	}
	if second.Attempts != want || string(second.Body) != string(first.Body) {
		t.Fatalf("redelivery: body %q, Attempts %d; want body %q, Attempts %d", second.Body, second.Attempts, first.Body, want)
	}
	if second.Receipt == first.Receipt {
		t.Fatalf("redelivery reused the receipt %q", first.Receipt)
	}
	if err := b.Queue.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
}

func extend(t *testing.T, b Backend) {
	ctx := context.Background()
	if err := b.Queue.Send(ctx, []byte(`{"op":"e","instance":"i"}`)); err != nil {
		t.Fatal(err)
	}
	m := receiveN(t, b.Queue, 1, 10*time.Second)[0]
	// Keep extending past the visibility timeout: nobody else gets it.
	deadline := time.Now().Add(b.Visibility + time.Second)
	for time.Now().Before(deadline) {
		if err := b.Queue.Extend(ctx, m, b.Visibility+5*time.Second); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		ms, err := b.Queue.Receive(ctx, 1, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 0 {
			t.Fatalf("an extended message was delivered again: %+v", ms[0])
		}
	}
	if err := b.Queue.Release(ctx, m, 0); err != nil {
		t.Fatalf("Release: %v", err)
	}
	again := receiveN(t, b.Queue, 1, 10*time.Second)[0]
	if again.Attempts != 2 {
		t.Fatalf("after Release: Attempts = %d, want 2", again.Attempts)
	}
	if err := b.Queue.Delete(ctx, again); err != nil {
		t.Fatal(err)
	}
}

func deadLetter(t *testing.T, b Backend) {
	ctx := context.Background()
	body := `{"op":"poison","instance":"i"}`
	if err := b.Queue.Send(ctx, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := receiveN(t, b.Queue, 1, 10*time.Second)[0]
	if err := b.Queue.DeadLetter(ctx, m, "gave up after 1 attempt: bad"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	var dead [][]byte
	deadline := time.Now().Add(10 * time.Second)
	for len(dead) == 0 && time.Now().Before(deadline) {
		var err error
		if dead, err = b.DeadLetters(ctx); err != nil {
			t.Fatal(err)
		}
		if len(dead) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(dead) != 1 || string(dead[0]) != body {
		t.Fatalf("dead letters = %q, want [%s]", dead, body)
	}
	ms, err := b.Queue.Receive(ctx, 1, b.Visibility+1500*time.Millisecond)
	if err != nil || len(ms) != 0 {
		t.Fatalf("a dead-lettered message came back: %+v, %v", ms, err)
	}
}
