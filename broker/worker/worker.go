// Package worker runs the broker's operations: it receives tasks from the
// queue (at least once), validates specs with the spec package (the same
// code the control plane runs) plus a cross-spec host check, writes the
// route store at a new revision with conditional writes, waits for the
// control plane to report that revision published (or rejected), runs the
// optional DNS step, and marks the operation succeeded or failed. Every
// step is idempotent, so a redelivered task never writes twice. Retries
// back off; a task that keeps failing is dead-lettered and its operation
// failed. It must not import the api package or the control plane.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Config is what a worker needs. Store and Queue are required; Log
// defaults to discarding, Registry to a new registry.
type Config struct {
	Store    store.Store
	Queue    queue.Queue
	Log      *slog.Logger
	Registry *prometheus.Registry
	// Concurrency is the number of tasks run at once (default 4).
	Concurrency int
	// MaxAttempts is how many deliveries a task gets before it is
	// dead-lettered and its operation failed (default 5).
	MaxAttempts int
	// PublishWait bounds one attempt's wait for the control plane's report
	// (default 30s); past it the task is retried with backoff.
	PublishWait time.Duration
	// Visibility is the queue's visibility timeout; the worker extends a
	// message it holds every Visibility/3 (default 30s).
	Visibility time.Duration
	// BackoffBase and BackoffMax shape retry delays: base*2^(attempt-1)
	// with jitter, capped (defaults 1s and 1m).
	BackoffBase, BackoffMax time.Duration
	// Poll is how often the worker looks for the control plane's report
	// (default 10ms).
	Poll time.Duration
	// UnconfirmedDeleteAfter: a deprovision whose deletion (tombstone)
	// revision the control plane has not reported this long after the
	// request succeeds anyway, saying so in its description (default 30s;
	// negative: wait for the report, retrying like any other task). A
	// control plane reports deletions by calling ReportPublished with the
	// tombstone's revision once a config without the spec is live.
	UnconfirmedDeleteAfter time.Duration
	// DNS is the optional DNS step; nil means off.
	DNS dns.Provisioner
	// DNSTarget and DNSTTL describe the records the DNS step writes.
	DNSTarget string
	DNSTTL    int64
	// CDN is the optional CDN step for instances on the CDN plan
	// (cdn.PlanID): a CloudFront distribution in front of the fleet, which
	// the DNS records then point at. nil: operations on that plan fail.
	CDN cdn.Provisioner
	// DNSOwnerID names this Gatehouse deployment in the DNS and CDN
	// ownership markers (default "gatehouse"); two deployments sharing a
	// zone or an AWS account need different ones.
	DNSOwnerID string
	// Compile, when set, is run on every spec before it is written, with
	// the tenant that claims its hosts (the control plane's compile
	// function with the control plane's options, so its errors fail the
	// operation before anything is stored). The control plane's report
	// back through the store is the final word either way.
	Compile func(d *spec.Document, tenant string) error
	// SpecPolicy is the validation policy of every spec the worker reads
	// (the operator's --upstream-allow); the zero value is production.
	SpecPolicy spec.Policy
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Worker runs tasks.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	hosts *store.HostIndex
	acks  chan queue.Message // batched acknowledgements while Run runs
}

// New checks cfg and builds a worker.
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("broker worker: Store is required")
	case cfg.Queue == nil:
		return nil, errors.New("broker worker: Queue is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.PublishWait <= 0 {
		cfg.PublishWait = 30 * time.Second
	}
	if cfg.Visibility <= 0 {
		cfg.Visibility = 30 * time.Second
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if cfg.UnconfirmedDeleteAfter == 0 {
		cfg.UnconfirmedDeleteAfter = 30 * time.Second
	}
	if cfg.DNSTTL <= 0 {
		cfg.DNSTTL = 300
	}
	if cfg.DNSOwnerID == "" {
		cfg.DNSOwnerID = "gatehouse"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, log: cfg.Log.With("component", "broker-worker"), m: m, hosts: store.NewHostIndex()}, nil
}

// Run builds a worker and runs it until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	w, err := New(cfg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Run receives and runs up to Concurrency tasks at once until ctx ends.
// One receive loop asks the queue for as many messages as there are free
// slots (at most 10, SQS's batch size), so idle workers do not each poll.
// On shutdown tasks in flight stop at their next step; their messages
// come back after the visibility timeout.
func (w *Worker) Run(ctx context.Context) error {
	slots := make(chan struct{}, w.cfg.Concurrency)
	w.acks = make(chan queue.Message, w.cfg.Concurrency)
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); w.ackLoop(w.acks) }()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(w.acks)
		<-ackDone
	}()
	failures := 0
	for ctx.Err() == nil {
		select { // at least one free slot
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
		for n < 10 {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		ms, err := w.cfg.Queue.Receive(ctx, n, 2*time.Second)
		for i := len(ms); i < n; i++ {
			<-slots // give back what we did not use
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			d := backoff(w.cfg.BackoffBase, w.cfg.BackoffMax, failures)
			w.log.Warn("receiving from the queue failed; backing off", "err", err, "retry_in", d)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
			continue
		}
		failures = 0
		for _, m := range ms {
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				w.Handle(ctx, m)
			}()
		}
	}
	return nil
}

