package archive_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/archive"
	"github.com/gatehouse-edge/gatehouse/accesslog/duckstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestHourlyParquetToS3 stores three hours of records in DuckDB, archives
// the completed hours to s3rver with the real S3 client (path-style) and
// reads the Parquet objects back.
func TestHourlyParquetToS3(t *testing.T) {
	env := testenv.StartS3(t, "logs-archive")
	client := s3.New(s3.Options{
		Region: env.Region, BaseEndpoint: aws.String(env.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
	dir := t.TempDir()
	ctx := context.Background()
	store, err := duckstore.Open(ctx, duckstore.Config{Path: filepath.Join(dir, "logs.duckdb"), MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Date(2026, 3, 4, 12, 30, 0, 0, time.UTC)
	base := now.Truncate(time.Hour).Add(-3 * time.Hour) // 09:00
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	rctx, cancel := context.WithCancel(ctx)
	in, err := accesslog.NewIngester(rctx, accesslog.IngesterConfig{Store: store, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 500, FlushInterval: 10 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(rctx) }()
	p := accesslog.NewRedactor(nil, nil)
	perHour := map[int]int{}
	// 09:00-12:30: three completed hours and half of the current one.
	for _, e := range accesslogtest.Random(5, 1400, base, 3*time.Hour+30*time.Minute) {
		r := p.FromHTTP("n1", "g1", e.HTTP())
		perHour[r.Time.Hour()]++
		in.Add(r)
	}
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(m.Stored) != 1400; {
		if time.Now().After(deadline) {
			t.Fatal("not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	a, err := archive.New(archive.Config{Client: client, Bucket: "logs-archive", Prefix: "edge/logs", Store: store, Node: "sidecar-1",
		StateFile: filepath.Join(dir, "archive.state"), MaxBehind: 6 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("logs-archive")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range list.Contents {
		keys = append(keys, *o.Key)
	}
	want := []string{
		"edge/logs/dt=2026-03-04/hour=09/sidecar-1.parquet",
		"edge/logs/dt=2026-03-04/hour=10/sidecar-1.parquet",
		"edge/logs/dt=2026-03-04/hour=11/sidecar-1.parquet",
	}
	if len(keys) != len(want) {
		t.Fatalf("objects %v, want %v (the current hour must wait)", keys, want)
	}
	for i, k := range want {
		if keys[i] != k {
			t.Fatalf("objects %v, want %v", keys, want)
		}
		obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("logs-archive"), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[archive.Row](bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s is not Parquet: %v", k, err)
		}
		hour := 9 + i
		if len(rows) != perHour[hour] || len(rows) == 0 {
			t.Fatalf("%s: %d rows, want %d", k, len(rows), perHour[hour])
		}
		for _, r := range rows {
			if r.Time.UTC().Hour() != hour || r.Route == "" || r.ClientIP == "" || r.Batch == 0 {
				t.Fatalf("%s: row %+v does not belong", k, r)
			}
		}
	}
	st, err := os.ReadFile(filepath.Join(dir, "archive.state"))
	if err != nil || string(st) != "2026-03-04T11:00:00Z\n" {
		t.Fatalf("state %q %v", st, err)
	}
	// Nothing new to do: a second run uploads nothing and keeps the state.
	if err := a.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ = client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("logs-archive")})
	if len(list.Contents) != 3 {
		t.Fatalf("second catch-up wrote more objects: %d", len(list.Contents))
	}
	if _, _, err := archive.ParseURL("http://bucket/x"); err == nil {
		t.Fatal("ParseURL accepted a non-s3 URL")
	}
	if b, p, err := archive.ParseURL("s3://b/some/prefix/"); err != nil || b != "b" || p != "some/prefix" {
		t.Fatalf("ParseURL: %q %q %v", b, p, err)
	}
}
