package dynamostore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

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

// TestCursorWaitsForAllocatedRevisions: a revision allocated but not yet
// written (a writer between its two calls, or one that lost a race) holds
// the change-feed cursor back, so the late write is not skipped; a lost
// allocation is given up after AbandonAfter.
func TestCursorWaitsForAllocatedRevisions(t *testing.T) {
	d := testenv.StartDynalite(t)
	db := client(d.Endpoint)
	ctx := context.Background()
	s := dynamostore.New(db, fmt.Sprintf("gatehouse-%d", tables.Add(1)))
	if err := s.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	r1, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A lost race allocates a revision that is never written.
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{}`)}, 0); err == nil {
		t.Fatal("a stale write won")
	}
	r3, err := s.PutSpec(ctx, store.StoredSpec{Name: "b", JSON: []byte(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r3 != r1+2 {
		t.Fatalf("revisions %d, %d: want one allocation lost in between", r1, r3)
	}
	// Fully written up to the counter: the cursor advances.
	next, ch, err := s.Changes(ctx, 0)
	if err != nil || next != r3 || len(ch) != 2 {
		t.Fatalf("Changes(0) = %d, %d changes, %v; want cursor %d", next, len(ch), err, r3)
	}
	// Allocate without writing (a writer mid-way): the cursor holds.
	if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(tablesName(s)), Key: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "meta"}, "sk": &types.AttributeValueMemberS{Value: "revision"}},
		UpdateExpression:          aws.String("ADD rev :one SET #at = :now"),
		ExpressionAttributeNames:  map[string]string{"#at": "at"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}, ":now": &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().UnixNano())}},
	}); err != nil {
		t.Fatal(err)
	}
	next, _, err = s.Changes(ctx, 1)
	if err != nil || next != 1 {
		t.Fatalf("Changes(1) with an outstanding allocation: cursor %d, %v; want it held at 1", next, err)
	}
	if rev, _, err := s.Snapshot(ctx); err != nil || rev != 0 {
		t.Fatalf("Snapshot with an outstanding allocation: revision %d, %v; want 0", rev, err)
	}
	// The same allocation, as seen AbandonAfter later, is given up.
	s.SetClock(func() time.Time { return time.Now().Add(dynamostore.AbandonAfter + time.Second) })
	if next, _, err = s.Changes(ctx, 1); err != nil || next != r3 {
		t.Fatalf("Changes(1) after AbandonAfter: cursor %d, %v; want %d", next, err, r3)
	}
}

func tablesName(s *dynamostore.Store) string { return s.Table() }
