package sqsqueue_test

import (
	"context"
	"fmt"
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
		Credentials:  testenv.AWSCredentials(),
	})
}

// TestConformance runs the queue suite against goaws v0.5.4 (SQS JSON
// protocol) through the real AWS SDK v2 client. testenv's goaws counts
// receives as SQS does (goaws alone reports ApproximateReceiveCount "1" on
// every delivery), so a crash redelivery must read as attempt 2.
func TestConformance(t *testing.T) {
	g := testenv.StartGoAWS(t)
	conformance(t, client(g.Endpoint), 0)
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
