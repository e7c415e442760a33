package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqsqueue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/dynamostore"
	"github.com/gatehouse-edge/gatehouse/broker/worker"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// The test binary doubles as a worker process: with these variables set
// it runs worker.Run on the named backends until it is killed.
const (
	envWorker   = "GATEHOUSE_BROKER_TEST_WORKER_PROCESS"
	envStore    = "GATEHOUSE_BROKER_TEST_STORE"
	envQueue    = "GATEHOUSE_BROKER_TEST_QUEUE"
	envEndpoint = "GATEHOUSE_BROKER_TEST_AWS_ENDPOINT"
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorker) == "1" {
		os.Exit(workerProcess())
	}
	code := m.Run()
	client.CloseIdleConnections()
	if code == 0 {
		// Every test stops what it started: servers, workers, sweepers,
		// emulators' clients. goaws' visibility sweep runs for the life of
		// the binary by design (testenv starts it once).
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/Admiral-Piett/goaws/app/gosqs.PeriodicTasks"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func workerProcess() int {
	ctx := context.Background()
	o := backend.Options{DynamoDBEndpoint: os.Getenv(envEndpoint), AWSRegion: "us-east-1", Visibility: time.Second}
	st, err := backend.OpenStore(ctx, os.Getenv(envStore), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	q, err := backend.OpenQueue(ctx, os.Getenv(envQueue), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err = worker.Run(ctx, worker.Config{Store: st, Queue: q, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: prometheus.NewRegistry(), Visibility: time.Second, PublishWait: time.Minute, Poll: 2 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startWorkerProcess starts this test binary as a worker process.
func startWorkerProcess(t *testing.T, storeURL, queueURL, endpoint string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorker+"=1", envStore+"="+storeURL, envQueue+"="+queueURL, envEndpoint+"="+endpoint,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true")
	logf, err := os.Create(filepath.Join(t.TempDir(), "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("worker process log:\n%s", b)
		}
	})
	return cmd
}

// TestWorkerProcessSIGKILLed runs the worker as its own process, SIGKILLs
// it after it wrote the spec (while it waits for the control plane), and
// starts another: the message comes back, the operation completes, and
// the spec is not written twice. SQLite files are shared between the
// processes; DynamoDB and SQS are dynalite and goaws.
func TestWorkerProcessSIGKILLed(t *testing.T) {
	type setup struct {
		st                         store.Store
		storeURL, queueURL, endpnt string
	}
	cases := []func(t *testing.T) setup{
		func(t *testing.T) setup {
			dir := t.TempDir()
			su, qu := "sqlite:"+filepath.Join(dir, "store.db"), "sqlite:"+filepath.Join(dir, "queue.db")
			st, err := backend.OpenStore(context.Background(), su, backend.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return setup{st: st, storeURL: su, queueURL: qu}
		},
		func(t *testing.T) setup {
			d := testenv.StartDynalite(t)
			g := testenv.StartGoAWS(t)
			table := fmt.Sprintf("proc-%d", awsNames.Add(1))
			st := dynamostore.New(dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.Endpoint), Credentials: testenv.AWSCredentials()}), table)
			if err := st.EnsureTable(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(g.Endpoint), Credentials: testenv.AWSCredentials()})
			url, _, err := sqsqueue.EnsureQueues(context.Background(), c, table, 10)
			if err != nil {
				t.Fatal(err)
			}
			// The child reaches dynalite through the endpoint override and
			// goaws through the queue URL (plain http: its own endpoint).
			return setup{st: st, storeURL: "dynamodb://" + table, queueURL: "sqs://" + url, endpnt: d.Endpoint}
		},
	}
	for i, mk := range cases {
		t.Run([]string{"sqlite", "dynamodb+sqs"}[i], func(t *testing.T) {
			s := mk(t)
			ctx := context.Background()
			// The broker side (API + sweeper) in this process, on the same backends.
			t.Setenv("AWS_ACCESS_KEY_ID", "test")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
			t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			q, err := backend.OpenQueue(ctx, s.queueURL, backend.Options{AWSRegion: "us-east-1", Visibility: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			p := newPipeline(t, pipelineOpts{store: s.st, queue: q, noWorker: true, visibility: time.Second})
			p.CP.paused.Store(true)
			first := startWorkerProcess(t, s.storeURL, s.queueURL, s.endpnt)
			r := p.do(t, "PUT", "/v2/service_instances/p1?accepts_incomplete=true", provisionBody(edgeRoute("sigkill")))
			p.expect(t, r, 202, "provision")
			var in store.Instance
			deadline := time.Now().Add(90 * time.Second)
			for in.Op.Revision == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the worker process never wrote the spec: %+v", in.Op)
				}
				time.Sleep(5 * time.Millisecond)
				in, _ = s.st.GetInstance(ctx, "p1")
			}
			if err := first.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			_ = first.Wait()
			sp0, _ := s.st.GetSpec(ctx, "sigkill")
			startWorkerProcess(t, s.storeURL, s.queueURL, s.endpnt)
			p.CP.paused.Store(false)
			last := p.waitOp(t, "/v2/service_instances/p1", r.str("operation"), 60*time.Second)
			if last.str("state") != "succeeded" {
				t.Fatalf("after SIGKILL and a new worker: %s", last.Raw)
			}
			sp, _ := s.st.GetSpec(ctx, "sigkill")
			if sp.Revision != sp0.Revision || sp.Revision != in.Op.Revision || sp.WrittenBy != in.Op.ID {
				t.Fatalf("spec rewritten after the kill: revision %d then %d (op wrote %d)", sp0.Revision, sp.Revision, in.Op.Revision)
			}
		})
	}
}
