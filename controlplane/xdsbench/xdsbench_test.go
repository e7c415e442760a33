package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/controlplane"
	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// TestSmallFleet is the small version of `make bench-xds` that runs in
// `make test`: a control plane (in-process here) with 40 specs, 60 nodes
// in 3 groups, two changes; every node must receive and ACK every change,
// and only the types a change touched are sent.
func TestSmallFleet(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			rep := smallFleet(t, Config{Specs: 40, Nodes: 60, Groups: 3, PerConn: 7, Changes: 2, Timeout: time.Minute, Delta: delta})
			// The bench changes endpoints: EDS (and the route table, which carries
			// the revision) is sent; LDS and CDS, byte-identical, are not.
			if b := rep.BytesPerChange; b["EDS"] <= 0 || b["LDS"] != 0 || b["CDS"] != 0 {
				t.Errorf("bytes per change = %v, want EDS only (and routes), no LDS or CDS", b)
			}
			// The fleet connected in two halves, the first ending on a
			// whole connection (28 = 4 × 7), read in between.
			if rep.HalfNodes != 28 {
				t.Errorf("first half: %d nodes, want 28", rep.HalfNodes)
			}
		})
	}
}

// TestScopedFleetSendsOneSpecsRoutes is `make bench-xds`'s scoped layout
// in small: specs with exact hosts, every group served scoped routes, the
// nodes following their listeners to SRDS and from the scopes to the
// route tables. A change of one spec must send each node that spec's
// route table only: well under a quarter of the route bytes a node got
// initially (about 14 tables here), and no scope.
func TestScopedFleetSendsOneSpecsRoutes(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			rep := smallFleet(t, Config{Specs: 40, Nodes: 30, Groups: 3, PerConn: 7, Changes: 2, Timeout: time.Minute, Delta: delta, Scoped: true})
			t.Logf("route bytes per node: %.0f initially, %.0f per change; bytes per change %v", rep.RDSBytesPerNodeInitial, rep.RDSBytesPerNodeChange, rep.BytesPerChange)
			if rep.RDSBytesPerNodeInitial <= 0 || rep.RDSBytesPerNodeChange <= 0 {
				t.Fatalf("no routes received: %+v", rep)
			}
			if rep.RDSBytesPerNodeChange*4 > rep.RDSBytesPerNodeInitial {
				t.Errorf("a one-spec change sent %.0f route bytes per node, the node's whole route set is %.0f: more than the changed spec's table", rep.RDSBytesPerNodeChange, rep.RDSBytesPerNodeInitial)
			}
			if b := rep.BytesPerChange; b["SRDS"] != 0 || b["LDS"] != 0 || b["CDS"] != 0 {
				t.Errorf("bytes per change = %v, want no scopes, listeners or clusters", b)
			}
		})
	}
}

// TestSmallFleetTLS is `xdsbench -tls` in small: the control plane serves
// xDS with mutual TLS from the throwaway PKI, each node dials with its
// group's client certificate (which the control plane binds to
// node.cluster), and every node receives and ACKs every change. A node
// presenting another group's certificate is refused.
func TestSmallFleetTLS(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			rep := smallFleet(t, Config{Specs: 40, Nodes: 12, Groups: 3, PerConn: 1, Changes: 2, Timeout: time.Minute, Delta: delta, TLS: true})
			if rep.Transport != "tls" {
				t.Errorf("transport = %q, want tls", rep.Transport)
			}
		})
	}
	t.Run("wrong group's certificate", func(t *testing.T) {
		pki, err := mintPKI(t.TempDir(), 2)
		if err != nil {
			t.Fatal(err)
		}
		// Every group dials with group-00's certificate: group-01's nodes
		// must be refused.
		for g := range pki.creds {
			pki.creds[g] = pki.creds[benchspec.Group(0, 2)]
		}
		_, err = smallFleetErr(t, Config{Specs: 10, Nodes: 2, Groups: 2, PerConn: 1, Changes: 1, Timeout: 20 * time.Second, TLS: true}, pki)
		if err == nil || !strings.Contains(err.Error(), "group") {
			t.Fatalf("a node dialling with another group's certificate: err = %v, want a refusal naming the group", err)
		}
		t.Logf("refused as it should be: %v", err)
	})
	t.Run("streams per connection", func(t *testing.T) {
		pki, err := mintPKI(t.TempDir(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := startFleet(context.Background(), "127.0.0.1:1", 10, 4, 2, 2, false, pki.creds); err == nil {
			t.Fatal("mutual TLS with 2 streams per connection: no error")
		}
	})
}

// smallFleet runs cfg against an in-process control plane (with cfg.TLS,
// over mutual TLS with a fresh throwaway PKI).
func smallFleet(t *testing.T, cfg Config) *Report {
	var pki *benchPKI
	if cfg.TLS {
		var err error
		if pki, err = mintPKI(t.TempDir(), cfg.Groups); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := smallFleetErr(t, cfg, pki)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != cfg.Changes || rep.Latencies.Max == "-" {
		t.Fatalf("report = %+v", rep)
	}
	if rep.CompileSeconds <= 0 {
		t.Errorf("compile time not read from /metrics: %+v", rep)
	}
	return rep
}

// smallFleetErr runs cfg against an in-process control plane, over mutual
// TLS with pki when set.
func smallFleetErr(t *testing.T, cfg Config, pki *benchPKI) (*Report, error) {
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
	if pki != nil {
		tg.creds = pki.creds
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cpc := controlplane.Config{Source: src, Registry: prometheus.NewRegistry(), HoldOff: 20 * time.Millisecond}
		if pki != nil {
			cpc.TLS = pki.Server
		}
		if cfg.Scoped {
			for g := 0; g < cfg.Groups; g++ {
				cpc.Compile.ScopedRouteGroups = append(cpc.Compile.ScopedRouteGroups, benchspec.Group(g, cfg.Groups))
			}
		}
		if err := controlplane.Run(ctx, cpc, l); err != nil {
			t.Errorf("control plane: %v", err)
		}
	}()
	defer wg.Wait()
	defer cancel()

	return Run(ctx, cfg, tg)
}
