// Package backend opens the broker's store and queue from the URLs the
// CLI takes: sqlite:PATH or dynamodb://TABLE for the store, sqlite:PATH or
// sqs://QUEUE-URL for the queue. AWS settings come from the standard
// aws-sdk-go-v2 config chain plus an optional endpoint override. It must
// not import the api or worker packages.
package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqlitequeue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
)

// Options are the settings shared by the backends.
type Options struct {
	// AWSEndpoint overrides the AWS endpoint of DynamoDB and SQS (an
	// emulator, a VPC endpoint); DynamoDBEndpoint and SQSEndpoint override
	// it per service. An sqs:// queue URL on plain http (an emulator) is
	// its own endpoint unless one is set.
	AWSEndpoint      string
	DynamoDBEndpoint string
	SQSEndpoint      string
	// AWSRegion overrides the region from the config chain.
	AWSRegion string
	// Visibility is the queue's visibility timeout (default 30s).
	Visibility time.Duration
	// DeadLetterURL is the SQS dead-letter queue (default: the queue URL
	// with "-dlq" appended).
	DeadLetterURL string
	// CreateResources creates the DynamoDB table and the SQS queues if they
	// are missing (development, emulators).
	CreateResources bool
	// MaxReceive is the SQS redrive policy's maxReceiveCount when queues
	// are created (default 5; the worker dead-letters by itself first, this catches crash loops).
	MaxReceive int
}

func sqlitePath(ref, prefix string) (string, error) {
	p := strings.TrimPrefix(ref, prefix)
	if p == "" {
		return "", fmt.Errorf("%q: a file path is required after %q", ref, prefix)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return "", fmt.Errorf("%q: creating the directory: %w", ref, err)
	}
	return p, nil
}

// OpenStore opens the store ref names.
func OpenStore(ctx context.Context, ref string, o Options) (store.Store, error) {
	switch {
	case strings.HasPrefix(ref, "sqlite:"):
		p, err := sqlitePath(ref, "sqlite:")
		if err != nil {
			return nil, fmt.Errorf("store %w", err)
		}
		return sqlitestore.Open(ctx, p)
	case strings.HasPrefix(ref, "dynamodb://"):
		return openDynamo(ctx, strings.TrimPrefix(ref, "dynamodb://"), o)
	}
	return nil, fmt.Errorf("store %q: want sqlite:PATH or dynamodb://TABLE", ref)
}

// OpenQueue opens the queue ref names.
func OpenQueue(ctx context.Context, ref string, o Options) (queue.Queue, error) {
	switch {
	case strings.HasPrefix(ref, "sqlite:"):
		p, err := sqlitePath(ref, "sqlite:")
		if err != nil {
			return nil, fmt.Errorf("queue %w", err)
		}
		return sqlitequeue.Open(ctx, p, sqlitequeue.Options{Visibility: o.Visibility})
	case strings.HasPrefix(ref, "sqs://"):
		u := strings.TrimPrefix(ref, "sqs://")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			u = "https://" + u
		}
		return openSQS(ctx, u, o)
	}
	return nil, fmt.Errorf("queue %q: want sqlite:PATH or sqs://QUEUE-URL", ref)
}
