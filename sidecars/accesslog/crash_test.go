package accesslogsidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// TestMain lets the test binary act as a sidecar process for the crash
// test: with GATEHOUSE_ACCESSLOG_CHILD set it runs the sidecar until
// killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("GATEHOUSE_ACCESSLOG_CHILD"); dir != "" {
		os.Exit(runChild(dir))
	}
	if spec := os.Getenv("GATEHOUSE_ACCESSLOG_LOADGEN"); spec != "" {
		os.Exit(loadgen(spec))
	}
	os.Exit(m.Run())
}

func runChild(dir string) int {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := accesslogsidecar.Config{
		GRPCListener: gl, HTTPListener: hl, Store: "duckdb:" + filepath.Join(dir, "data", "logs.duckdb"),
		SpecDir: filepath.Join(dir, "specs"), APITokenFile: filepath.Join(dir, "tokens"), ChainKeyFile: filepath.Join(dir, "chain.keys"),
		DuckDBMemoryLimit: "256MB", DuckDBThreads: 1, BatchSize: 500, StoreBatch: childStoreBatch, FlushInterval: 20 * time.Millisecond,
		Ready: func(a accesslogsidecar.Addrs) {
			_ = os.WriteFile(filepath.Join(dir, "addrs.tmp"), []byte(a.GRPC+" "+a.HTTP), 0o600)
			_ = os.Rename(filepath.Join(dir, "addrs.tmp"), filepath.Join(dir, "addrs"))
		},
	}
	// The store takes childStoreWrites batches, then every further write
	// waits until the process dies: what arrives after them is only in
	// the spool when the test kills the child.
	accesslogsidecar.WrapStore(&cfg, func(s accesslog.Store) accesslog.Store {
		return &heldStore{Store: s, left: childStoreWrites}
	})
	err = accesslogsidecar.Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// The crash child stores at most childStoreWrites batches of at most
// childStoreBatch entries, so at least n - childStoreWrites*childStoreBatch
// of the crash test's entries are only in the spool at the kill.
const (
	childStoreBatch  = 1000
	childStoreWrites = 2
)

// heldStore passes the first left WriteBatch calls to the store and holds
// every later one until its context ends.
type heldStore struct {
	accesslog.Store
	mu   sync.Mutex
	left int
}

func (s *heldStore) WriteBatch(ctx context.Context, b *accesslog.Batch) error {
	s.mu.Lock()
	pass := s.left > 0
	s.left--
	s.mu.Unlock()
	if pass {
		return s.Store.WriteBatch(ctx, b)
	}
	<-ctx.Done()
	return ctx.Err()
}

// storedRows counts the rows of the DuckDB file at path, opened directly
// (the sidecar that wrote it is dead).
func storedRows(t *testing.T, path string) int {
	t.Helper()
	st, err := duckstore.Open(context.Background(), duckstore.Config{Path: path, MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n int
	if err := st.DB().QueryRow("SELECT count(*) FROM logs").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func metric(t testing.TB, httpAddr, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestKill9LosesNothingSpooled kills a sidecar process with SIGKILL once
// every entry it received is in the spool while its store holds only some
// of them (the child's store takes two batches, then holds every write),
// restarts it and finds every entry stored exactly once with an intact
// hash chain: the rest came from the spool replay.
func TestKill9LosesNothingSpooled(t *testing.T) {
	dir := t.TempDir()
	// Lay out specs and tokens the same way startSidecar does.
	pre := startSidecar(t, dir, nil)
	pre.run.Stop()
	os.Remove(filepath.Join(dir, "addrs"))

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_ACCESSLOG_CHILD="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	var addrs []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "addrs"))
		if err == nil {
			addrs = strings.Fields(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child sidecar did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	const n = 5000
	_, entries := secretEntries(n, time.Now().UTC().Add(-15*time.Minute))
	send(t, addrs[0], entries, nil)
	for deadline = time.Now().Add(30 * time.Second); metric(t, addrs[1], "gatehouse_accesslog_spooled_total") != n; {
		if time.Now().After(deadline) {
			t.Fatalf("child spooled %v of %d", metric(t, addrs[1], "gatehouse_accesslog_spooled_total"), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-exited
	// What the store holds at the kill, read from the file itself: some
	// entries must be in the spool only, or the restart below would not
	// need the replay.
	stored := storedRows(t, filepath.Join(dir, "data", "logs.duckdb"))
	t.Logf("killed with SIGKILL after %d spooled, %d stored", n, stored)
	if stored > childStoreWrites*childStoreBatch || stored >= n {
		t.Fatalf("%d of %d entries stored at the kill, want at most %d: the test would not exercise the spool replay", stored, n, childStoreWrites*childStoreBatch)
	}

	s := startSidecar(t, dir, nil)
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}
	var ids map[string]bool
	for deadline = time.Now().Add(30 * time.Second); ; {
		r := c.logs(url.Values{"since": {"1h"}, "limit": {"10000"}})
		ids = map[string]bool{}
		for _, rec := range r.Records {
			ids[rec.RequestID] = true
		}
		if len(r.Records) >= n {
			if len(r.Records) != n || len(ids) != n {
				t.Fatalf("after restart: %d records, %d distinct, want %d", len(r.Records), len(ids), n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart only %d of %d entries stored", len(r.Records), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, b := c.get("/v1/verify", nil, apiToken)
	if code != 200 || !strings.Contains(string(b), `"ok":true`) {
		t.Fatalf("verify after crash: %d %s", code, b)
	}
}
