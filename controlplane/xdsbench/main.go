// Command xdsbench is `make bench-xds`: it writes N EdgeRoute specs into a
// directory, starts `gatehouse controlplane` on it as a separate process,
// connects a fleet of simulated Envoy nodes from this process (one gRPC
// connection and ADS stream per node by default, as a real fleet has,
// spread over node groups), changes one spec at a time and measures how
// long until every node has received and ACKed what its group is served
// (p50, p99, max), the control plane's compile time, its CPU time per
// change (/proc/<pid>/stat utime+stime), the response bytes per change
// per type, and its memory per connected node: resident (/proc/<pid>/status
// VmRSS with the fleet connected minus before, divided by the nodes) next
// to live heap. It runs SotW and delta in turn, each against a fresh
// control plane, for each route layout (-layouts): scoped (specs with
// exact hosts, every node group served scoped routes: one route table per
// spec, which nodes find as Envoy does, from their listeners and scopes)
// and table (a wildcard host per spec: one route table per group), and
// ends with a summary block.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
)

// Config is one benchmark run.
type Config struct {
	Specs, Nodes, Groups, PerConn, Changes int
	Timeout                                time.Duration
	Delta                                  bool
	// Scoped generates specs with exact hosts only and serves every node
	// group scoped routes (--scoped-route-groups): one route table per
	// spec, one scope per host, so a spec's change re-sends its table only.
	// Unset, each group has one route table.
	Scoped bool
	// TLS serves xDS over mutual TLS (the control plane's
	// --tls-cert-file, --tls-key-file and --tls-client-ca-file, from a
	// throwaway CA minted per run) and has each node dial with its
	// group's client certificate, as production fleets do (one node group
	// per connection: -streams-per-conn 1). Unset, plaintext.
	TLS bool
	// CPUProfile, when set, is where the control plane's CPU profile of
	// the change phase is written (from its /debug/pprof/profile).
	CPUProfile     string
	ProfileSeconds int
	// HeapProfile, when set, is where the control plane's heap profile
	// is written once the fleet has converged (what the memory per node
	// is made of).
	HeapProfile string
	// AllocProfile, when set, is where the control plane's allocation
	// profile is written before the fleet connects (AllocProfile +
	// ".before") and once it has converged: `go tool pprof
	// -sample_index=alloc_space -base FILE.before FILE` is what the
	// fleet's connection and first answers allocated.
	AllocProfile string
	// Settle is how long the control plane is left alone before the
	// memory readings before the fleet and with it idle (the idle one at
	// least 2 s, for in-flight writes): what a burst left behind and
	// the control plane returns once quiet (--release-memory-after) is
	// not counted as the fleet's.
	Settle time.Duration
}

