package main

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// adminServer serves this process's /metrics (the registry every
// gatehouse role uses, with the Go collector) and heap profile on
// 127.0.0.1:0, as the control plane's admin port does.
func adminServer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(telemetry.NewRegistry(), promhttp.HandlerOpts{}))
	mux.Handle("GET /debug/pprof/heap", pprof.Handler("heap"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestReadMemoryClasses: the breakdown reads the runtime's memory classes
// and goroutines of the process behind /metrics: 64 MiB kept alive are
// heap objects, 200 parked goroutines are goroutines with stacks, and
// the resident set is that of the process.
func TestReadMemoryClasses(t *testing.T) {
	addr := adminServer(t)
	before, err := readMemory(addr, os.Getpid(), true)
	if err != nil {
		t.Fatal(err)
	}
	keep := make([]byte, 64<<20)
	for i := range keep {
		keep[i] = 1
	}
	stop := make(chan struct{})
	for range 200 {
		go func() { <-stop }()
	}
	defer close(stop)
	after, err := readMemory(addr, os.Getpid(), true)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(keep)
	d := after.sub(before)
	t.Logf("difference: %s", d.kib())
	if d.HeapObjects < 60<<20 {
		t.Errorf("heap objects grew by %.1f MiB with 64 MiB kept alive", d.HeapObjects/(1<<20))
	}
	if d.RSS < 60<<20 {
		t.Errorf("RSS grew by %.1f MiB with 64 MiB touched", d.RSS/(1<<20))
	}
	// (A few goroutines of the process may end meanwhile.)
	if d.Goroutines < 180 || d.Stacks < 180*2048 {
		t.Errorf("200 more goroutines read as %.0f goroutines and %.0f bytes of stacks", d.Goroutines, d.Stacks)
	}
	if after.OtherGo <= 0 || after.HeapGoal <= 0 {
		t.Errorf("other Go memory %.0f, heap goal %.0f: want both above 0", after.OtherGo, after.HeapGoal)
	}
}

// TestPeakRSSRestarts: after resetPeakRSS, VmHWM is the peak since then,
// not a peak before it.
func TestPeakRSSRestarts(t *testing.T) {
	pid := os.Getpid()
	big := make([]byte, 128<<20)
	for i := range big {
		big[i] = 1
	}
	runtime.KeepAlive(big)
	big = nil
	high := statusKiB(pid, "VmHWM")
	debug.FreeOSMemory() // this test's own process, to lower its RSS
	if err := resetPeakRSS(pid); err != nil {
		t.Skipf("the high-water mark cannot be reset here: %v", err)
	}
	if now := statusKiB(pid, "VmHWM"); now > high-64<<10 {
		t.Fatalf("VmHWM %.0f kB after the reset, %.0f kB before it with 128 MiB freed since: not reset", now, high)
	}
}
