package sqsqueue_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/gatehouse-edge/gatehouse/broker/queue/queuetest"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqsqueue"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

var names atomic.Int64

func client(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	})
}

// TestConformance runs the queue suite against goaws v0.5.4 (SQS JSON
// protocol) through the real AWS SDK v2 client.
func TestConformance(t *testing.T) {
	g := testenv.StartGoAWS(t)
	// goaws v0.5.4 reports ApproximateReceiveCount "1" on every delivery
	// (it never increments its receive count; real SQS does), so a crash
	// redelivery reads as attempt 1 there; retries through Release are
	// still counted. TestConformanceMoto holds the driver to 2.
	conformance(t, client(g.Endpoint), 1)
}

// TestConformanceMoto runs the same suite against moto's SQS (moto_server,
// which counts ApproximateReceiveCount as SQS does), so a crash redelivery
// must read as attempt 2.
func TestConformanceMoto(t *testing.T) {
	conformance(t, client(startMoto(t)), 0)
}

func conformance(t *testing.T, c *sqs.Client, crashRedeliveryAttempts int) {
	queuetest.Run(t, func(t *testing.T) queuetest.Backend {
		ctx := context.Background()
		url, dlq, err := sqsqueue.EnsureQueues(ctx, c, fmt.Sprintf("gatehouse-%d", names.Add(1)), 10)
		if err != nil {
			t.Fatal(err)
		}
		vis := time.Second
		q := sqsqueue.New(c, url, dlq, sqsqueue.Options{Visibility: vis})
		return queuetest.Backend{Queue: q, Visibility: vis,
			CrashRedeliveryAttempts: crashRedeliveryAttempts,
			DeadLetters: func(ctx context.Context) ([][]byte, error) {
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &dlq, MaxNumberOfMessages: 10})
				if err != nil {
					return nil, err
				}
				var bodies [][]byte
				for _, m := range out.Messages {
					bodies = append(bodies, []byte(aws.ToString(m.Body)))
				}
				return bodies, nil
			}}
	})
}

// startMoto runs moto_server (moto's AWS emulator, `pip install
// 'moto[server]'`) on a free loopback port until the test ends and returns
// its endpoint.
func startMoto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server is not installed; run `make test-deps` (pip install 'moto[server]')")
	}
	port := testenv.FreePort(t)
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	var out bytes.Buffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting moto_server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return endpoint
			}
		}
		select {
		case <-exited:
			t.Fatalf("moto_server exited: %s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server not answering on %s after 30s: %v", endpoint, err)
		}
	}
}