// Report is what a run measured.
type Report struct {
	Specs, Nodes, Groups int
	Protocol             string    `json:"protocol"`
	Layout               string    `json:"layout"`    // "scoped" or "table"
	Transport            string    `json:"transport"` // "plaintext" or "tls" (mutual)
	InitialConvergence   string    `json:"initial_convergence"`
	Changes              []Change  `json:"changes"`
	Latencies            Latencies `json:"latency"`
	// BytesPerChange is the response bytes the fleet received per change,
	// by type (short name), mean over the changes.
	BytesPerChange map[string]float64 `json:"bytes_per_change"`
	// RDSBytesPerNode is the route bytes one node received, initially
	// (every table it is served) and per change (mean).
	RDSBytesPerNodeInitial float64 `json:"rds_bytes_per_node_initial"`
	RDSBytesPerNodeChange  float64 `json:"rds_bytes_per_node_per_change"`
	CompileSeconds         float64 `json:"compile_seconds_mean"`
	// MemoryReleases and MemoryReleaseSeconds are the control plane's
	// returns of free heap to the OS after bursts over the whole run
	// (--release-memory-after; 0 from a build without them).
	MemoryReleases       float64 `json:"memory_releases"`
	MemoryReleaseSeconds float64 `json:"memory_release_seconds"`
	// SettleCPUMillis is the control plane's CPU time while the bench
	// waited before the idle reading (-settle, at least 2 s; the fleet
	// converged, nothing sent): what the release after the fleet's
	// connecting costs, next to a build or setting without it.
	SettleCPUMillis float64 `json:"settle_cpu_ms"`
	HeapBeforeMiB   float64 `json:"live_heap_before_mib"`
	HeapAfterMiB    float64 `json:"live_heap_after_mib"`
	HeapKiBPerNode  float64 `json:"live_heap_kib_per_node"`
	RSSBeforeMiB    float64 `json:"rss_before_mib"`
	RSSAfterMiB     float64 `json:"rss_after_mib"`
	KiBPerNode      float64 `json:"kib_per_node"`
	// MemHalf is the reading with the first HalfNodes nodes converged
	// and idle (settled as the idle one; 0 nodes: too few to split), and
	// Marginal* what each node of the second half added to RSS and to
	// the live heap (after a GC): the memory one more node costs.
	MemHalf                MemSample `json:"memory_half"`
	HeapHalfMiB            float64   `json:"live_heap_half_mib"`
	HalfNodes              int       `json:"half_nodes"`
	MarginalKiBPerNode     float64   `json:"marginal_kib_per_node"`
	MarginalHeapKiBPerNode float64   `json:"marginal_live_heap_kib_per_node"`
	// Memory is where the control plane's memory is, absolute: before
	// the fleet connects, with it converged and idle, and right after the
	// last change (no GC forced at any of these); PerNode* are the
	// differences to Before per node. PeakRSSMiB is the resident
	// high-water mark during the changes (VmHWM, reset before the first),
	// PeakKiBPerNode that minus Before's RSS, per node.
	MemBefore              MemSample `json:"memory_before"`
	MemIdle                MemSample `json:"memory_idle"`
	MemAfterChanges        MemSample `json:"memory_after_changes"`
	PerNodeIdle            MemSample `json:"memory_per_node_idle"`
	PerNodeAfterChanges    MemSample `json:"memory_per_node_after_changes"`
	PeakRSSMiB             float64   `json:"peak_rss_mib"`
	PeakKiBPerNode         float64   `json:"peak_rss_kib_per_node"`
	CPUPerChangeMillis     float64   `json:"cpu_ms_per_change"`
	FleetCPUPerChangeMs    float64   `json:"fleet_cpu_ms_per_change"`
	ControlPlaneCPUSeconds float64   `json:"control_plane_cpu_seconds_total"`
}

// Change is one spec change.
type Change struct {
	Spec string `json:"spec"`
	P50  string `json:"p50"`
	P99  string `json:"p99"`
	Max  string `json:"max"`
	// Bytes are the response bytes the fleet received, by type.
	Bytes map[string]int64 `json:"bytes"`
}

// Latencies summarize every node of every change.
type Latencies struct {
	P50, P99, Max string
}

// target is the control plane being measured.
type target struct {
	xdsAddr, adminAddr string
	pid                int // 0 when in-process (no CPU/RSS numbers)
	specDir            string
	// creds are the fleet's mutual-TLS credentials by node group; nil:
	// plaintext.
	creds map[string]credentials.TransportCredentials
}

