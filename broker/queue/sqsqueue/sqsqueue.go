// Package sqsqueue is the scale-out queue backend on Amazon SQS
// (aws-sdk-go-v2): long polling, a visibility timeout the worker extends
// while it works, batch deletes, retries re-sent with a delay and an
// attempt counter, and a dead-letter queue (as a redrive policy for
// crash loops, and explicitly for poison messages). It must not import the
// broker's store, api or worker packages.
package sqsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
)

// attemptsAttr carries the deliveries a message had before it was re-sent
// for a delayed retry.
const attemptsAttr = "gatehouse-attempts"

// Options tune the queue.
type Options struct {
	// Visibility is the visibility timeout set on receive (default 30s,
	// whole seconds).
	Visibility time.Duration
}

// Queue is an SQS queue with its dead-letter queue.
type Queue struct {
	c        *sqs.Client
	url, dlq string
	opts     Options
}

var _ queue.Queue = (*Queue)(nil)

// New uses the queue at url and the dead-letter queue at dlqURL.
func New(c *sqs.Client, url, dlqURL string, o Options) *Queue {
	if o.Visibility < time.Second {
		o.Visibility = 30 * time.Second
	}
	return &Queue{c: c, url: url, dlq: dlqURL, opts: o}
}

// EnsureQueues creates name and name-dlq (if missing) with a redrive
// policy of maxReceive deliveries, and returns their URLs.
func EnsureQueues(ctx context.Context, c *sqs.Client, name string, maxReceive int) (url, dlqURL string, err error) {
	d, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return "", "", fmt.Errorf("sqs: creating the dead-letter queue %s-dlq: %w", name, err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: d.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", fmt.Errorf("sqs: reading the dead-letter queue's ARN: %w", err)
	}
	policy, _ := json.Marshal(map[string]any{"maxReceiveCount": maxReceive, "deadLetterTargetArn": attrs.Attributes[string(types.QueueAttributeNameQueueArn)]})
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		string(types.QueueAttributeNameRedrivePolicy): string(policy),
	}})
	if err != nil {
		return "", "", fmt.Errorf("sqs: creating queue %s: %w", name, err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(d.QueueUrl), nil
}

// Close is a no-op.
func (q *Queue) Close() error { return nil }

func (q *Queue) fail(what string, err error) error {
	return fmt.Errorf("sqs queue %s: %s: %w: %w", q.url, what, queue.ErrUnavailable, err)
}

func seconds(d time.Duration) int32 {
	s := int32((d + time.Second - 1) / time.Second)
	return max(0, min(s, 43200))
}

// Send sends one message.
func (q *Queue) Send(ctx context.Context, body []byte) error {
	if _, err := q.c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: aws.String(string(body))}); err != nil {
		return q.fail("send", err)
	}
	return nil
}

// Receive long-polls (up to 20s per call, SQS's maximum).
func (q *Queue) Receive(ctx context.Context, maxN int, wait time.Duration) ([]queue.Message, error) {
	maxN = max(1, min(maxN, 10))
	waitS := int32(min(wait/time.Second, 20))
	out, err := q.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: &q.url, MaxNumberOfMessages: int32(maxN), WaitTimeSeconds: waitS,
		VisibilityTimeout:           seconds(q.opts.Visibility),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		return nil, q.fail("receive", err)
	}
	ms := make([]queue.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if a, ok := m.MessageAttributes[attemptsAttr]; ok {
			prev, _ := strconv.Atoi(aws.ToString(a.StringValue))
			n = max(n, prev+1)
		}
		ms = append(ms, queue.Message{ID: aws.ToString(m.MessageId), Body: []byte(aws.ToString(m.Body)), Receipt: aws.ToString(m.ReceiptHandle), Attempts: max(n, 1)})
	}
	if len(ms) == 0 && waitS == 0 && wait > 0 {
		// A sub-second wait: SQS has no such long poll, so wait here.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	return ms, nil
}

// Extend hides m for d more.
func (q *Queue) Extend(ctx context.Context, m queue.Message, d time.Duration) error {
	if _, err := q.c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q.url, ReceiptHandle: &m.Receipt, VisibilityTimeout: max(1, seconds(d))}); err != nil {
		return q.fail("extend visibility of message "+m.ID, err)
	}
	return nil
}

// Release re-sends m with a delay (at most 15 minutes, SQS's limit) and
// its attempt count, then deletes this delivery. A crash in between leaves
// two copies; the worker is idempotent.
func (q *Queue) Release(ctx context.Context, m queue.Message, delay time.Duration) error {
	_, err := q.c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: &q.url, MessageBody: aws.String(string(m.Body)), DelaySeconds: min(seconds(delay), 900),
		MessageAttributes: map[string]types.MessageAttributeValue{
			attemptsAttr: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.Attempts))},
		},
	})
	if err != nil {
		return q.fail("re-send message "+m.ID+" for a retry", err)
	}
	return q.Delete(ctx, m)
}

// Delete acknowledges in batches of 10 (SQS's batch size).
func (q *Queue) Delete(ctx context.Context, ms ...queue.Message) error {
	var errs []error
	for start := 0; start < len(ms); start += 10 {
		batch := ms[start:min(start+10, len(ms))]
		entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.Receipt)}
		}
		out, err := q.c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.url, Entries: entries})
		if err != nil {
			errs = append(errs, q.fail("batch delete", err))
			continue
		}
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("sqs queue %s: deleting entry %s: %s: %s", q.url, aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	return errors.Join(errs...)
}

// DeadLetter sends m to the dead-letter queue with the reason, then
// deletes it here.
func (q *Queue) DeadLetter(ctx context.Context, m queue.Message, reason string) error {
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	_, err := q.c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: &q.dlq, MessageBody: aws.String(string(m.Body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"gatehouse-reason": {DataType: aws.String("String"), StringValue: aws.String(reason)},
			attemptsAttr:       {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.Attempts))},
		},
	})
	if err != nil {
		return q.fail("dead-letter message "+m.ID, err)
	}
	if _, err := q.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &m.Receipt}); err != nil {
		return q.fail("delete dead-lettered message "+m.ID, err)
	}
	return nil
}

// DeadLetterURL is the dead-letter queue's URL.
func (q *Queue) DeadLetterURL() string { return q.dlq }
