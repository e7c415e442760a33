package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// Sweeper is the outbox relay: it enqueues every in-progress operation
// whose message the queue never accepted (the API's enqueue failed or the
// process died between the store write and the send), so a queue outage
// delays operations but loses none.
type Sweeper struct {
	Store    store.Store
	Queue    queue.Queue
	Log      *slog.Logger
	Interval time.Duration // between sweeps (default 5s)
	Grace    time.Duration // an operation this young is left to the API (default 5s)
	Batch    int           // operations per sweep (default 500)
	// Deadline fails operations still in progress this long after they
	// were accepted: their message is gone (dead-lettered by the queue's
	// redrive after crash loops, or a queue lost), and the instance must
	// not stay locked. Default 1h; negative: never.
	Deadline time.Duration
	Now      func() time.Time

	swept   prometheus.Counter
	pending prometheus.Gauge
}

// NewSweeper registers the sweeper's metric on reg.
func NewSweeper(s store.Store, q queue.Queue, log *slog.Logger, reg *prometheus.Registry) (*Sweeper, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_broker_outbox_swept_total",
		Help: "Operations the outbox sweeper enqueued because the API's enqueue had not happened.",
	})
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gatehouse_broker_outbox_pending",
		Help: "Operations past the grace time whose message the queue has not accepted, at the last sweep.",
	})
	for _, m := range []prometheus.Collector{c, g} {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	return &Sweeper{Store: s, Queue: q, Log: log.With("component", "broker-sweeper"), swept: c, pending: g}, nil
}

func (s *Sweeper) defaults() {
	if s.Interval <= 0 {
		s.Interval = 5 * time.Second
	}
	if s.Grace <= 0 {
		s.Grace = 5 * time.Second
	}
	if s.Batch <= 0 {
		s.Batch = 500
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Deadline == 0 {
		s.Deadline = time.Hour
	}
}

// SweepOnce enqueues up to Batch pending operations and returns how many
// it enqueued. It stops at the first send failure (the queue is down; the
// next sweep tries again).
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	s.defaults()
	items, err := s.Store.PendingOutbox(ctx, s.Now().Add(-s.Grace), s.Batch)
	if err != nil {
		return 0, err
	}
	if s.pending != nil {
		s.pending.Set(float64(len(items)))
	}
	n := 0
	for _, it := range items {
		t := queue.Task{OpID: it.OpID, InstanceID: it.InstanceID, BindingID: it.BindingID}
		if err := s.Queue.Send(ctx, t.Encode()); err != nil {
			return n, err
		}
		if err := s.Store.MarkEnqueued(ctx, it.InstanceID, it.BindingID, it.OpID); err != nil {
			return n, err
		}
		n++
		if s.swept != nil {
			s.swept.Inc()
		}
		s.Log.Info("outbox: enqueued an operation the queue never got", "op", it.OpID, "instance", it.InstanceID, "binding", it.BindingID)
	}
	return n, nil
}

// FailOverdue fails up to Batch operations past the Deadline and returns
// how many it failed.
func (s *Sweeper) FailOverdue(ctx context.Context) (int, error) {
	s.defaults()
	if s.Deadline < 0 {
		return 0, nil
	}
	items, err := s.Store.Overdue(ctx, s.Now().Add(-s.Deadline), s.Batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, it := range items {
		failed, err := s.failOne(ctx, it)
		if err != nil {
			return n, err
		}
		if failed {
			n++
			s.Log.Warn("failed an operation no worker finished in time", "op", it.OpID, "instance", it.InstanceID, "binding", it.BindingID, "deadline", s.Deadline)
		}
	}
	return n, nil
}

func (s *Sweeper) failOne(ctx context.Context, it store.OutboxItem) (bool, error) {
	desc := func(kind store.OpKind) string {
		return fmt.Sprintf("no worker finished this %s within %s (its queue message was lost, e.g. dead-lettered after repeated worker crashes); send the request again", kind, s.Deadline)
	}
	for range 10 {
		var err error
		if it.BindingID == "" {
			var in store.Instance
			if in, err = s.Store.GetInstance(ctx, it.InstanceID); err != nil {
				return false, err
			}
			if in.Op.ID != it.OpID || !in.Op.InProgress() {
				return false, nil
			}
			in.Op.State, in.Op.Description, in.Op.UpdatedAt = store.StateFailed, desc(in.Op.Kind), s.Now().UTC()
			if _, err = s.Store.PutInstance(ctx, in); err == nil {
				if in.Op.Kind == store.OpProvision && len(in.Spec) == 0 {
					return true, s.Store.ReleaseName(ctx, in.SpecName, in.ID)
				}
				return true, nil
			}
		} else {
			var b store.Binding
			if b, err = s.Store.GetBinding(ctx, it.InstanceID, it.BindingID); err != nil {
				return false, err
			}
			if b.Op.ID != it.OpID || !b.Op.InProgress() {
				return false, nil
			}
			b.Op.State, b.Op.Description, b.Op.UpdatedAt = store.StateFailed, desc(b.Op.Kind), s.Now().UTC()
			if _, err = s.Store.PutBinding(ctx, b); err == nil {
				return true, nil
			}
		}
		if !errors.Is(err, store.ErrConflict) {
			return false, err
		}
	}
	return false, fmt.Errorf("failing overdue operation %s: %w", it.OpID, store.ErrConflict)
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	s.defaults()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("outbox sweep failed; retrying next interval", "err", err)
		}
		if _, err := s.FailOverdue(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("failing overdue operations failed; retrying next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
