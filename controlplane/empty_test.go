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

// TestDeliberateEmptyStorePublishes: on the broker's store, a glitch (the
// only spec's new revision does not parse) never replaces the good
// config, while deleting every spec on purpose (tombstones) publishes the
// empty configuration and confirms the deletion (issue 12 point 7).
func TestDeliberateEmptyStorePublishes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var v any
	if err := yamlv3.Unmarshal([]byte(specYAML("a", "a.example.com", "10.0.0.1:80")), &v); err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(v)
	ra, err := st.PutSpec(ctx, store.StoredSpec{Name: "a", InstanceID: "i-a", JSON: good}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: 20 * time.Millisecond}),
		Reporter: st,
		Registry: prometheus.NewRegistry(),
		HoldOff:  5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	defer wg.Wait()
	defer cancel()
	waitPub := func(rev int64) store.Publication {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if p, err := st.GetPublication(ctx, "a"); err == nil && p.Revision == rev {
				return p
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no report for revision %d", rev)
		return store.Publication{}
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
