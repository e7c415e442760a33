package broker_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqsqueue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/dynamostore"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

var awsNames atomic.Int64

// dynamoStore is a fresh table in a dynalite started for the test.
func dynamoStore(t testing.TB, d *testenv.Dynalite) store.Store {
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.Endpoint), Credentials: testenv.AWSCredentials()})
	s := dynamostore.New(c, fmt.Sprintf("broker-%d", awsNames.Add(1)))
	if err := s.EnsureTable(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// sqsQueue is a fresh queue (and DLQ) in goaws.
func sqsQueue(t testing.TB, g *testenv.GoAWS, vis time.Duration) (*sqsqueue.Queue, *sqs.Client) {
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(g.Endpoint), Credentials: testenv.AWSCredentials(),
		RetryMaxAttempts: 1})
	url, dlq, err := sqsqueue.EnsureQueues(context.Background(), c, fmt.Sprintf("broker-%d", awsNames.Add(1)), 10)
	if err != nil {
		t.Fatal(err)
	}
	return sqsqueue.New(c, url, dlq, sqsqueue.Options{Visibility: vis}), c
}

type backends struct {
	name  string
	open  func(t *testing.T, vis time.Duration) (store.Store, queue.Queue)
	deadN func(t *testing.T, q queue.Queue) int
}

// allBackends: embedded SQLite, and DynamoDB (dynalite) + SQS (goaws).
func allBackends(t *testing.T) []backends {
	return []backends{
		{name: "sqlite", open: func(t *testing.T, vis time.Duration) (store.Store, queue.Queue) {
			dir := t.TempDir()
			s, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "store.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			q, err := sqlitequeue.Open(context.Background(), filepath.Join(dir, "queue.db"), sqlitequeue.Options{Visibility: vis})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return s, q
		}, deadN: func(t *testing.T, q queue.Queue) int {
			ds, err := q.(*sqlitequeue.Queue).DeadLetters(context.Background(), 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(ds)
		}},
		{name: "dynamodb+sqs", open: func(t *testing.T, vis time.Duration) (store.Store, queue.Queue) {
			d := testenv.StartDynalite(t)
			g := testenv.StartGoAWS(t)
			q, _ := sqsQueue(t, g, vis)
			return dynamoStore(t, d), q
		}, deadN: func(t *testing.T, q queue.Queue) int {
			sq := q.(*sqsqueue.Queue)
			g := sqsClientFor(t, sq)
			out, err := g.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(sq.DeadLetterURL()),
				AttributeNames: []sqstypesName{"ApproximateNumberOfMessages"}})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &n)
			return n
		}},
	}
}

// TestWorkerKilledMidTask kills a worker after it wrote the spec and while
// it waits for the control plane; the message comes back to a second
// worker, which finishes the operation without writing the spec again.
func TestWorkerKilledMidTask(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			vis := time.Second
			st, q := be.open(t, vis)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, noWorker: true, visibility: vis})
			p.CP.paused.Store(true)
			ctx := context.Background()

			wctx, kill := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = worker.Run(wctx, p.workerConfig(pipelineOpts{visibility: vis, publishWait: time.Minute}))
			}()
			r := p.do(t, "PUT", "/v2/service_instances/k1?accepts_incomplete=true", provisionBody(edgeRoute("killed")))
			p.expect(t, r, 202, "provision")
			var in store.Instance
			deadline := time.Now().Add(20 * time.Second)
			for in.Op.Revision == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the first worker never wrote the spec")
				}
				time.Sleep(5 * time.Millisecond)
				in, _ = st.GetInstance(ctx, "k1")
			}
			kill() // mid-task: spec written, waiting for the control plane, message not acknowledged
			wg.Wait()
			revAtKill, _, err := st.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}

			wctx2, stop2 := context.WithCancel(ctx)
			defer func() { stop2(); wg.Wait() }()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = worker.Run(wctx2, p.workerConfig(pipelineOpts{visibility: vis}))
			}()
			p.CP.paused.Store(false)
			last := p.waitOp(t, "/v2/service_instances/k1", r.str("operation"), 30*time.Second)
			if last.str("state") != "succeeded" {
				t.Fatalf("after redelivery: %s", last.Raw)
			}
			sp, err := st.GetSpec(ctx, "killed")
			if err != nil {
				t.Fatal(err)
			}
			revNow, _, _ := st.Snapshot(ctx)
			if sp.Revision != in.Op.Revision || sp.WrittenBy != in.Op.ID || revNow != revAtKill {
				t.Fatalf("duplicate side effect: spec at revision %d by %q (first write %d by %q); store revision %d -> %d",
					sp.Revision, sp.WrittenBy, in.Op.Revision, in.Op.ID, revAtKill, revNow)
			}
		})
	}
}

