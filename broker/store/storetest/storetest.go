// Package storetest is the conformance suite every store backend passes
// (run from each backend's tests against a real database or emulator). It
// is imported by tests only and must not import any backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// Run runs the suite; open returns a fresh, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("InstanceConditionalWrites", func(t *testing.T) { instanceCAS(t, open(t)) })
	t.Run("Bindings", func(t *testing.T) { bindings(t, open(t)) })
	t.Run("ExpiredKeys", func(t *testing.T) { expiredKeys(t, open(t)) })
	t.Run("Outbox", func(t *testing.T) { outbox(t, open(t)) })
	t.Run("Names", func(t *testing.T) { names(t, open(t)) })
	t.Run("SpecRevisionsAndFeed", func(t *testing.T) { specs(t, open(t)) })
	t.Run("ConcurrentSpecWritersOneWins", func(t *testing.T) { concurrentSpec(t, open(t)) })
	t.Run("Publications", func(t *testing.T) { publications(t, open(t)) })
}

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func instanceCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetInstance(ctx, "i1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetInstance of a missing instance: err = %v, want ErrNotFound", err)
	}
	in := store.Instance{ID: "i1", ServiceID: "svc", PlanID: "plan", SpecName: "petstore", ParamsHash: "h1",
		Op: store.Operation{ID: "op1", Kind: store.OpProvision, State: store.StateInProgress, OriginatingIdentity: "cloudfoundry eyJ1c2VyX2lkIjoiYSJ9", Payload: []byte(`{"a":1}`), CreatedAt: now(), UpdatedAt: now()}}
	v, err := s.PutInstance(ctx, in)
	if err != nil || v != 1 {
		t.Fatalf("first PutInstance = %d, %v; want 1, nil", v, err)
	}
	if _, err := s.PutInstance(ctx, in); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create of the same id: err = %v, want ErrConflict", err)
	}
	got, err := s.GetInstance(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	in.Version = 1
	if d := cmp.Diff(in, got); d != "" {
		t.Fatalf("read back (-want +got):\n%s", d)
	}
	got.Op.State = store.StateSucceeded
	if v, err = s.PutInstance(ctx, got); err != nil || v != 2 {
		t.Fatalf("update at version 1 = %d, %v; want 2, nil", v, err)
	}
	stale := got // still Version 1
	if _, err := s.PutInstance(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update at a stale version: err = %v, want ErrConflict", err)
	}
}

