package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestSmallFleet is the small version of `make bench-xds` that runs in
// `make test`: a control plane (in-process here) with 40 specs, 60 nodes
// in 3 groups, two changes; every node must receive and ACK every change,
// and only the types a change touched are sent.
func TestSmallFleet(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) { smallFleet(t, delta) })
	}
}

func smallFleet(t *testing.T, delta bool) {
	cfg := Config{Specs: 40, Nodes: 60, Groups: 3, PerConn: 7, Changes: 2, Timeout: time.Minute, Delta: delta}
	dir := t.TempDir()
	if err := writeSpecs(dir, cfg); err != nil {
		t.Fatal(err)
	}
	src, err := source.NewDir(dir, source.Options{HoldOff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := controlplane.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := target{xdsAddr: l.XDS.Addr().String(), adminAddr: l.Admin.Addr().String(), specDir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := controlplane.Run(ctx, controlplane.Config{Source: src, Registry: prometheus.NewRegistry(), HoldOff: 20 * time.Millisecond}, l); err != nil {
			t.Errorf("control plane: %v", err)
		}
	}()
	defer wg.Wait()
	defer cancel()

	rep, err := Run(ctx, cfg, tg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 2 || rep.Latencies.Max == "-" {
		t.Fatalf("report = %+v", rep)
	}
	// The bench changes endpoints: EDS (and the route table, which carries
	// the revision) is sent; LDS and CDS, byte-identical, are not.
	if b := rep.BytesPerChange; b["EDS"] <= 0 || b["LDS"] != 0 || b["CDS"] != 0 {
		t.Errorf("bytes per change = %v, want EDS only (and routes), no LDS or CDS", b)
	}
	if rep.CompileSeconds <= 0 {
		t.Errorf("compile time not read from /metrics: %+v", rep)
	}
}
