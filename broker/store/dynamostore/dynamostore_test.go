package dynamostore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
		Credentials:  testenv.AWSCredentials(),
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

// TestCursorOnlyPassesSettledRevisions: revisions are allocated before
// their write lands, so the change-feed cursor moves only past revisions
// allocated more than SettleWindow ago; recent writes come again, none is
// skipped, and a lost allocation never blocks the cursor for good.
func TestCursorOnlyPassesSettledRevisions(t *testing.T) {
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
	// Fresh writes are returned, but the cursor does not pass them.
	next, ch, err := s.Changes(ctx, 0)
	if err != nil || next != 0 || len(ch) != 2 {
		t.Fatalf("Changes(0) right after the writes = cursor %d, %d changes, %v; want cursor 0 and both", next, len(ch), err)
	}
	if rev, specs, err := s.Snapshot(ctx); err != nil || rev != 0 || len(specs) != 2 {
		t.Fatalf("Snapshot right after the writes = %d, %d specs, %v; want revision 0 and both", rev, len(specs), err)
	}
	// Seen a settle window later, everything up to r3 has landed or never will.
	later := func() time.Time { return time.Now().Add(dynamostore.SettleWindow + time.Second) }
	s.SetClock(later)
	if next, _, err = s.Changes(ctx, 0); err != nil || next != r3 {
		t.Fatalf("Changes(0) a settle window later: cursor %d, %v; want %d", next, err, r3)
	}
	// A new write (allocated "now" on the shifted clock) holds the cursor at r3.
	r4, err := s.PutSpec(ctx, store.StoredSpec{Name: "c", JSON: []byte(`{}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	next, ch, err = s.Changes(ctx, r3)
	if err != nil || next != r3 || len(ch) != 1 || ch[0].Revision != r4 {
		t.Fatalf("Changes(%d) after a fresh write = cursor %d, %+v, %v; want the write and cursor %d", r3, next, ch, err, r3)
	}
	// A writer that stalls between allocating and writing gives up
	// rather than land a write the cursor may already have passed.
	calls := 0
	s.SetClock(func() time.Time {
		calls++
		if calls == 1 { // the allocation
			return time.Now()
		}
		return time.Now().Add(dynamostore.SettleWindow)
	})
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "d", JSON: []byte(`{}`)}, 0); err == nil || !strings.Contains(err.Error(), "not writing it") {
		t.Fatalf("a stalled writer: err = %v", err)
	}
	if _, err := s.GetSpec(ctx, "d"); err == nil {
		t.Fatal("the stalled write landed")
	}
}
