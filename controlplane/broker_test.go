package controlplane_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/broker/store/sqlitestore"
	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestBrokerSourceReportsBack runs the control plane on the broker's real
// SQLite route store: it compiles what the store holds, and reports per
// spec and revision whether it was published or why not.
func TestBrokerSourceReportsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(name, yamlText string, prev int64) int64 {
		t.Helper()
		var v any
		if err := yamlv3.Unmarshal([]byte(yamlText), &v); err != nil {
			t.Fatal(err)
		}
		compact, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := st.PutSpec(ctx, store.StoredSpec{Name: name, InstanceID: "i-" + name, JSON: compact}, prev)
		if err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		return rev
	}
	ra := put("a", specYAML("a", "a.example.com", "10.0.0.1:80"), 0)
	rb := put("b", strings.Replace(specYAML("b", "b.example.com", "10.0.0.2:80"), "upstream: api", "upstream: nope", 1), 0)

	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: 50 * time.Millisecond}),
		Reporter: st,
		Registry: prometheus.NewRegistry(),
		HoldOff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	waitPub := func(name string, rev int64) store.Publication {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if p, err := st.GetPublication(ctx, name); err == nil && p.Revision == rev {
				return p
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no report for %s at revision %d", name, rev)
		return store.Publication{}
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