// backoff is base*2^(n-1), capped, with up to 20% jitter.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// retryable marks a failure worth another attempt (store or queue down,
// control plane slow); anything else finishes the operation as failed.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

func retry(format string, args ...any) error { return retryable{fmt.Errorf(format, args...)} }

// Handle runs one delivery to its end: acknowledged, released for a retry
// or dead-lettered. It holds the message (extending its visibility) while
// it works.
func (w *Worker) Handle(ctx context.Context, m queue.Message) {
	start := w.cfg.Now()
	task, err := queue.DecodeTask(m.Body)
	if err != nil {
		w.m.tasks.WithLabelValues("poison").Inc()
		w.log.Error("dead-lettering an unreadable message", "message", m.ID, "err", err)
		if derr := w.cfg.Queue.DeadLetter(ctx, m, err.Error()); derr != nil {
			w.log.Error("dead-lettering failed", "message", m.ID, "err", derr)
		}
		return
	}
	log := w.log.With("op", task.OpID, "instance", task.InstanceID, "binding", task.BindingID, "attempt", m.Attempts)
	log.Debug("task received", "message", m.ID)
	hctx, stop := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() { // heartbeat: keep the message hidden while we work
		defer hb.Done()
		t := time.NewTicker(w.cfg.Visibility / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if err := w.cfg.Queue.Extend(hctx, m, w.cfg.Visibility); err != nil && hctx.Err() == nil {
					log.Warn("extending the message's visibility failed", "err", err)
				}
			}
		}
	}()
	err = w.run(hctx, task, m.Attempts)
	stop()
	hb.Wait()
	if ctx.Err() != nil {
		return // shutting down: the message comes back after its visibility timeout
	}
	var r retryable
	switch {
	case err == nil:
		w.m.tasks.WithLabelValues("done").Inc()
		w.m.duration.Observe(w.cfg.Now().Sub(start).Seconds())
		w.ack(ctx, m)
	case errors.As(err, &r) && m.Attempts < w.cfg.MaxAttempts:
		w.m.tasks.WithLabelValues("retry").Inc()
		d := backoff(w.cfg.BackoffBase, w.cfg.BackoffMax, m.Attempts)
		log.Warn("task failed; retrying", "err", err, "retry_in", d)
		if rerr := w.cfg.Queue.Release(ctx, m, d); rerr != nil {
			log.Warn("releasing the message failed; it comes back after its visibility timeout", "err", rerr)
		}
	default:
		w.m.tasks.WithLabelValues("dead").Inc()
		reason := fmt.Sprintf("gave up after %d attempt(s): %v", m.Attempts, err)
		log.Error("dead-lettering task", "err", err)
		if ferr := w.failOp(ctx, task, reason); ferr != nil {
			log.Error("marking the operation failed", "err", ferr)
		}
		if derr := w.cfg.Queue.DeadLetter(ctx, m, reason); derr != nil {
			log.Error("dead-lettering failed", "err", derr)
		}
	}
}

// ack acknowledges m: batched through the ack loop while Run runs,
// directly otherwise.
func (w *Worker) ack(ctx context.Context, m queue.Message) {
	if w.acks != nil {
		w.acks <- m
		return
	}
	if err := w.cfg.Queue.Delete(ctx, m); err != nil {
		w.log.Warn("acknowledging the message failed; it will be redelivered and recognised as done", "message", m.ID, "err", err)
	}
}

// ackLoop deletes acknowledged messages in batches of up to 10 (SQS's
// batch size), waiting at most 10ms to fill a batch, until acks is
// closed; then it flushes what is left.
func (w *Worker) ackLoop(acks <-chan queue.Message) {
	var batch []queue.Message
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.cfg.Queue.Delete(ctx, batch...); err != nil {
			w.log.Warn("acknowledging messages failed; they will be redelivered and recognised as done", "messages", len(batch), "err", err)
		}
		w.m.ackBatch.Observe(float64(len(batch)))
		batch = batch[:0]
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case m, ok := <-acks:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(10 * time.Millisecond)
			}
			batch = append(batch, m)
			if len(batch) == 10 {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// run dispatches a task to its operation.
func (w *Worker) run(ctx context.Context, t queue.Task, attempt int) error {
	if t.BindingID == "" {
		in, err := w.cfg.Store.GetInstance(ctx, t.InstanceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // nothing to do: stale task
		}
		if err != nil {
			return retry("reading instance %s: %w", t.InstanceID, err)
		}
		if in.Op.ID != t.OpID || !in.Op.InProgress() {
			return nil // done already, or replaced: a redelivery
		}
		switch in.Op.Kind {
		case store.OpProvision, store.OpUpdate:
			return w.applySpec(ctx, in, attempt)
		case store.OpDeprovision:
			return w.removeSpec(ctx, in, attempt)
		}
		return fmt.Errorf("instance %s: operation %s has unknown kind %q", in.ID, in.Op.ID, in.Op.Kind)
	}
	b, err := w.cfg.Store.GetBinding(ctx, t.InstanceID, t.BindingID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return retry("reading binding %s: %w", t.BindingID, err)
	}
	if b.Op.ID != t.OpID || !b.Op.InProgress() {
		return nil
	}
	return w.applyBinding(ctx, b, attempt)
}