func main() {
	var cfg Config
	var bin string
	flag.IntVar(&cfg.Specs, "specs", 1000, "EdgeRoute specs (3 routes each)")
	var protocols, layouts string
	flag.IntVar(&cfg.Nodes, "nodes", 2000, "simulated Envoy nodes (one ADS stream each)")
	flag.IntVar(&cfg.Groups, "groups", 13, "node groups")
	flag.IntVar(&cfg.PerConn, "streams-per-conn", 1, "ADS streams per gRPC connection (1: one connection per node, as a real fleet)")
	flag.IntVar(&cfg.Changes, "changes", 5, "spec changes to measure")
	flag.DurationVar(&cfg.Timeout, "timeout", 2*time.Minute, "longest wait for the fleet to converge")
	flag.StringVar(&protocols, "protocols", "sotw,delta", "xDS protocols to run in turn, each against a fresh control plane: sotw, delta")
	flag.StringVar(&layouts, "layouts", "scoped,table", "route layouts to run each protocol with: scoped (exact hosts, every group --scoped-route-groups: one route table per spec), table (a wildcard host per spec: one route table per group)")
	deltaOnly := flag.Bool("delta", false, "delta xDS only (same as -protocols delta)")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the control plane's CPU profile of the change phase to this file")
	flag.IntVar(&cfg.ProfileSeconds, "profile-seconds", 20, "length of the -cpuprofile capture")
	flag.StringVar(&cfg.AllocProfile, "allocprofile", "", "write the control plane's allocation profile before the fleet connects (FILE.before) and once it has converged (FILE)")
	flag.StringVar(&cfg.HeapProfile, "heapprofile", "", "write the control plane's heap profile, fleet converged, to this file (with -protocols naming one protocol)")
	flag.DurationVar(&cfg.Settle, "settle", 5*time.Second, "leave the control plane alone this long before the memory readings before the fleet and with it idle (at least 2s for the idle one)")
	flag.BoolVar(&cfg.TLS, "tls", false, "serve xDS over mutual TLS (a throwaway CA, the control plane's --tls-* flags, a client certificate per node group); needs -streams-per-conn 1")
	flag.StringVar(&bin, "gatehouse", "bin/gatehouse", "gatehouse binary to run the control plane with")
	flag.Parse()
	if *deltaOnly {
		protocols = "delta"
	}
	if cfg.TLS && cfg.PerConn != 1 {
		fmt.Fprintf(os.Stderr, "xdsbench: -tls: -streams-per-conn is %d, want 1 (a connection's client certificate names one node group)\n", cfg.PerConn)
		os.Exit(2)
	}
	var reps []*Report
	for _, l := range strings.Split(layouts, ",") {
		switch l = strings.TrimSpace(l); l {
		case "scoped", "table":
			cfg.Scoped = l == "scoped"
		default:
			fmt.Fprintf(os.Stderr, "xdsbench: -layouts: %q is not scoped or table\n", l)
			os.Exit(2)
		}
		for _, p := range strings.Split(protocols, ",") {
			switch p = strings.TrimSpace(p); p {
			case "sotw", "delta":
				cfg.Delta = p == "delta"
			default:
				fmt.Fprintf(os.Stderr, "xdsbench: -protocols: %q is not sotw or delta\n", p)
				os.Exit(2)
			}
			rep, err := mainErr(cfg, bin)
			if err != nil {
				fmt.Fprintln(os.Stderr, "xdsbench:", err)
				os.Exit(1)
			}
			reps = append(reps, rep)
		}
	}
	printSummary(os.Stdout, cfg, reps)
}

// raiseNoFile lifts this process's open-file limit to its hard limit (one
// socket per node, here and in the control plane, which inherits it) and
// says so when that is still short of need.
func raiseNoFile(need uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fmt.Fprintln(os.Stderr, "xdsbench: reading RLIMIT_NOFILE:", err)
		return
	}
	if l.Max < need {
		l.Max = need // allowed as root (CAP_SYS_RESOURCE) only
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	if l.Cur < need {
		fmt.Fprintf(os.Stderr, "xdsbench: open-file limit %d is below the %d this run needs\n", l.Cur, need)
	}
}