// TestQueueDownAtProvisionTime stops SQS (goaws) before a provision: the
// API still accepts it (202, operation and outbox flag in the store), and
// once the queue is back the sweeper enqueues it and it completes.
func TestQueueDownAtProvisionTime(t *testing.T) {
	g := testenv.StartGoAWS(t)
	q, _ := sqsQueue(t, g, 2*time.Second)
	p := newPipeline(t, pipelineOpts{queue: q, sweep: 200 * time.Millisecond})
	ctx := context.Background()
	g.Stop()
	r := p.do(t, "PUT", "/v2/service_instances/qd?accepts_incomplete=true", provisionBody(edgeRoute("queue-down")))
	p.expect(t, r, 202, "provision while the queue is down")
	in, err := p.Store.GetInstance(ctx, "qd")
	if err != nil || in.Op.Enqueued || !in.Op.InProgress() {
		t.Fatalf("while the queue is down: %+v, %v; want in progress and not enqueued", in.Op, err)
	}
	pending, err := p.Store.PendingOutbox(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(pending) != 1 || pending[0].OpID != r.str("operation") {
		t.Fatalf("outbox = %+v, %v", pending, err)
	}
	time.Sleep(500 * time.Millisecond) // a few failing sweeps
	if in, _ := p.Store.GetInstance(ctx, "qd"); in.Op.Enqueued {
		t.Fatal("marked enqueued while the queue is down")
	}
	g.Restart(t)
	last := p.waitOp(t, "/v2/service_instances/qd", r.str("operation"), 30*time.Second)
	if last.str("state") != "succeeded" {
		t.Fatalf("after the queue came back: %s", last.Raw)
	}
}

// TestTwoWorkersConflict delivers the same task to two workers at once:
// the conditional write lets exactly one write the spec; the other finds
// that write and both end with the same result.
func TestTwoWorkersConflict(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			vis := 5 * time.Second
			st, q := be.open(t, vis)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, noWorker: true, visibility: vis})
			ctx := context.Background()
			r := p.do(t, "PUT", "/v2/service_instances/c1?accepts_incomplete=true", provisionBody(edgeRoute("conflict")))
			p.expect(t, r, 202, "provision")
			in, _ := st.GetInstance(ctx, "c1")
			// The same task again, as an at-least-once queue may deliver it.
			if err := q.Send(ctx, queue.Task{OpID: in.Op.ID, InstanceID: "c1"}.Encode()); err != nil {
				t.Fatal(err)
			}
			var ms []queue.Message
			deadline := time.Now().Add(20 * time.Second)
			for len(ms) < 2 && time.Now().Before(deadline) {
				got, err := q.Receive(ctx, 2-len(ms), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				ms = append(ms, got...)
			}
			if len(ms) != 2 {
				t.Fatalf("received %d copies, want 2", len(ms))
			}
			var wg sync.WaitGroup
			var regs []*prometheus.Registry
			// Both workers read the spec before either writes it: the
			// rendezvous makes the race certain instead of likely.
			rv := &rendezvousStore{Store: st, n: 2, arrived: make(chan struct{}, 2), release: make(chan struct{})}
			for _, m := range ms {
				cfg := p.workerConfig(pipelineOpts{visibility: vis})
				cfg.Store = rv
				regs = append(regs, cfg.Registry)
				w, err := worker.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); w.Handle(ctx, m) }()
			}
			rv.wait(t)
			wg.Wait()
			writes := 0.0
			for _, reg := range regs {
				writes += testenv.CounterValue(t, reg, "gatehouse_broker_worker_spec_writes_total")
			}
			sp, _ := st.GetSpec(ctx, "conflict")
			in, _ = st.GetInstance(ctx, "c1")
			if in.Op.State != store.StateSucceeded || writes != 1 || sp.Revision != in.Op.Revision || sp.WrittenBy != in.Op.ID {
				t.Fatalf("two workers: op %s, %v spec writes, spec revision %d by %q, op revision %d; want exactly one write",
					in.Op.State, writes, sp.Revision, sp.WrittenBy, in.Op.Revision)
			}
		})
	}
}

