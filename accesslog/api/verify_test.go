package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/api"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
)

// TestVerifyCatchesTruncation: deleting the newest batch leaves a chain
// that links; the writer's head shows it is gone.
func TestVerifyCatchesTruncation(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := duckstore.Open(ctx, duckstore.Config{Path: filepath.Join(dir, "l.duckdb"), MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	rctx, cancel := context.WithCancel(ctx)
	in, err := accesslog.NewIngester(rctx, accesslog.IngesterConfig{Store: s, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 100, StoreBatch: 100, FlushInterval: 10 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(rctx) }()
	defer func() { cancel(); <-done }()
	recs := accesslogtest.RandomRecords(3, 300, time.Now().UTC().Add(-time.Hour), 30*time.Minute)
	for i := 0; i < 300; i += 100 {
		in.Add(recs[i : i+100]...)
		for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(m.Stored) != float64(i+100); {
			if time.Now().After(deadline) {
				t.Fatal("not stored")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	tokens, _ := api.NewTokens("verify-token-0123456789")
	h, err := api.NewHandler(api.Config{Store: s, Tokens: tokens, Head: in.Head})
	if err != nil {
		t.Fatal(err)
	}
	verify := func() accesslog.VerifyResult {
		req := httptest.NewRequest("GET", "/v1/verify", nil)
		req.Header.Set("Authorization", "Bearer verify-token-0123456789")
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		var res accesslog.VerifyResult
		if rr.Code != http.StatusOK || json.Unmarshal(rr.Body.Bytes(), &res) != nil {
			t.Fatalf("verify: %d %s", rr.Code, rr.Body)
		}
		return res
	}
	if res := verify(); !res.OK || res.Batches != 3 {
		t.Fatalf("clean: %+v", res)
	}
	head := in.Head()
	if _, err := s.DB().Exec("DELETE FROM logs WHERE batch = ?", head.Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec("DELETE FROM batches WHERE seq = ?", head.Seq); err != nil {
		t.Fatal(err)
	}
	if res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("the chain alone cannot see a removed tail: %+v %v", res, err)
	}
	if res := verify(); res.OK || res.BrokenBatch != head.Seq {
		t.Fatalf("truncation not reported: %+v", res)
	}
}
