package controlplane_test

import (
	"context"
	"encoding/json"
	"path/filepath"
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

// openBrokerStore opens a fresh SQLite broker store, closed when the test
// ends.
func openBrokerStore(t *testing.T, ctx context.Context) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// putSpecYAML stores yamlText as the spec of instance i-<name>, in the
// canonical JSON the broker writes, over revision prev.
func putSpecYAML(t *testing.T, ctx context.Context, st *sqlitestore.Store, name, yamlText string, prev int64) int64 {
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

// runOnBrokerStore runs a control plane following st (polled every poll,
// with the given hold-off) until ctx ends; the test waits for it to stop.
func runOnBrokerStore(t *testing.T, ctx context.Context, st *sqlitestore.Store, poll, holdOff time.Duration) *controlplane.ControlPlane {
	t.Helper()
	cp, err := controlplane.New(ctx, controlplane.Config{
		Source:   source.NewFeed(st, source.Options{PollInterval: poll}),
		Reporter: st,
		Registry: prometheus.NewRegistry(),
		HoldOff:  holdOff,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cp.Run(ctx) }()
	t.Cleanup(wg.Wait)
	return cp
}

// waitPublication waits up to within for the control plane's report on
// name at revision rev.
func waitPublication(t *testing.T, ctx context.Context, st *sqlitestore.Store, name string, rev int64, within time.Duration) store.Publication {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p, err := st.GetPublication(ctx, name); err == nil && p.Revision == rev {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no report for %s at revision %d", name, rev)
	return store.Publication{}
}