func bindings(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, id := range []string{"b2", "b1"} {
		b := store.Binding{InstanceID: "i1", ID: id, Provider: "partners", KeyID: id, SHA256: fmt.Sprintf("%064d", 1), Labels: map[string]string{"plan": "gold"},
			Op: store.Operation{ID: "op-" + id, Kind: store.OpBind, State: store.StateInProgress, CreatedAt: now(), UpdatedAt: now()}}
		if _, err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutBinding(ctx, store.Binding{InstanceID: "other", ID: "b9"}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListBindings(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "b1" || list[1].ID != "b2" || list[0].Version != 1 {
		t.Fatalf("ListBindings(i1) = %+v, want b1, b2 at version 1", list)
	}
	b := list[0]
	b.Op.State = store.StateSucceeded
	if _, err := s.PutBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBinding(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale binding write: err = %v, want ErrConflict", err)
	}
	if _, err := s.GetBinding(ctx, "i1", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBinding of a missing binding: err = %v, want ErrNotFound", err)
	}
	got, err := s.GetBinding(ctx, "i1", "b1")
	if err != nil || got.Op.State != store.StateSucceeded || got.Labels["plan"] != "gold" {
		t.Fatalf("GetBinding = %+v, %v", got, err)
	}
}

// expiredKeys: only bindings still holding a sealed key past its expiry
// are listed, with their version, and wiping one takes it off the list.
func expiredKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := now()
	for i, until := range []time.Duration{-time.Hour, -time.Minute, time.Hour, 0} {
		b := store.Binding{InstanceID: "i1", ID: fmt.Sprintf("k%d", i), SealedKey: []byte("sealed"), SealedUntil: t0.Add(until),
			Op: store.Operation{ID: "op", Kind: store.OpBind, State: store.StateSucceeded, CreatedAt: t0}}
		if until == 0 {
			b.SealedKey, b.SealedUntil = nil, time.Time{} // nothing pending
		}
		if _, err := s.PutBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ExpiredKeys(ctx, t0, 10)
	if err != nil || len(got) != 2 || got[0].ID != "k0" || got[1].ID != "k1" || got[0].Version != 1 {
		t.Fatalf("ExpiredKeys = %+v, %v; want k0, k1 at version 1", got, err)
	}
	if one, _ := s.ExpiredKeys(ctx, t0, 1); len(one) != 1 {
		t.Fatalf("limit 1: %d bindings", len(one))
	}
	b := got[0]
	b.SealedKey, b.SealedUntil = nil, time.Time{}
	if _, err := s.PutBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ExpiredKeys(ctx, t0.Add(2*time.Hour), 10); len(got) != 2 || got[0].ID != "k1" || got[1].ID != "k2" {
		t.Fatalf("after wiping k0, two hours on: %+v", got)
	}
}

func outbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	old := now().Add(-time.Minute)
	in := store.Instance{ID: "i1", Op: store.Operation{ID: "op1", Kind: store.OpProvision, State: store.StateInProgress, CreatedAt: old}}
	if _, err := s.PutInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	b := store.Binding{InstanceID: "i1", ID: "b1", Op: store.Operation{ID: "op2", Kind: store.OpBind, State: store.StateInProgress, CreatedAt: old.Add(time.Second)}}
	if _, err := s.PutBinding(ctx, b); err != nil {
		t.Fatal(err)
	}
	fresh := store.Instance{ID: "i2", Op: store.Operation{ID: "op3", Kind: store.OpProvision, State: store.StateInProgress, CreatedAt: now().Add(time.Hour)}}
	if _, err := s.PutInstance(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	items, err := s.PendingOutbox(ctx, now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, it := range items {
		ops = append(ops, it.OpID)
	}
	if d := cmp.Diff([]string{"op1", "op2"}, ops); d != "" {
		t.Fatalf("PendingOutbox op ids (-want +got):\n%s", d)
	}
	if err := s.MarkEnqueued(ctx, "i1", "", "op1"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkEnqueued(ctx, "i1", "b1", "not-the-current-op"); err != nil {
		t.Fatal(err)
	}
	items, err = s.PendingOutbox(ctx, now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].OpID != "op2" || items[0].BindingID != "b1" {
		t.Fatalf("after MarkEnqueued(op1): PendingOutbox = %+v, want only op2 of binding b1", items)
	}
	got, err := s.GetInstance(ctx, "i1")
	if err != nil || !got.Op.Enqueued || got.Version != 2 {
		t.Fatalf("instance after MarkEnqueued = %+v, %v; want Enqueued at version 2", got, err)
	}
	// Overdue: in progress, enqueued or not; finished operations are not.
	over, err := s.Overdue(ctx, now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	ops = nil
	for _, it := range over {
		ops = append(ops, it.OpID)
	}
	if d := cmp.Diff([]string{"op1", "op2"}, ops); d != "" {
		t.Fatalf("Overdue op ids (-want +got):\n%s", d)
	}
	got.Op.State = store.StateSucceeded
	if _, err := s.PutInstance(ctx, got); err != nil {
		t.Fatal(err)
	}
	if over, err = s.Overdue(ctx, now(), 10); err != nil || len(over) != 1 || over[0].OpID != "op2" {
		t.Fatalf("Overdue after op1 finished = %+v, %v; want only op2", over, err)
	}
}

func names(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.ClaimName(ctx, "petstore", "i1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimName(ctx, "petstore", "i1"); err != nil {
		t.Fatalf("re-claim by the holder: %v", err)
	}
	if err := s.ClaimName(ctx, "petstore", "i2"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim by another instance: err = %v, want ErrConflict", err)
	}
	if err := s.ReleaseName(ctx, "petstore", "i2"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimName(ctx, "petstore", "i2"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("release by a non-holder must not free the name: err = %v", err)
	}
	if err := s.ReleaseName(ctx, "petstore", "i1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimName(ctx, "petstore", "i2"); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

func specs(t *testing.T, s store.Store) {
	ctx := context.Background()
	r0, snap, err := s.Snapshot(ctx)
	if err != nil || len(snap) != 0 {
		t.Fatalf("empty Snapshot = %d, %v, %v", r0, snap, err)
	}
	r1, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i1", JSON: []byte(`{"n":"a"}`), WrittenBy: "op1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.PutSpec(ctx, store.StoredSpec{Name: "b", InstanceID: "i2", JSON: []byte(`{"n":"b"}`), WrittenBy: "op2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !(r1 > r0 && r2 > r1) {
		t.Fatalf("revisions %d, %d, %d do not grow", r0, r1, r2)
	}
	if _, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{}`)}, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutSpec with a stale revision: err = %v, want ErrConflict", err)
	}
	r3, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i1", Deleted: true, WrittenBy: "op3"}, r1)
	if err != nil || r3 <= r2 {
		t.Fatalf("delete a = %d, %v; want a revision above %d", r3, err, r2)
	}
	got, err := s.GetSpec(ctx, "a")
	if err != nil || !got.Deleted || got.Revision != r3 || got.WrittenBy != "op3" || got.JSON != nil {
		t.Fatalf("GetSpec(a) after delete = %+v, %v", got, err)
	}
	// A backend may hold its cursors back for writes that may still be
	// landing (DynamoDB); it may never run ahead of what it returned.
	rev, snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev > r3 || len(snap) != 1 || snap[0].Name != "b" || string(snap[0].JSON) != `{"n":"b"}` || snap[0].Revision != r2 {
		t.Fatalf("Snapshot = %d, %+v; want revision <= %d and only b at %d", rev, snap, r3, r2)
	}
	next, ch, err := s.Changes(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 2 || ch[0].Name != "b" || ch[1].Name != "a" || !ch[1].Deleted || next < r1 || next > r3 {
		t.Fatalf("Changes(%d) = %d, %+v; want b then deleted a, cursor in [%d, %d]", r1, next, ch, r1, r3)
	}
	next2, ch, err := s.Changes(ctx, r3)
	if err != nil || len(ch) != 0 || next2 != r3 {
		t.Fatalf("Changes(%d) = %d, %+v, %v; want nothing new", r3, next2, ch, err)
	}
	if _, err := s.GetSpec(ctx, "zzz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSpec of a missing spec: err = %v", err)
	}
}

func concurrentSpec(t *testing.T, s store.Store) {
	ctx := context.Background()
	r1, err := s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: []byte(`{"v":0}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.PutSpec(ctx, store.StoredSpec{Name: "a", JSON: fmt.Appendf(nil, `{"v":%d}`, i+1), WrittenBy: fmt.Sprint(i)}, r1)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("a losing writer got %v, want ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won the same revision, want exactly 1 (errors: %v)", wins, errs)
	}
}

func publications(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetPublication(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetPublication before any report: err = %v", err)
	}
	if err := s.ReportPublished(ctx, "a", 5, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportPublished(ctx, "a", 3, errors.New("older")); err != nil {
		t.Fatal(err)
	}
	p, err := s.GetPublication(ctx, "a")
	if err != nil || p.Revision != 5 || p.Error != "" {
		t.Fatalf("an older report replaced a newer one: %+v, %v", p, err)
	}
	if err := s.ReportPublished(ctx, "a", 7, errors.New(`spec.routes[0]: cluster "x" unknown`)); err != nil {
		t.Fatal(err)
	}
	p, err = s.GetPublication(ctx, "a")
	if err != nil || p.Revision != 7 || p.Error != `spec.routes[0]: cluster "x" unknown` || p.ReportedAt.IsZero() {
		t.Fatalf("GetPublication = %+v, %v", p, err)
	}
	if p.Note != "" {
		t.Fatalf("a report without a note has note %q", p.Note)
	}

	// A note rides with a published revision and goes with the next report.
	const note = "published; no node of group edge-b connected"
	if err := s.ReportPublishedNote(ctx, "a", 8, note); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportPublishedNote(ctx, "a", 6, "older"); err != nil {
		t.Fatal(err)
	}
	p, err = s.GetPublication(ctx, "a")
	if err != nil || p.Revision != 8 || p.Error != "" || p.Note != note {
		t.Fatalf("GetPublication after a note = %+v, %v; want revision 8, no error, note %q", p, err, note)
	}
	if err := s.ReportPublished(ctx, "a", 8, nil); err != nil {
		t.Fatal(err)
	}
	p, err = s.GetPublication(ctx, "a")
	if err != nil || p.Revision != 8 || p.Error != "" || p.Note != "" {
		t.Fatalf("GetPublication after a report without a note = %+v, %v; want the note gone", p, err)
	}
}
