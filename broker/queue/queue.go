// Package queue defines the broker's at-least-once work queue: the API
// sends one message per operation, workers receive it with a visibility
// timeout, extend it while working, delete it when done, and dead-letter it
// after too many attempts. Backends: sqlitequeue (embedded) and sqsqueue
// (Amazon SQS). It must not import the store, api or worker packages.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable wraps a failure to reach the queue backend.
var ErrUnavailable = errors.New("queue unavailable")

// Message is one received message. Receipt identifies this delivery:
// Extend, Release and Delete need it, and a stale receipt (the message was
// redelivered to someone else) is refused.
type Message struct {
	ID       string
	Body     []byte
	Receipt  string
	Attempts int // deliveries so far, this one included
}

// Queue is an at-least-once queue.
type Queue interface {
	Send(ctx context.Context, body []byte) error
	// Receive waits up to wait for up to max messages and hides each for
	// the queue's visibility timeout.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Extend hides m for d more from now (the worker is still on it).
	Extend(ctx context.Context, m Message, d time.Duration) error
	// Release makes m visible again after delay (retry with backoff).
	Release(ctx context.Context, m Message, delay time.Duration) error
	// Delete acknowledges messages, in batches where the backend can.
	Delete(ctx context.Context, ms ...Message) error
	// DeadLetter moves m to the dead-letter queue with a reason.
	DeadLetter(ctx context.Context, m Message, reason string) error
	Close() error
}

// Task is the body of every broker message: which operation to run.
type Task struct {
	OpID       string `json:"op"`
	InstanceID string `json:"instance"`
	BindingID  string `json:"binding,omitempty"`
}

// Encode returns the message body of t.
func (t Task) Encode() []byte {
	b, _ := json.Marshal(t) // cannot fail: three strings
	return b
}

// DecodeTask parses a message body.
func DecodeTask(body []byte) (Task, error) {
	var t Task
	if err := json.Unmarshal(body, &t); err != nil {
		return t, fmt.Errorf("decoding task %q: %w", truncate(body), err)
	}
	if t.OpID == "" || t.InstanceID == "" {
		return t, fmt.Errorf("task %q: op and instance are required", truncate(body))
	}
	return t, nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