func mainErr(cfg Config, bin string) (*Report, error) {
	// The simulated fleet shares the two cores with the control plane it
	// measures; collecting its garbage less often leaves more of them to
	// the control plane (whose own GOGC is its --gogc flag's business).
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	// Both processes hold one socket per node (the child inherits the
	// limit set here).
	raiseNoFile(uint64(cfg.Nodes/max(cfg.PerConn, 1)) + 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "xdsbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := writeSpecs(dir, cfg); err != nil {
		return nil, err
	}
	var scoped []string
	if cfg.Scoped {
		for g := 0; g < cfg.Groups; g++ {
			scoped = append(scoped, benchspec.Group(g, cfg.Groups))
		}
	}
	var pki *benchPKI
	if cfg.TLS {
		pkiDir, err := os.MkdirTemp("", "xdsbench-pki-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(pkiDir)
		if pki, err = mintPKI(pkiDir, cfg.Groups); err != nil {
			return nil, err
		}
	}
	tg, stop, err := startControlPlane(ctx, bin, dir, scoped, pki)
	if err != nil {
		return nil, err
	}
	defer stop()
	rep, err := Run(ctx, cfg, tg)
	if err != nil {
		return nil, err
	}
	fmt.Printf("specs %d (3 routes each), nodes %d in %d groups over %s xDS (%s), route layout %s, %d changes of a spec every group serves\n", rep.Specs, rep.Nodes, rep.Groups, rep.Protocol, rep.Transport, rep.Layout, len(rep.Changes))
	fmt.Printf("initial convergence of the fleet: %s\n", rep.InitialConvergence)
	fmt.Printf("change → every node ACKed: p50 %s  p99 %s  max %s\n", rep.Latencies.P50, rep.Latencies.P99, rep.Latencies.Max)
	fmt.Printf("control plane compile (mean of all rebuilds): %.1f ms\n", rep.CompileSeconds*1000)
	fmt.Printf("control plane memory releases after bursts (whole run): %.0f, %.1f ms in all; its CPU while the converged fleet settled before the idle reading: %.0f ms\n", rep.MemoryReleases, rep.MemoryReleaseSeconds*1000, rep.SettleCPUMillis)
	fmt.Printf("control plane CPU per change (compile + push to %d nodes): %.0f ms; the simulated fleet's: %.0f ms\n", rep.Nodes, rep.CPUPerChangeMillis, rep.FleetCPUPerChangeMs)
	fmt.Printf("control plane live heap (after a GC, fleet converged and idle): %.1f MiB before nodes, %.1f MiB with them: %.1f KiB per node\n", rep.HeapBeforeMiB, rep.HeapAfterMiB, rep.HeapKiBPerNode)
	fmt.Printf("control plane RSS (VmRSS, fleet converged and idle): %.1f MiB before nodes, %.1f MiB with them: %.1f KiB per node\n", rep.RSSBeforeMiB, rep.RSSAfterMiB, rep.KiBPerNode)
	if rep.HalfNodes > 0 {
		fmt.Printf("control plane RSS with the first %d nodes converged and idle: %.1f MiB; each node of the second half added %.1f KiB RSS, %.1f KiB live heap\n", rep.HalfNodes, rep.MemHalf.RSS/(1<<20), rep.MarginalKiBPerNode, rep.MarginalHeapKiBPerNode)
	}
	fmt.Printf("control plane memory per node, fleet converged and idle (minus before nodes; RSS read, then a GC forced, then the runtime's classes): %s\n", rep.PerNodeIdle.kib())
	fmt.Printf("control plane memory per node right after the last change (no GC forced): %s\n", rep.PerNodeAfterChanges.kib())
	fmt.Printf("control plane peak RSS during the changes (VmHWM): %.1f MiB: %.1f KiB per node over before nodes\n", rep.PeakRSSMiB, rep.PeakKiBPerNode)
	fmt.Printf("response bytes per change (whole fleet): %s\n", bytesLine(rep.BytesPerChange))
	fmt.Printf("route bytes per node: %s initially (every table it is served), %s per change\n", humanBytes(rep.RDSBytesPerNodeInitial), humanBytes(rep.RDSBytesPerNodeChange))
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Printf("%s\n", out)
	return rep, nil
}

// shortTypes name the types in reports.
var shortTypes = []struct{ url, name string }{{ldsType, "LDS"}, {cdsType, "CDS"}, {edsType, "EDS"}, {srdsType, "SRDS"}, {rdsType, "RDS"}}

func shortType(url string) string {
	for _, s := range shortTypes {
		if s.url == url {
			return s.name
		}
	}
	return url
}

func bytesLine(b map[string]float64) string {
	var parts []string
	for _, s := range shortTypes {
		parts = append(parts, fmt.Sprintf("%s %s", s.name, humanBytes(b[s.name])))
	}
	return strings.Join(parts, ", ")
}

func humanBytes(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// printSummary is the block to paste into docs/PERFORMANCE.md.
func printSummary(w io.Writer, cfg Config, reps []*Report) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "\n==== xdsbench summary ====\n")
	tls := ""
	if cfg.TLS {
		tls = " -tls (xDS over mutual TLS, a client certificate per node group)"
	}
	fmt.Fprintf(w, "run: xdsbench -specs %d -nodes %d -groups %d -streams-per-conn %d -changes %d%s (load average before the last run: %s)\n",
		cfg.Specs, cfg.Nodes, cfg.Groups, max(cfg.PerConn, 1), cfg.Changes, tls, strings.TrimSpace(string(load)))
	fmt.Fprintf(w, "| protocol | routes | p50 | p99 | max | CP CPU ms/change | CP RSS KiB/node | CP RSS KiB/added node | CP live heap KiB/node | bytes/change LDS | CDS | EDS | SRDS | RDS | RDS/node/change | RDS/node initial |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range reps {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.0f | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s |\n", r.Protocol, r.Layout, r.Latencies.P50, r.Latencies.P99, r.Latencies.Max,
			r.CPUPerChangeMillis, r.KiBPerNode, r.MarginalKiBPerNode, r.HeapKiBPerNode,
			humanBytes(r.BytesPerChange["LDS"]), humanBytes(r.BytesPerChange["CDS"]), humanBytes(r.BytesPerChange["EDS"]), humanBytes(r.BytesPerChange["SRDS"]), humanBytes(r.BytesPerChange["RDS"]),
			humanBytes(r.RDSBytesPerNodeChange), humanBytes(r.RDSBytesPerNodeInitial))
	}
	fmt.Fprintf(w, "memory per node (KiB; fleet converged and idle minus before nodes: RSS, then a GC forced, then the control plane's runtime/metrics memory classes; peak = VmHWM during the changes minus RSS before nodes; after changes: no GC forced):\n")
	fmt.Fprintf(w, "| protocol | routes | RSS idle | RSS peak (changes) | RSS after changes | heap objects | heap unused | heap free | stacks | other Go | outside Go | released | goroutines/node | live heap (GC forced) |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range reps {
		m := r.PerNodeIdle
		fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f |\n", r.Protocol, r.Layout,
			m.RSS/1024, r.PeakKiBPerNode, r.PerNodeAfterChanges.RSS/1024, m.HeapObjects/1024, m.HeapUnused/1024, m.HeapFree/1024, m.Stacks/1024,
			m.OtherGo/1024, m.NotGo()/1024, m.HeapReleased/1024, m.Goroutines, r.HeapKiBPerNode)
	}
	fmt.Fprintf(w, "CP RSS KiB/node: RSS with the fleet idle minus before the fleet, per node; KiB/added node: minus RSS with the first half of the fleet idle, per node of the second half (what one more node costs)\n")
	fmt.Fprintf(w, "routes: scoped = exact hosts, every group served scoped routes (one route table per spec); table = a wildcard host per spec, one route table per group\n")
	fmt.Fprintf(w, "targets: p99 < 1 s for SotW and delta with 1,000 specs; < 50 KiB RSS per connected node; a change sends about one spec's routes per node\n")
}

