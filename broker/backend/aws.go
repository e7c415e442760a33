package backend

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/queue/sqsqueue"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/dynamostore"
)

// AWSConfig loads the standard aws-sdk-go-v2 configuration chain
// (environment, shared files, IMDS) with the region override.
func AWSConfig(ctx context.Context, o Options) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if o.AWSRegion != "" {
		opts = append(opts, config.WithRegion(o.AWSRegion))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return cfg, nil
}

func openDynamo(ctx context.Context, table string, o Options) (store.Store, error) {
	if table == "" || strings.Contains(table, "/") {
		return nil, fmt.Errorf("store dynamodb://%s: want dynamodb://TABLE", table)
	}
	cfg, err := AWSConfig(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("store dynamodb://%s: %w", table, err)
	}
	c := dynamodb.NewFromConfig(cfg, func(d *dynamodb.Options) {
		if e := firstOf(o.DynamoDBEndpoint, o.AWSEndpoint); e != "" {
			d.BaseEndpoint = aws.String(e)
		}
	})
	s := dynamostore.New(c, table)
	if o.CreateResources {
		if err := s.EnsureTable(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func openSQS(ctx context.Context, url string, o Options) (queue.Queue, error) {
	cfg, err := AWSConfig(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("queue sqs://%s: %w", url, err)
	}
	endpoint := firstOf(o.SQSEndpoint, o.AWSEndpoint)
	if u, err := neturl.Parse(url); endpoint == "" && err == nil && u.Scheme == "http" {
		endpoint = "http://" + u.Host
	}
	c := sqs.NewFromConfig(cfg, func(s *sqs.Options) {
		if endpoint != "" {
			s.BaseEndpoint = aws.String(endpoint)
		}
	})
	dlq := o.DeadLetterURL
	if dlq == "" {
		dlq = url + "-dlq"
	}
	if o.CreateResources {
		name := url[strings.LastIndex(url, "/")+1:]
		if url, dlq, err = sqsqueue.EnsureQueues(ctx, c, name, maxReceive(o.MaxReceive)); err != nil {
			return nil, err
		}
	}
	return sqsqueue.New(c, url, dlq, sqsqueue.Options{Visibility: o.Visibility}), nil
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func maxReceive(n int) int {
	if n <= 0 {
		return 5
	}
	return n
}
