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
	"testing"
	"time"

	accesslogsidecar "github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
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
	err = accesslogsidecar.Run(context.Background(), accesslogsidecar.Config{
		GRPCListener: gl, HTTPListener: hl, Store: "duckdb:" + filepath.Join(dir, "data", "logs.duckdb"),
		SpecDir: filepath.Join(dir, "specs"), APITokenFile: filepath.Join(dir, "tokens"), ChainKeyFile: filepath.Join(dir, "chain.keys"),
		DuckDBMemoryLimit: "256MB", DuckDBThreads: 1, BatchSize: 500, FlushInterval: 20 * time.Millisecond,
		Ready: func(a accesslogsidecar.Addrs) {
			_ = os.WriteFile(filepath.Join(dir, "addrs.tmp"), []byte(a.GRPC+" "+a.HTTP), 0o600)
			_ = os.Rename(filepath.Join(dir, "addrs.tmp"), filepath.Join(dir, "addrs"))
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
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
// every entry it received is in the spool, restarts it and finds every
// entry stored exactly once with an intact hash chain.
func TestKill9LosesNothingSpooled(t *testing.T) {
	dir := t.TempDir()
	// Lay out specs and tokens the same way startSidecar does.
	pre := startSidecar(t, dir, nil)
	pre.stop(t)()
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
	stored := metric(t, addrs[1], "gatehouse_accesslog_stored_total")
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-exited
	t.Logf("killed with SIGKILL after %d spooled, %v stored", n, stored)

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
