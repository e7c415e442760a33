package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker"
	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqsqueue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// fakeControlPlane plays the control plane's part against the real store:
// it follows the change feed, validates each spec with the spec package and
// reports every revision published, or rejected when reject says so. It can
// be paused (a control plane that is down or slow).
type fakeControlPlane struct {
	feed   store.Feed
	paused atomic.Bool
	mu     sync.Mutex
	reject func(name string) error
	seen   []int64
	// ignoreDeletes: like a control plane that never reports tombstones.
	ignoreDeletes atomic.Bool
	// resync: read the feed from the start again (a restarted control plane).
	resync atomic.Bool
}

func startControlPlane(t testing.TB, feed store.Feed) *fakeControlPlane {
	cp := &fakeControlPlane{feed: feed}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var cursor int64
		for ctx.Err() == nil {
			if cp.resync.Swap(false) {
				cursor = 0
			}
			if !cp.paused.Load() {
				next, changes, err := feed.Changes(ctx, cursor)
				if err == nil {
					for _, c := range changes {
						cp.publish(ctx, c)
					}
					cursor = next
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cp
}

func (cp *fakeControlPlane) publish(ctx context.Context, c store.StoredSpec) {
	var verdict error
	if c.Deleted && cp.ignoreDeletes.Load() {
		return
	}
	if !c.Deleted {
		docs, err := spec.Parse("broker:"+c.Name, c.JSON)
		if err == nil {
			err = spec.Validate(docs)
		}
		verdict = err
		cp.mu.Lock()
		if verdict == nil && cp.reject != nil {
			verdict = cp.reject(c.Name)
		}
		cp.mu.Unlock()
	}
	cp.mu.Lock()
	cp.seen = append(cp.seen, c.Revision)
	cp.mu.Unlock()
	_ = cp.feed.ReportPublished(ctx, c.Name, c.Revision, verdict)
}

func (cp *fakeControlPlane) setReject(f func(string) error) {
	cp.mu.Lock()
	cp.reject = f
	cp.mu.Unlock()
}

// pipeline is a broker (OSB API on 127.0.0.1:0 + sweeper), workers and a
// control plane double over real backends.
type pipeline struct {
	URL   string
	Store store.Store
	Queue queue.Queue
	CP    *fakeControlPlane
	log   *slog.Logger
	dir   string
	opts  pipelineOpts
}

const (
	user     = "osb"
	password = "s3cret-broker-password"
)

type pipelineOpts struct {
	store       store.Store
	queue       queue.Queue
	workers     int
	noWorker    bool
	visibility  time.Duration
	publishWait time.Duration
	maxAttempts int
	bindWait    time.Duration
	pendingTTL  time.Duration
	keySweep    time.Duration
	sweep       time.Duration
	logs        io.Writer
	dns         dns.Provisioner
	cdn         cdn.Provisioner
	unconfirmed time.Duration
	deadline    time.Duration
	tenancy     api.Tenancy
	compile     func(*spec.Document, string) error
}

func testLogger(t testing.TB, w io.Writer) *slog.Logger {
	if w == nil {
		w = io.Discard
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newPipeline(t testing.TB, o pipelineOpts) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{dir: t.TempDir()}
	p.log = testLogger(t, o.logs)
	if o.visibility == 0 {
		o.visibility = 2 * time.Second
	}
	if o.store == nil {
		s, err := sqlitestore.Open(ctx, filepath.Join(p.dir, "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		o.store = s
	}
	if o.queue == nil {
		q, err := sqlitequeue.Open(ctx, filepath.Join(p.dir, "queue.db"), sqlitequeue.Options{Visibility: o.visibility})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		o.queue = q
	}
	p.Store, p.Queue = o.store, o.queue
	p.CP = startControlPlane(t, p.Store)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + l.Addr().String()
	if o.sweep == 0 {
		o.sweep = 100 * time.Millisecond
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := broker.Run(ctx, broker.Config{Store: p.Store, Queue: p.Queue, Username: user, Password: password,
			Log: p.log, Registry: prometheus.NewRegistry(), HTTPListener: l, AdminAddr: "-",
			BindWait: o.bindWait, PendingKeyTTL: o.pendingTTL, KeySweepInterval: o.keySweep, SweepInterval: o.sweep, SweepGrace: o.sweep, OpDeadline: o.deadline, Tenancy: o.tenancy})
		if err != nil && ctx.Err() == nil {
			t.Errorf("broker.Run: %v", err)
		}
	}()
	if !o.noWorker {
		p.startWorker(ctx, t, &wg, o)
		p.opts = o
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p
}

func (p *pipeline) workerConfig(o pipelineOpts) worker.Config {
	if o.publishWait == 0 {
		o.publishWait = 5 * time.Second
	}
	return worker.Config{Store: p.Store, Queue: p.Queue, Log: p.log, Registry: prometheus.NewRegistry(),
		Concurrency: o.workers, Visibility: o.visibility, PublishWait: o.publishWait, MaxAttempts: o.maxAttempts,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Poll: 2 * time.Millisecond,
		DNS: o.dns, CDN: o.cdn, DNSTarget: "edge.example.net", DNSTTL: 60, UnconfirmedDeleteAfter: o.unconfirmed, Compile: o.compile}
}

func (p *pipeline) startWorker(ctx context.Context, t testing.TB, wg *sync.WaitGroup, o pipelineOpts) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := worker.Run(ctx, p.workerConfig(o)); err != nil {
			t.Errorf("worker.Run: %v", err)
		}
	}()
}

// resp is one OSB response.
type resp struct {
	Code   int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r resp) str(k string) string { s, _ := r.Body[k].(string); return s }

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxIdleConns: 128}}

// do sends an OSB request with basic auth and API version 2.17 unless
// headers override them ("-" removes a header).
func (p *pipeline) do(t testing.TB, method, path string, body any, headers ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, p.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "-" {
			req.Header.Del(headers[i])
			continue
		}
		if headers[i] == "Authorization" && strings.HasPrefix(headers[i+1], "basic:") {
			u, pw, _ := strings.Cut(strings.TrimPrefix(headers[i+1], "basic:"), ":")
			req.SetBasicAuth(u, pw)
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{Code: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("%s %s: %d with a non-JSON body %q", method, path, res.StatusCode, raw)
		}
	}
	return out
}

func (p *pipeline) expect(t testing.TB, r resp, code int, what string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: HTTP %d, want %d; body %s", what, r.Code, code, r.Raw)
	}
}

func provisionBody(params any) map[string]any {
	return map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": params,
		"organization_guid": "org", "space_guid": "space", "context": map[string]any{"platform": "test"}}
}

// edgeRoute is a valid EdgeRoute with an apiKeys provider "partners".
func edgeRoute(name string, hosts ...string) map[string]any {
	if len(hosts) == 0 {
		hosts = []string{name + ".example.com"}
	}
	return map[string]any{
		"apiVersion": "gatehouse/v1", "kind": "EdgeRoute",
		"metadata": map[string]any{"name": name, "team": "pets"},
		"spec": map[string]any{
			"hosts":     hosts,
			"upstreams": []any{map[string]any{"name": "api", "endpoints": []string{"10.0.0.5:8080"}}},
			"identity": map[string]any{"apiKeys": []any{map[string]any{"name": "partners", "header": "x-api-key",
				"bindLabels": map[string]any{"plan": []string{"silver", "gold"}}}}},
			"routes": []any{map[string]any{
				"name": "all", "match": map[string]any{"pathPrefix": "/"}, "upstream": "api",
				"auth": map[string]any{"mode": "enforce", "anyOf": []string{"partners"}},
			}},
		},
	}
}

// waitOp polls last_operation until it leaves "in progress" (or 410 Gone)
// and returns the last response.
func (p *pipeline) waitOp(t testing.TB, path, op string, within time.Duration) resp {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := p.do(t, "GET", path+"/last_operation?operation="+op, nil)
		if r.Code == http.StatusGone || (r.Code == 200 && r.str("state") != "in progress") {
			return r
		}
		if r.Code != 200 {
			t.Fatalf("last_operation %s: HTTP %d %s", path, r.Code, r.Raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s on %s still in progress after %s: %s", op, path, within, r.Raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// provision provisions and waits for success.
func (p *pipeline) provision(t testing.TB, id string, params any) {
	t.Helper()
	r := p.do(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(params))
	p.expect(t, r, 202, "provision "+id)
	last := p.waitOp(t, "/v2/service_instances/"+id, r.str("operation"), 30*time.Second)
	if last.str("state") != "succeeded" {
		t.Fatalf("provision %s ended %s", id, last.Raw)
	}
}

type sqstypesName = sqstypes.QueueAttributeName

func sqsClientFor(t *testing.T, q *sqsqueue.Queue) *sqs.Client {
	t.Helper()
	u, err := url.Parse(q.DeadLetterURL())
	if err != nil {
		t.Fatal(err)
	}
	return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(u.Scheme + "://" + u.Host), Credentials: testenv.AWSCredentials()})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
