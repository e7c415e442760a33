package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// TestDeliberateEmptyStorePublishes: on the broker's store, a glitch (the
// only spec's new revision does not parse) never replaces the good
// config, while deleting every spec on purpose (tombstones) publishes the
// empty configuration and confirms the deletion.
func TestDeliberateEmptyStorePublishes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openBrokerStore(t, ctx)
	ra := putSpecYAML(t, ctx, st, "a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
	cp := runOnBrokerStore(t, ctx, st, 20*time.Millisecond, 5*time.Millisecond)
	defer cancel()
	waitPub := func(rev int64) store.Publication {
		t.Helper()
		return waitPublication(t, ctx, st, "a", rev, 10*time.Second)
	}
	if p := waitPub(ra); p.Error != "" {
		t.Fatalf("a: %s", p.Error)
	}

	// Glitch: the only spec no longer parses. Refused; the good config stays.
	rb, err := st.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i-a", JSON: []byte(`{"apiVersion":"gatehouse/v1","kind":"EdgeRoute","metadata":{"name":"a"},"spec":{"hosts":7}}`)}, ra)
	if err != nil {
		t.Fatal(err)
	}
	if p := waitPub(rb); p.Error == "" {
		t.Fatal("a spec that does not parse was reported published")
	}
	if g := cp.Publisher().Good(); g == nil || len(g.Published()) != 1 || g.Published()[0].Revision != ra {
		t.Fatalf("a parse failure replaced the good config: %+v", g)
	}
	if st := cp.State(); !strings.Contains(st.Refused, "no spec compiled") {
		t.Fatalf("state after the glitch: refused %q", st.Refused)
	}

	// Deliberate: the spec is deleted. The empty config is published and
	// the deletion confirmed.
	rdel, err := st.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i-a", Deleted: true}, rb)
	if err != nil {
		t.Fatal(err)
	}
	if p := waitPub(rdel); p.Error != "" {
		t.Fatalf("the deletion was reported failed: %s", p.Error)
	}
	if g := cp.Publisher().Good(); g == nil || len(g.Published()) != 0 {
		t.Fatalf("after deleting every spec the served config is %+v, want the empty one", g)
	}
	if st := cp.State(); st.Refused != "" {
		t.Fatalf("the deliberate empty revision was refused: %s", st.Refused)
	}
}