func writeSpecs(dir string, cfg Config) error {
	for i := 0; i < cfg.Specs; i++ {
		if err := os.WriteFile(filepath.Join(dir, benchspec.Name(i)+".yaml"), cfg.specs().Spec(i, cfg.Groups, 0), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// specs are the generated specs' options: exact hosts for the scoped layout.
func (cfg Config) specs() benchspec.Options { return benchspec.Options{ExactHosts: cfg.Scoped} }

// startControlPlane runs bin's control plane on the specs in dir, serving
// the node groups scoped scoped routes, over mutual TLS with pki's
// certificates when pki is set.
func startControlPlane(ctx context.Context, bin, dir string, scoped []string, pki *benchPKI) (target, func(), error) {
	xdsAddr, err := freeAddr()
	if err != nil {
		return target{}, nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return target{}, nil, err
	}
	args := []string{"controlplane", "--source", "file:" + dir,
		"--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--log-level", "warn", "--hold-off", "50ms", "--pprof"}
	if len(scoped) > 0 {
		args = append(args, "--scoped-route-groups", strings.Join(scoped, ","))
	}
	if pki != nil {
		args = append(args, pki.args()...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return target{}, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	tg := target{xdsAddr: xdsAddr, adminAddr: adminAddr, pid: cmd.Process.Pid, specDir: dir}
	if pki != nil {
		tg.creds = pki.creds
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return tg, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return target{}, nil, errors.New("the control plane did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run connects the fleet to tg, waits for it to converge, then changes
// cfg.Changes specs (ones every group serves) one after the other and
// measures each convergence.
func Run(ctx context.Context, cfg Config, tg target) (*Report, error) {
	rep := &Report{Specs: cfg.Specs, Nodes: cfg.Nodes, Groups: cfg.Groups, Protocol: "sotw", Layout: "table", Transport: "plaintext"}
	if tg.creds != nil {
		rep.Transport = "tls"
	}
	if cfg.Scoped {
		rep.Layout = "scoped"
	}
	if cfg.Delta {
		rep.Protocol = "delta"
	}
	var err error
	time.Sleep(cfg.Settle)
	if rep.MemBefore, rep.HeapBeforeMiB, err = tg.memory(); err != nil {
		return nil, fmt.Errorf("memory before the fleet: %w", err)
	}
	rep.RSSBeforeMiB = rep.MemBefore.RSS / (1 << 20)
	if cfg.AllocProfile != "" {
		if err := fetch(tg.adminAddr, "/debug/pprof/allocs?gc=1", cfg.AllocProfile+".before"); err != nil {
			return nil, err
		}
	}
	perConn := max(cfg.PerConn, 1)
	f, err := newFleet(tg.xdsAddr, cfg.Specs, cfg.Groups, perConn, cfg.Delta, tg.creds)
	if err != nil {
		return nil, err
	}
	defer f.close()
	// The fleet connects in two halves, with a reading between them
	// (settled, as the idle one): what the second half adds is the
	// memory one more node costs, without what any fleet costs once (the
	// group's shared answers, free heap the compile left and the fleet
	// reuses, a release before the fleet that the first nodes undo).
	half := cfg.Nodes / 2 / perConn * perConn
	if half < cfg.Groups {
		half = 0 // too few nodes for a first half serving every group
	}
	var connecting time.Duration
	var served map[string]servedGroup
	for _, upto := range []int{half, cfg.Nodes} {
		if upto == len(f.nodes) {
			continue
		}
		start := time.Now()
		if err := f.grow(ctx, upto); err != nil {
			return nil, err
		}
		if served, err = waitServed(ctx, tg.adminAddr, f.nodeGroups(), nil, cfg.Timeout); err != nil {
			return nil, fmt.Errorf("initial convergence: %w", err)
		}
		if _, err := f.waitConverged(ctx, typeVersions(served), cfg.Timeout); err != nil {
			return nil, fmt.Errorf("initial convergence: %w", err)
		}
		connecting += time.Since(start)
		if upto == half {
			time.Sleep(max(2*time.Second, cfg.Settle))
			if rep.MemHalf, rep.HeapHalfMiB, err = tg.memory(); err != nil {
				return nil, fmt.Errorf("memory with half the fleet: %w", err)
			}
			rep.HalfNodes = half
		}
	}
	groups := f.nodeGroups()
	rep.InitialConvergence = connecting.Round(time.Millisecond).String()
	if cfg.Nodes > 0 {
		rep.RDSBytesPerNodeInitial = float64(f.bytes.snapshot()[rdsType]) / float64(cfg.Nodes)
	}
	settle0 := cpuSeconds(tg.pid)
	time.Sleep(max(2*time.Second, cfg.Settle)) // let in-flight writes drain (and the control plane settle) before measuring
	rep.SettleCPUMillis = (cpuSeconds(tg.pid) - settle0) * 1000
	if rep.MemIdle, rep.HeapAfterMiB, err = tg.memory(); err != nil {
		return nil, fmt.Errorf("memory with the fleet: %w", err)
	}
	rep.RSSAfterMiB = rep.MemIdle.RSS / (1 << 20)
	if cfg.AllocProfile != "" { // after the idle reading: it forces a GC
		if err := fetch(tg.adminAddr, "/debug/pprof/allocs?gc=1", cfg.AllocProfile); err != nil {
			return nil, err
		}
	}
	if cfg.HeapProfile != "" {
		if err := fetch(tg.adminAddr, "/debug/pprof/heap", cfg.HeapProfile); err != nil {
			return nil, err
		}
	}
	if cfg.Nodes > 0 {
		rep.KiBPerNode = (rep.RSSAfterMiB - rep.RSSBeforeMiB) * 1024 / float64(cfg.Nodes)
		rep.HeapKiBPerNode = (rep.HeapAfterMiB - rep.HeapBeforeMiB) * 1024 / float64(cfg.Nodes)
	}
	if rep.HalfNodes > 0 {
		added := float64(cfg.Nodes - rep.HalfNodes)
		rep.MarginalKiBPerNode = (rep.MemIdle.RSS - rep.MemHalf.RSS) / 1024 / added
		rep.MarginalHeapKiBPerNode = (rep.HeapAfterMiB - rep.HeapHalfMiB) * 1024 / added
	}

	var all []time.Duration
	profiled := make(chan error, 1)
	if cfg.CPUProfile != "" {
		go func() { profiled <- fetchProfile(tg.adminAddr, cfg.ProfileSeconds, cfg.CPUProfile) }()
	} else {
		profiled <- nil
	}
	peak := func() float64 { return 0 }
	if tg.pid != 0 {
		// The peak of the changes, not of the initial compile: the
		// high-water mark restarts here, or, where it cannot be reset,
		// VmRSS is sampled.
		if err := resetPeakRSS(tg.pid); err == nil {
			peak = func() float64 { return statusKiB(tg.pid, "VmHWM") / 1024 }
		} else {
			fmt.Fprintf(os.Stderr, "xdsbench: resetting the control plane's VmHWM: %v; sampling VmRSS every 10ms instead\n", err)
			stop := make(chan struct{})
			high := make(chan float64, 1)
			go func() {
				var mx float64
				for {
					mx = max(mx, rssMiB(tg.pid))
					select {
					case <-stop:
						high <- mx
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			peak = func() float64 { close(stop); return <-high }
		}
	}
	cpu0, fleet0 := cpuSeconds(tg.pid), cpuSeconds(os.Getpid())
	for k := 0; k < cfg.Changes; k++ {
		// A spec every group serves: 0, GlobalEvery, 2*GlobalEvery, ...
		globals := (cfg.Specs + benchspec.GlobalEvery - 1) / benchspec.GlobalEvery
		i := (k % globals) * benchspec.GlobalEvery
		b0 := f.bytes.snapshot()
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(tg.specDir, benchspec.Name(i)+".yaml"), cfg.specs().Spec(i, cfg.Groups, k+1), 0o644); err != nil {
			return nil, err
		}
		// The spec is served to every group: wait for each group's new
		// revision, then for every node to ACK what it is served.
		next, err := waitServed(ctx, tg.adminAddr, groups, served, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("change %d (%s): %w", k, benchspec.Name(i), err)
		}
		served = next
		at, err := f.waitConverged(ctx, typeVersions(served), cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("change %d (%s): %w", k, benchspec.Name(i), err)
		}
		time.Sleep(200 * time.Millisecond) // responses of unchanged types, if any were sent, arrive
		b1 := f.bytes.snapshot()
		bytes := map[string]int64{}
		for t, n := range b1 {
			if d := n - b0[t]; d > 0 {
				bytes[shortType(t)] = d
			}
		}
		lat := make([]time.Duration, len(at))
		for j, a := range at {
			lat[j] = a.Sub(t0)
		}
		all = append(all, lat...)
		p50, p99, mx := percentiles(lat)
		rep.Changes = append(rep.Changes, Change{Spec: benchspec.Name(i), P50: p50, P99: p99, Max: mx, Bytes: bytes})
	}
	if tg.pid != 0 {
		rep.PeakRSSMiB = peak()
		if rep.MemAfterChanges, err = readMemory(tg.adminAddr, tg.pid, false); err != nil {
			return nil, fmt.Errorf("memory after the changes: %w", err)
		}
		if cfg.Nodes > 0 {
			n := float64(cfg.Nodes)
			rep.PerNodeIdle = rep.MemIdle.sub(rep.MemBefore).div(n)
			rep.PerNodeAfterChanges = rep.MemAfterChanges.sub(rep.MemBefore).div(n)
			rep.PeakKiBPerNode = (rep.PeakRSSMiB - rep.RSSBeforeMiB) * 1024 / n
		}
	}
	rep.BytesPerChange = map[string]float64{}
	for _, c := range rep.Changes {
		for t, n := range c.Bytes {
			rep.BytesPerChange[t] += float64(n) / float64(len(rep.Changes))
		}
	}
	if cfg.Changes > 0 {
		rep.CPUPerChangeMillis = (cpuSeconds(tg.pid) - cpu0) * 1000 / float64(cfg.Changes)
		if tg.pid != 0 { // else the control plane runs in this process too
			rep.FleetCPUPerChangeMs = (cpuSeconds(os.Getpid()) - fleet0) * 1000 / float64(cfg.Changes)
		}
	}
	if cfg.Nodes > 0 {
		rep.RDSBytesPerNodeChange = rep.BytesPerChange["RDS"] / float64(cfg.Nodes)
	}
	rep.ControlPlaneCPUSeconds = cpuSeconds(tg.pid)
	rep.Latencies.P50, rep.Latencies.P99, rep.Latencies.Max = percentiles(all)
	rep.CompileSeconds = compileMean(tg.adminAddr)
	rep.MemoryReleases = metric(tg.adminAddr, "gatehouse_controlplane_memory_releases_total")
	rep.MemoryReleaseSeconds = metric(tg.adminAddr, "gatehouse_controlplane_memory_release_seconds_total")
	if err := <-profiled; err != nil {
		return nil, err
	}
	return rep, nil
}

// servedGroup is a node group's entry in /debug/nodes "served".
type servedGroup struct {
	Revision string            `json:"revision"`
	Versions map[string]string `json:"versions"`
}

// waitServed polls the control plane's /debug/nodes?nodes=0 until every
// group of groups is served, and at a revision other than the one in
// prev (when prev is set).
func waitServed(ctx context.Context, adminAddr string, groups map[string]bool, prev map[string]servedGroup, timeout time.Duration) (map[string]servedGroup, error) {
	deadline := time.Now().Add(timeout)
	for {
		var body struct {
			Served map[string]servedGroup `json:"served"`
		}
		resp, err := http.Get("http://" + adminAddr + "/debug/nodes?nodes=0")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		if err == nil {
			ok := true
			for g := range groups {
				s, have := body.Served[g]
				if !have || (prev != nil && s.Revision == prev[g].Revision) {
					ok = false
					break
				}
			}
			if ok {
				return body.Served, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the node groups were not served a new revision within %s (last error: %v)", timeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// typeVersions is node group → type URL → version.
func typeVersions(served map[string]servedGroup) map[string]map[string]string {
	out := make(map[string]map[string]string, len(served))
	for g, s := range served {
		out[g] = s.Versions
	}
	return out
}

// fetchProfile saves seconds of the control plane's CPU profile to path.
func fetchProfile(adminAddr string, seconds int, path string) error {
	return fetch(adminAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), path)
}

// fetch saves a profile from the control plane's admin port to path.
func fetch(adminAddr, what, path string) error {
	resp, err := http.Get("http://" + adminAddr + what)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", what, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return os.WriteFile(path, b, 0o644)
}

func percentiles(d []time.Duration) (string, string, string) {
	if len(d) == 0 {
		return "-", "-", "-"
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	r := func(x time.Duration) string { return x.Round(100 * time.Microsecond).String() }
	return r(at(0.50)), r(at(0.99)), r(s[len(s)-1])
}

// rssMiB is the resident set of pid (0 when unknown).
func rssMiB(pid int) float64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuSeconds is utime+stime of pid from /proc (0 when unknown).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// memory reads the control plane's memory after a forced GC: every
// memory class and the live heap in MiB from a separate process, the live
// heap only in process (pid 0: no RSS of its own).
func (tg target) memory() (MemSample, float64, error) {
	if tg.pid == 0 {
		return MemSample{}, liveHeapMiB(tg.adminAddr), nil
	}
	m, err := readMemory(tg.adminAddr, tg.pid, true)
	return m, m.HeapObjects / (1 << 20), err
}

// liveHeapMiB forces a GC in the control plane and reads the live heap
// from /metrics.
func liveHeapMiB(adminAddr string) float64 {
	forceGC(adminAddr)
	return metric(adminAddr, "go_memstats_heap_alloc_bytes") / (1 << 20)
}

// forceGC has the control plane collect garbage (the heap profile
// endpoint with gc=1; it never returns memory to the OS).
func forceGC(adminAddr string) {
	// Twice: objects parked in sync.Pools (gRPC's buffer pools) survive
	// one collection in the pools' victim cache.
	for i := 0; i < 2; i++ {
		resp, err := http.Get("http://" + adminAddr + "/debug/pprof/heap?gc=1")
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// metric reads one unlabeled sample from /metrics.
func metric(adminAddr, name string) float64 {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// compileMean reads gatehouse_controlplane_compile_seconds from /metrics.
func compileMean(adminAddr string) float64 {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum, count float64
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "gatehouse_controlplane_compile_seconds_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "gatehouse_controlplane_compile_seconds_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	if count == 0 {
		return 0
	}
	return sum / count
}