// TestPoisonAndGiveUp: an unreadable message is dead-lettered at once; a
// task whose spec the control plane never reports is retried with backoff,
// then dead-lettered and its operation failed with the reason.
func TestPoisonAndGiveUp(t *testing.T) {
	for _, be := range allBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			vis := 2 * time.Second
			st, q := be.open(t, vis)
			p := newPipeline(t, pipelineOpts{store: st, queue: q, visibility: vis, publishWait: 200 * time.Millisecond, maxAttempts: 3})
			ctx := context.Background()
			if err := q.Send(ctx, []byte("not a task")); err != nil {
				t.Fatal(err)
			}
			p.CP.paused.Store(true)
			r := p.do(t, "PUT", "/v2/service_instances/gu?accepts_incomplete=true", provisionBody(edgeRoute("give-up")))
			p.expect(t, r, 202, "provision")
			last := p.waitOp(t, "/v2/service_instances/gu", r.str("operation"), 60*time.Second)
			if last.str("state") != "failed" || !containsAll(last.str("description"), "gave up after 3 attempt(s)", "has not reported revision") {
				t.Fatalf("last_operation = %s", last.Raw)
			}
			deadline := time.Now().Add(10 * time.Second)
			for be.deadN(t, q) < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("dead letters = %d, want 2 (poison + given up)", be.deadN(t, q))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The given-up provision does not keep its name or its spec.
			if err := st.ClaimName(ctx, "give-up", "someone-else"); err != nil {
				t.Fatalf("name still held after the provision failed: %v", err)
			}
			if sp, err := st.GetSpec(ctx, "give-up"); err == nil && !sp.Deleted {
				t.Fatalf("the failed provision's spec is still live in the store: %+v", sp)
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
		})
	}
}

var _ = api.ServiceID

// rendezvousStore is the real store with one fault injected: the first n
// GetSpec calls wait for each other, so n workers race for the same
// conditional write.
type rendezvousStore struct {
	store.Store
	mu      sync.Mutex
	n       int
	arrived chan struct{}
	release chan struct{}
}

func (r *rendezvousStore) GetSpec(ctx context.Context, name string) (store.StoredSpec, error) {
	r.mu.Lock()
	hold := r.n > 0
	if hold {
		r.n--
	}
	r.mu.Unlock()
	if hold {
		r.arrived <- struct{}{}
		select {
		case <-r.release:
		case <-time.After(10 * time.Second):
		}
	}
	return r.Store.GetSpec(ctx, name)
}

// wait releases the callers once all n arrived (bounded).
func (r *rendezvousStore) wait(t *testing.T) {
	t.Helper()
	for i := 0; i < cap(r.arrived); i++ {
		select {
		case <-r.arrived:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d workers reached the spec read", i, cap(r.arrived))
		}
	}
	close(r.release)
}

// TestRedeliveryAfterCrashBetweenWrites: the worker died after writing
// the spec but before recording the revision in the operation. The next
// delivery finds its operation's write in the store and does not write
// again.
func TestRedeliveryAfterCrashBetweenWrites(t *testing.T) {
	p := newPipeline(t, pipelineOpts{noWorker: true})
	ctx := context.Background()
	r := p.do(t, "PUT", "/v2/service_instances/cw?accepts_incomplete=true", provisionBody(edgeRoute("crashwrite")))
	p.expect(t, r, 202, "provision")
	in, err := p.Store.GetInstance(ctx, "cw")
	if err != nil {
		t.Fatal(err)
	}
	// What the dead worker left: the spec written by this operation, the
	// operation without its revision.
	rev, err := p.Store.PutSpec(ctx, store.StoredSpec{Name: "crashwrite", InstanceID: "cw", JSON: in.Op.Payload, WrittenBy: in.Op.ID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.workerConfig(pipelineOpts{})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = worker.Run(wctx, cfg) }()
	defer func() { stop(); <-done }()
	last := p.waitOp(t, "/v2/service_instances/cw", r.str("operation"), 20*time.Second)
	if last.str("state") != "succeeded" {
		t.Fatal(last.Raw)
	}
	sp, _ := p.Store.GetSpec(ctx, "crashwrite")
	in, _ = p.Store.GetInstance(ctx, "cw")
	if writes := testenv.CounterValue(t, cfg.Registry, "gatehouse_broker_worker_spec_writes_total"); writes != 0 || sp.Revision != rev || in.Op.Revision != rev {
		t.Fatalf("redelivery wrote %v time(s); spec at %d, operation at %d, want both %d", writes, sp.Revision, in.Op.Revision, rev)
	}
}
