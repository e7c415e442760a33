package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// TestBrokerSourceReportsBack runs the control plane on the broker's real
// SQLite route store: it compiles what the store holds, and reports per
// spec and revision whether it was published or why not.
func TestBrokerSourceReportsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openBrokerStore(t, ctx)
	put := func(name, yamlText string, prev int64) int64 {
		t.Helper()
		return putSpecYAML(t, ctx, st, name, yamlText, prev)
	}
	ra := put("a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
	rb := put("b", strings.Replace(specYAML("b", "b.example.com", "10.0.0.2:80"), "upstream: api", "upstream: nope", 1), 0)

	cp := runOnBrokerStore(t, ctx, st, 50*time.Millisecond, 10*time.Millisecond)
	defer cancel()

	waitPub := func(name string, rev int64) store.Publication {
		t.Helper()
		return waitPublication(t, ctx, st, name, rev, 15*time.Second)
	}
	if p := waitPub("a", ra); p.Error != "" {
		t.Errorf("a reported as failed: %s", p.Error)
	}
	if p := waitPub("b", rb); !strings.Contains(p.Error, "spec.routes[0].upstream") {
		t.Errorf("b's report = %q, want the unknown upstream named", p.Error)
	}
	ra2 := put("a", specYAML("a", "a.example.com", "10.0.0.9:80"), ra)
	if p := waitPub("a", ra2); p.Error != "" {
		t.Errorf("a's update reported as failed: %s", p.Error)
	}

	// A deletion is confirmed once a version without the spec is live.
	rc := put("c", specYAML("c", "c.example.com", "10.0.0.3:80"), 0)
	waitPub("c", rc)
	rdel, err := st.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i-a", Deleted: true}, ra2)
	if err != nil {
		t.Fatal(err)
	}
	if p := waitPub("a", rdel); p.Error != "" {
		t.Errorf("a's deletion reported as failed: %s", p.Error)
	}
	for _, g := range cp.Publisher().Good().Published() {
		if g.Name == "a" {
			t.Fatal("the deleted spec is still in the published version")
		}
	}
}
