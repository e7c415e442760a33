package broker

import (
	"context"
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

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	s.defaults()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("outbox sweep failed; retrying next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
