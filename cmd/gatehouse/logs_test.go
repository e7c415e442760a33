package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// TestLogsCLI drives `gatehouse logs query|stats|export|verify` against a
// running accesslog sidecar fed over ALS gRPC, then verifies and tampers
// with the store directly.
func TestLogsCLI(t *testing.T) {
	dir := t.TempDir()
	const token = "cli-test-token-0123456789"
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "chain.keys")
	if err := os.WriteFile(keyFile, []byte("k1 cli-test-chain-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	storePath := filepath.Join(dir, "logs.duckdb")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- accesslogsidecar.Run(ctx, accesslogsidecar.Config{GRPCListener: gl, HTTPListener: hl, Store: "duckdb:" + storePath,
			APITokenFile: tokFile, ChainKeyFile: keyFile, DuckDBMemoryLimit: "256MB", DuckDBThreads: 1, BatchSize: 100, StoreBatch: 100, FlushInterval: 10 * time.Millisecond})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("sidecar: %v", err)
			}
		}
	}
	defer stop()

	es := accesslogtest.Random(21, 400, time.Now().UTC().Add(-12*time.Minute), 10*time.Minute) // inside the default 15m window
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]*alv3.HTTPAccessLogEntry, len(es))
	want := map[uint32]int{}
	for i := range es {
		entries[i] = es[i].HTTP()
		want[es[i].Status]++
	}
	if err := stream.Send(&accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "e1", Cluster: "c1"}},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	server := "http://" + hl.Addr().String()
	for deadline := time.Now().Add(20 * time.Second); ; {
		req, _ := http.NewRequest("GET", server+"/v1/logs?limit=1000", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var r api.LogsResponse
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if len(r.Records) == len(es) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("entries not stored")
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, errOut, code := run(t, "logs", "query", "--server", server, "--token-file", tokFile, "--status", "403", "--limit", "1000", "-o", "json")
	if code != 0 {
		t.Fatalf("logs query: %d %s", code, errOut)
	}
	var lr api.LogsResponse
	if err := json.Unmarshal([]byte(out), &lr); err != nil || len(lr.Records) != want[403] || want[403] == 0 {
		t.Fatalf("logs query json: %d records (want %d) %v", len(lr.Records), want[403], err)
	}
	// The environment twin of a filter flag.
	t.Setenv("GATEHOUSE_LOGS_QUERY_STATUS", "429")
	out, errOut, code = run(t, "logs", "query", "--server", server, "--token-file", tokFile, "--limit", "1000")
	if code != 0 || strings.Count(out, " 429 ") != want[429] || !strings.HasPrefix(out, "TIME") {
		t.Fatalf("logs query table via env: exit %d, %d rows of 429 (want %d)\n%s%s", code, strings.Count(out, " 429 "), want[429], out, errOut)
	}
	os.Unsetenv("GATEHOUSE_LOGS_QUERY_STATUS")
	out, errOut, code = run(t, "logs", "stats", "--server", server, "--token-file", tokFile, "--group-by", "status")
	if code != 0 {
		t.Fatalf("logs stats: %s", errOut)
	}
	for st, n := range want {
		if !strings.Contains(out, fmt.Sprintf("%d  ", st)) || !strings.Contains(out, fmt.Sprintf(" %d ", n)) {
			t.Fatalf("stats table lacks status %d count %d:\n%s", st, n, out)
		}
	}
	csvPath := filepath.Join(dir, "out.csv")
	if _, errOut, code = run(t, "logs", "export", "--server", server, "--token-file", tokFile, "--format", "csv", "--out", csvPath); code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	f, _ := os.Open(csvPath)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != len(es)+1 {
		t.Fatalf("csv export: %d rows %v", len(rows), err)
	}
	out, errOut, code = run(t, "logs", "verify", "--server", server, "--token-file", tokFile)
	if code != 0 || !strings.HasPrefix(out, "ok: 4 batches") {
		t.Fatalf("verify via server: %d %q %s", code, out, errOut)
	}
	// Wrong token: a clear 401.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not-a-valid-token-xxxx\n"), 0o600)
	if _, errOut, code = run(t, "logs", "query", "--server", server, "--token-file", bad); code == 0 || !strings.Contains(errOut, "401") {
		t.Fatalf("bad token: %d %s", code, errOut)
	}
	if _, errOut, code = run(t, "logs", "query", "--server", server, "--token-file", tokFile, "--since", "tomorrow"); code == 0 || !strings.Contains(errOut, "400") || !strings.Contains(errOut, "since") {
		t.Fatalf("bad since: %d %s", code, errOut)
	}

	stop()
	out, errOut, code = run(t, "logs", "verify", "--store", "duckdb:"+storePath, "--chain-key-file", keyFile)
	if code != 0 || !strings.Contains(out, "400 records verified") || strings.Contains(out, "warning") {
		t.Fatalf("verify store: %d %q %s", code, out, errOut)
	}
	// Without the ring the CLI asks for it; checked as unkeyed, the keyed
	// chain does not verify.
	if _, errOut, code = run(t, "logs", "verify", "--store", "duckdb:"+storePath); code == 0 || !strings.Contains(errOut, "--chain-key-file") {
		t.Fatalf("verify store without a key ring: %d %s", code, errOut)
	}
	out, errOut, code = run(t, "logs", "verify", "--store", "duckdb:"+storePath, "--unkeyed")
	if code == 0 || !strings.Contains(out, "verify with the chain key ring") {
		t.Fatalf("verify keyed store without keys: %d %q %s", code, out, errOut)
	}
	// A key file others can read is refused.
	os.Chmod(keyFile, 0o644)
	if _, errOut, code = run(t, "logs", "verify", "--store", "duckdb:"+storePath, "--chain-key-file", keyFile); code == 0 || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("0644 key file: %d %s", code, errOut)
	}
	os.Chmod(keyFile, 0o600)
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: storePath})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec("UPDATE logs SET subject = subject || '-edited' WHERE batch = 3 AND idx = 50"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out, errOut, code = run(t, "logs", "verify", "--store", "duckdb:"+storePath, "--chain-key-file", keyFile)
	if code == 0 || !strings.Contains(out, "BROKEN at batch 3") {
		t.Fatalf("tampered store: exit %d, %q %s", code, out, errOut)
	}
}

func TestParseRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "30d": 30 * 24 * time.Hour, "48h": 48 * time.Hour} {
		if got, err := parseRetention(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"0d", "1h", "x", "-3d"} {
		if _, err := parseRetention(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
