package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestHoldOffBatchesABurst: five revisions delivered back to back are one
// rebuild, of the newest.
func TestHoldOffBatchesABurst(t *testing.T) {
	src := source.Func(func(ctx context.Context, fn func(source.Revision)) error {
		for i := 1; i <= 5; i++ {
			fn(source.Revision{ID: fmt.Sprintf("r%d", i), Specs: []source.Spec{endpointSpec(i)}})
		}
		<-ctx.Done()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := New(ctx, Config{Source: src, Registry: prometheus.NewRegistry(), HoldOff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = cp.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for cp.State().Revision == "" {
		if time.Now().After(deadline) {
			t.Fatal("nothing compiled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := cp.State().Revision; got != "r5" {
		t.Errorf("compiled revision %s, want the newest, r5", got)
	}
	if n := testutil.CollectAndCount(cp.metrics.compileSeconds); n != 1 {
		t.Fatalf("histogram series = %d", n)
	}
	var count uint64
	if m, err := cp.cfg.Registry.Gather(); err == nil {
		for _, mf := range m {
			if strings.HasSuffix(mf.GetName(), "compile_seconds") {
				count = mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
	}
	if count != 1 {
		t.Errorf("%d rebuilds for a burst of 5 revisions, want 1", count)
	}
	cancel()
	<-done
}

// endpointSpec is a.yaml: one spec, one route, its upstream at
// 10.0.0.n:80 (so each n is a different revision of the same spec).
func endpointSpec(n int) source.Spec {
	return source.Spec{Origin: "a.yaml", Data: []byte(fmt.Sprintf(`apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: a, team: t}
spec:
  hosts: [a.example.com]
  upstreams: [{name: api, endpoints: ["10.0.0.%d:80"]}]
  routes: [{name: r, match: {pathPrefix: /}, upstream: api}]
`, n))}
}
