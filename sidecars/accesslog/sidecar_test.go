package accesslogsidecar_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

const (
	apiToken = "test-token-0123456789abcdef"
	// The secret every test request carries in several places.
	secret = "sekrit-TOKEN-7f3a9c2e51"
	// A harmless marker stored in clear: proves the grep can find things.
	marker = "marker-UA-5d1c9e"
)

const petSpec = accesslogtest.PetSpec

type sidecar struct {
	dir, grpcAddr, httpAddr, storePath string
	run                                *testenv.Served
}

func startSidecar(t testing.TB, dir string, mutate func(*accesslogsidecar.Config)) *sidecar {
	t.Helper()
	specDir := filepath.Join(dir, "specs")
	if err := os.MkdirAll(specDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(specDir, "petstore.yaml"), []byte(petSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokFile, []byte("# query API tokens\n"+apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "chain.keys")
	if err := os.WriteFile(keyFile, []byte("k1 sidecar-test-chain-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{dir: dir, grpcAddr: gl.Addr().String(), httpAddr: hl.Addr().String(), storePath: filepath.Join(dir, "data", "logs.duckdb")}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := accesslogsidecar.Config{
		GRPCListener: gl, HTTPListener: hl, Store: "duckdb:" + s.storePath,
		SpecDir: specDir, APITokenFile: tokFile, ChainKeyFile: keyFile, DuckDBMemoryLimit: "256MB", DuckDBThreads: 1,
		BatchSize: 500, FlushInterval: 20 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s.run = testenv.Serve(t, "sidecar Run", 30*time.Second, func(ctx context.Context) error { return accesslogsidecar.Run(ctx, cfg) })
	waitReady(t, s.httpAddr)
	return s
}

func waitReady(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sidecar on %s not ready within 20s", addr)
}

// send streams entries over a real ALS gRPC stream, in messages of 100.
func send(t *testing.T, addr string, entries []*alv3.HTTPAccessLogEntry, tcp []*alv3.TCPAccessLogEntry) {
	t.Helper()
	sendFrom(t, addr, "envoy-1", "us-east-1", entries, tcp)
}

// sendFrom is send as the Envoy node of the given id and node group.
func sendFrom(t *testing.T, addr, node, group string, entries []*alv3.HTTPAccessLogEntry, tcp []*alv3.TCPAccessLogEntry) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: node, Cluster: group}, LogName: "gatehouse"}
	first := true
	for i := 0; i < len(entries); i += 100 {
		msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries[i:min(i+100, len(entries))]}}}
		if first {
			msg.Identifier, first = id, false
		}
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	if len(tcp) > 0 {
		msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_TcpLogs{
			TcpLogs: &accesslogv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: tcp}}}
		if first {
			msg.Identifier = id
		}
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

// secretEntries are the random entries with the secret in every place a
// caller can put one.
func secretEntries(n int, start time.Time) ([]accesslogtest.Entry, []*alv3.HTTPAccessLogEntry) {
	es := accesslogtest.Random(7, n, start, 10*time.Minute)
	out := make([]*alv3.HTTPAccessLogEntry, n)
	for i := range es {
		es[i].Route = "petstore/list-pets"
		es[i].Path = fmt.Sprintf("/pets/%d?page=2&api_key=%s&Token=%s&sig=%s", i, secret, secret, url.QueryEscape(secret))
		es[i].Headers = map[string]string{
			"authorization":       "Bearer " + secret,
			"cookie":              "session=" + secret,
			"x-api-key":           secret,
			"x-partner-key":       secret,
			"x-session-ref":       secret,
			"proxy-authorization": "Basic " + secret,
			"user-agent":          marker,
			"x-trace":             "trace-" + fmt.Sprint(i),
			"x-not-kept":          "dropped",
		}
		out[i] = es[i].HTTP()
	}
	return es, out
}

type apiClient struct {
	t    *testing.T
	base string
	seen *bytes.Buffer // every API answer, for the secret grep
}

func (c apiClient) get(path string, q url.Values, token string) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path+"?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.seen.Write(b)
	return resp.StatusCode, b
}

func (c apiClient) logs(q url.Values) api.LogsResponse {
	c.t.Helper()
	code, b := c.get("/v1/logs", q, apiToken)
	if code != 200 {
		c.t.Fatalf("/v1/logs?%s: %d %s", q.Encode(), code, b)
	}
	var r api.LogsResponse
	if err := json.Unmarshal(b, &r); err != nil {
		c.t.Fatal(err)
	}
	return r
}

