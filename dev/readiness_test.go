package dev

import (
	"context"
	"testing"
	"time"
)

// TestReadinessRoleReadyBeforeTheNextIsAdded: a role that serves before
// the next one is even added (the broker up before the sidecars start)
// neither ends the wait early nor closes the channel twice.
func TestReadinessRoleReadyBeforeTheNextIsAdded(t *testing.T) {
	var r readiness
	first := r.add()
	first() // ready before the second role is added
	second := r.add()
	r.seal()
	ctx := context.Background()
	if err := r.wait(ctx, 50*time.Millisecond); err == nil {
		t.Fatal("wait returned with a role still pending")
	}
	second()
	second() // a role reporting twice counts once
	if err := r.wait(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestReadinessNeedsSeal: every role ready but more may still be added:
// not done until sealed.
func TestReadinessNeedsSeal(t *testing.T) {
	var r readiness
	r.add()()
	if err := r.wait(context.Background(), 50*time.Millisecond); err == nil {
		t.Fatal("done before sealed")
	}
	r.seal()
	if err := r.wait(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
