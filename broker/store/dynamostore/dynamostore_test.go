package dynamostore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/dynamostore"
	"github.com/gatehouse-edge/gatehouse/broker/store/storetest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

var tables atomic.Int64

func client(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	})
}

// TestConformance runs the store suite against dynalite 4.0.0 through the
// real AWS SDK v2 client: conditional writes, the revision counter, the
// change feed and publications.
func TestConformance(t *testing.T) {
	d := testenv.StartDynalite(t)
	db := client(d.Endpoint)
	storetest.Run(t, func(t *testing.T) store.Store {
		s := dynamostore.New(db, fmt.Sprintf("gatehouse-%d", tables.Add(1)))
		if err := s.EnsureTable(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}