func TestIngestRedactQueryExportVerifyAndSecretGrep(t *testing.T) {
	dir := t.TempDir()
	logBuf := &testenv.SyncBuffer{}
	s := startSidecar(t, dir, func(c *accesslogsidecar.Config) {
		c.Log = slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	start := time.Now().UTC().Add(-15 * time.Minute).Truncate(time.Millisecond)
	es, entries := secretEntries(1200, start)
	tcp := []*alv3.TCPAccessLogEntry{{
		CommonProperties: &alv3.AccessLogCommon{
			StartTime: timestamppb.New(start.Add(time.Minute)), Duration: durationpb.New(3 * time.Second),
			RouteName: "petstore/tcp", UpstreamCluster: "db",
			DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "192.0.2.9", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}}}},
		},
		ConnectionProperties: &alv3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20},
	}}
	send(t, s.grpcAddr, entries, tcp)
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}

	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.logs(url.Values{"since": {"1h"}, "limit": {"10000"}})
		if len(r.Records) == len(entries)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored %d records, want %d", len(r.Records), len(entries)+1)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Auth: no token, a wrong token, a token with a prefix of a real one.
	for _, tok := range []string{"", "wrong-token-0123456789", apiToken[:len(apiToken)-1]} {
		if code, _ := c.get("/v1/logs", nil, tok); code != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", tok, code)
		}
	}
	for _, p := range []string{"/v1/stats", "/v1/export", "/v1/verify", "/v1/histogram"} {
		if code, _ := c.get(p, nil, ""); code != http.StatusUnauthorized {
			t.Fatalf("%s without token: %d, want 401", p, code)
		}
	}
	// Bad parameters say why.
	for q, want := range map[string]string{
		"status=abc":        "status",
		"since=yesterday":   "since",
		"client_ip=1.2.3":   "client_ip",
		"decision=maybe":    "decision",
		"colour=red":        "unknown parameter",
		"limit=0":           "limit",
		"cursor=!!":         "cursor",
		"path_prefix=pets":  "path_prefix",
		"since=1h&until=2h": "before",
	} {
		v, _ := url.ParseQuery(q)
		code, b := c.get("/v1/logs", v, apiToken)
		if code != 400 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %s, want 400 naming %q", q, code, b, want)
		}
	}
	if code, b := c.get("/v1/stats", url.Values{"group_by": {"password"}}, apiToken); code != 400 || !strings.Contains(string(b), "group_by") {
		t.Fatalf("bad group_by: %d %s", code, b)
	}

	// One denied request, every field.
	var want accesslogtest.Entry
	for _, e := range es {
		if e.Status == 403 {
			want = e
			break
		}
	}
	r := c.logs(url.Values{"request_id": {want.RequestID}})
	if len(r.Records) != 1 {
		t.Fatalf("request_id filter: %d records", len(r.Records))
	}
	got := r.Records[0]
	if got.Route != "petstore/list-pets" || got.Status != 403 || got.Decision != "deny" || got.Subject != want.Subject ||
		got.ResponseFlags != "UAEX" || got.ClientIP != want.ClientIP || got.Node != "envoy-1" || got.NodeGroup != "us-east-1" ||
		got.Method != "GET" || got.Kind != "http" || got.LogType != "DownstreamEnd" || got.TLSVersion != "TLSv1_3" ||
		got.TLSSNI != "petstore.example.com" || got.UpstreamHost != "10.0.0.5:8080" || got.UpstreamCluster != "petstore/api" ||
		got.Provider != "corp" || got.AuthKind != "jwt" || got.Rule != "0" || !got.Time.Equal(want.Time.Truncate(time.Millisecond)) ||
		got.DurationUS != want.Duration.Microseconds() || got.BytesIn != 120 || got.BytesOut != 2048 || got.UserAgent != "curl/8.5.0" {
		t.Fatalf("record fields wrong:\n%+v\nfrom %+v", got, want)
	}
	if !strings.HasPrefix(got.Path, "/pets/") || got.Query != "page=2&api_key=REDACTED&Token=REDACTED&sig=REDACTED" {
		t.Fatalf("path %q query %q", got.Path, got.Query)
	}
	var hdr map[string]string
	if err := json.Unmarshal([]byte(got.Headers), &hdr); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"authorization", "x-partner-key", "x-session-ref"} {
		if hdr[h] != accesslog.Mask {
			t.Fatalf("header %s = %q, want masked; all: %v", h, hdr[h], hdr)
		}
	}
	if hdr["user-agent"] != marker || !strings.HasPrefix(hdr["x-trace"], "trace-") {
		t.Fatalf("kept headers lost: %v", hdr)
	}
	if _, ok := hdr["x-not-kept"]; ok {
		t.Fatalf("header outside the spec's list kept: %v", hdr)
	}
	if _, ok := hdr["cookie"]; ok {
		t.Fatalf("cookie kept although the spec does not list it: %v", hdr)
	}

	// Filters equal a Go count over what was sent.
	count := func(f func(accesslogtest.Entry) bool) int {
		n := 0
		for _, e := range es {
			if f(e) {
				n++
			}
		}
		return n
	}
	checks := map[string]int{
		"status=403":                          count(func(e accesslogtest.Entry) bool { return e.Status == 403 }),
		"decision=deny":                       count(func(e accesslogtest.Entry) bool { return e.Decision == "deny" }),
		"subject=" + want.Subject:             count(func(e accesslogtest.Entry) bool { return e.Subject == want.Subject }),
		"client_ip=" + want.ClientIP:          count(func(e accesslogtest.Entry) bool { return e.ClientIP == want.ClientIP }),
		"path_prefix=/pets/1":                 count(func(e accesslogtest.Entry) bool { return strings.HasPrefix(e.Path, "/pets/1") }),
		"route=petstore/list-pets&status=429": count(func(e accesslogtest.Entry) bool { return e.Status == 429 }),
		"denied=true":                         count(func(e accesslogtest.Entry) bool { return e.Status == 403 || e.Status == 429 }),
		"route=petstore/tcp":                  1,
	}
	for q, n := range checks {
		v, _ := url.ParseQuery(q + "&limit=10000&since=1h")
		if got := len(c.logs(v).Records); got != n || n == 0 {
			t.Fatalf("%s: %d records, want %d (>0)", q, got, n)
		}
	}
	// Pagination.
	seen := map[string]bool{}
	q := url.Values{"since": {"1h"}, "limit": {"250"}}
	for i := 0; i < 20; i++ {
		page := c.logs(q)
		for _, rec := range page.Records {
			if seen[rec.RequestID+rec.Route] {
				t.Fatalf("record %s on two pages", rec.RequestID)
			}
			seen[rec.RequestID+rec.Route] = true
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if len(seen) != len(entries)+1 {
		t.Fatalf("pages covered %d records, want %d", len(seen), len(entries)+1)
	}
	// Stats.
	code, b := c.get("/v1/stats", url.Values{"group_by": {"status"}, "since": {"1h"}, "limit": {"20"}}, apiToken)
	if code != 200 {
		t.Fatalf("stats: %d %s", code, b)
	}
	var st api.StatsResponse
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Groups {
		var n int
		if g.Key == "0" {
			n = 1 // the tcp entry
		} else {
			n = count(func(e accesslogtest.Entry) bool { return fmt.Sprint(e.Status) == g.Key })
		}
		if int(g.Count) != n {
			t.Fatalf("stats status %s: %d, want %d", g.Key, g.Count, n)
		}
	}
	// Exports.
	code, b = c.get("/v1/export", url.Values{"since": {"1h"}, "format": {"ndjson"}}, apiToken)
	if lines := bytes.Count(b, []byte("\n")); code != 200 || lines != len(entries)+1 {
		t.Fatalf("ndjson export: %d, %d lines", code, lines)
	}
	code, b = c.get("/v1/export", url.Values{"since": {"1h"}, "format": {"csv"}, "status": {"403"}}, apiToken)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || code != 200 || len(rows) != 1+checks["status=403"] || rows[0][0] != "time" || rows[1][11] != "403" {
		t.Fatalf("csv export: %d rows, %v", len(rows), err)
	}
	code, b = c.get("/v1/histogram", url.Values{"since": {"1h"}, "bucket": {"1m"}}, apiToken)
	var h api.HistogramResponse
	if code != 200 || json.Unmarshal(b, &h) != nil || len(h.Buckets) == 0 {
		t.Fatalf("histogram: %d %s", code, b)
	}
	code, b = c.get("/v1/verify", nil, apiToken)
	var vr accesslog.VerifyResult
	if code != 200 || json.Unmarshal(b, &vr) != nil || !vr.OK || vr.Records != int64(len(entries)+1) || !vr.Keyed || vr.Unkeyed != 0 {
		t.Fatalf("verify: %d %s", code, b)
	}
	// Metrics count what happened; on this port they need the token.
	if code, _ := c.get("/metrics", nil, ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	_, m := c.get("/metrics", nil, apiToken)
	for _, line := range []string{
		fmt.Sprintf("gatehouse_accesslog_received_total %d", len(entries)+1),
		fmt.Sprintf("gatehouse_accesslog_stored_total %d", len(entries)+1),
		`gatehouse_accesslog_dropped_total{reason="buffer_full"} 0`,
	} {
		if !bytes.Contains(m, []byte(line)) {
			t.Fatalf("metrics lack %q", line)
		}
	}

	s.run.Stop()

	// The secret grep: nothing under the data directory and nothing the
	// API returned holds the secret; the clear-text marker is found, so
	// the grep does look at the stored data.
	var files, markerHits int
	err = filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("secret found in %s", p)
		}
		if bytes.Contains(b, []byte(marker)) {
			markerHits++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("grep saw no files: the check proves nothing")
	}
	if markerHits == 0 {
		// No clear-text copy can be left: on a loaded box the first
		// frames go to a segment that grows because the spool's preparer
		// has no free one ready yet, and such a segment (under half the
		// segment size) is deleted once stored, not recycled; DuckDB
		// compresses strings. The DuckDB query below is then what looks
		// at the stored rows (it must find the marker in every entry).
		t.Logf("grep saw %d files, none with the marker in clear text; the DuckDB query checks the stored rows", files)
	}
	if bytes.Contains(c.seen.Bytes(), []byte(secret)) || !bytes.Contains(c.seen.Bytes(), []byte(marker)) {
		t.Fatalf("API output: secret present or marker absent")
	}
	if l := logBuf.String(); strings.Contains(l, secret) || strings.Contains(l, apiToken) || !strings.Contains(l, "accesslog serving") {
		t.Fatalf("the sidecar's log holds a secret or the API token (or is empty):\n%s", l)
	}
	// DuckDB compresses strings, so also ask DuckDB itself.
	st2, err := duckstore.Open(context.Background(), duckstore.Config{Path: s.storePath, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	var conds []string
	for _, col := range accesslog.Columns[1:] {
		conds = append(conds, fmt.Sprintf("CAST(%s AS VARCHAR) LIKE ?", col))
	}
	where := strings.Join(conds, " OR ")
	argsFor := func(s string) []any {
		a := make([]any, len(conds))
		for i := range a {
			a[i] = "%" + s + "%"
		}
		return a
	}
	var nSecret, nMarker int
	if err := st2.DB().QueryRow("SELECT count(*) FROM logs WHERE "+where, argsFor(secret)...).Scan(&nSecret); err != nil {
		t.Fatal(err)
	}
	if err := st2.DB().QueryRow("SELECT count(*) FROM logs WHERE "+where, argsFor(marker)...).Scan(&nMarker); err != nil {
		t.Fatal(err)
	}
	if nSecret != 0 || nMarker != len(entries) {
		t.Fatalf("rows holding the secret: %d (want 0); rows holding the marker: %d (want %d)", nSecret, nMarker, len(entries))
	}
}

// TestQueryPortHardening: on the query-API port /metrics needs the token
// and request bodies are capped (the API takes none).
func TestQueryPortHardening(t *testing.T) {
	s := startSidecar(t, t.TempDir(), nil)
	for token, want := range map[string]int{"": http.StatusUnauthorized, "wrong-token-0123456789": http.StatusUnauthorized, apiToken: http.StatusOK} {
		req, _ := http.NewRequest("GET", "http://"+s.httpAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200) != bytes.Contains(b, []byte("gatehouse_accesslog_")) {
			t.Fatalf("/metrics with token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+s.httpAddr+"/v1/logs", bytes.NewReader(make([]byte, 100<<10)))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("100 KiB body: %d, want 413", resp.StatusCode)
	}
}
