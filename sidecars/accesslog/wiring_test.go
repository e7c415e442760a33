package accesslogsidecar_test

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

func httpEntries(es []accesslogtest.Entry) []*alv3.HTTPAccessLogEntry {
	out := make([]*alv3.HTTPAccessLogEntry, len(es))
	for i := range es {
		out[i] = es[i].HTTP()
	}
	return out
}

// TestRetentionAndArchiveWiring: entries from four days ago and from two
// hours ago; restarted with --retention 2d and --archive, the sidecar
// drops the old day and uploads the completed hour to s3rver.
func TestRetentionAndArchiveWiring(t *testing.T) {
	env := testenv.StartS3(t, "archive")
	t.Setenv("AWS_ACCESS_KEY_ID", env.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", env.SecretKey)
	t.Setenv("AWS_REGION", env.Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	s := startSidecar(t, dir, nil)
	now := time.Now().UTC()
	old := accesslogtest.Random(31, 200, now.Add(-96*time.Hour), time.Hour)
	hourAgo := now.Truncate(time.Hour).Add(-2 * time.Hour)
	recent := accesslogtest.Random(32, 300, hourAgo.Add(time.Minute), 50*time.Minute)
	send(t, s.grpcAddr, httpEntries(old), nil)
	send(t, s.grpcAddr, httpEntries(recent), nil)
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}
	for deadline := time.Now().Add(20 * time.Second); len(c.logs(url.Values{"since": {"5d"}, "limit": {"1000"}}).Records) != 500; {
		if time.Now().After(deadline) {
			t.Fatal("entries not stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.run.Stop()

	s2 := startSidecar(t, dir, func(cfg *accesslogsidecar.Config) {
		cfg.Retention = 48 * time.Hour
		cfg.Archive = "s3://archive/edge"
		cfg.ArchiveEndpoint = env.Endpoint
		cfg.NodeID = "sidecar-a"
	})
	c.base = "http://" + s2.httpAddr
	client := s3.New(s3.Options{Region: env.Region, BaseEndpoint: aws.String(env.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, "")})
	wantKey := "edge/dt=" + hourAgo.Format(time.DateOnly) + "/hour=" + hourAgo.Format("15") + "/sidecar-a.parquet"
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := len(c.logs(url.Values{"since": {"5d"}, "limit": {"1000"}}).Records)
		list, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("archive")})
		var keys []string
		if err == nil {
			for _, o := range list.Contents {
				keys = append(keys, *o.Key)
			}
		}
		if left == 300 && len(keys) > 0 {
			if !strings.Contains(strings.Join(keys, " "), wantKey) {
				t.Fatalf("archive keys %v, want %s", keys, wantKey)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %d rows left (want 300), archive keys %v (want %s), err %v", left, keys, wantKey, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClickHouseStoreWiring runs the sidecar with --store clickhouse://.
func TestClickHouseStoreWiring(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	dir := t.TempDir()
	s := startSidecar(t, dir, func(cfg *accesslogsidecar.Config) {
		cfg.Store = "clickhouse://default@" + srv.TCPAddr + "/edge_logs"
		cfg.SpoolDir = dir + "/spool"
		cfg.NodeID = "sidecar-b"
	})
	es := accesslogtest.Random(41, 400, time.Now().UTC().Add(-20*time.Minute), 10*time.Minute)
	send(t, s.grpcAddr, httpEntries(es), nil)
	c := apiClient{t: t, base: "http://" + s.httpAddr, seen: &bytes.Buffer{}}
	for deadline := time.Now().Add(30 * time.Second); len(c.logs(url.Values{"limit": {"1000"}}).Records) != 400; {
		if time.Now().After(deadline) {
			t.Fatal("entries not stored in ClickHouse")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Store outage: the ALS stream still completes (Recv never waits on
	// the store), entries wait in the spool and land after the restart.
	srv.Stop()
	more := accesslogtest.Random(42, 400, time.Now().UTC().Add(-20*time.Minute), 10*time.Minute)
	start := time.Now()
	send(t, s.grpcAddr, httpEntries(more), nil)
	t.Logf("400 entries sent while ClickHouse was down in %s", time.Since(start))
	for deadline := time.Now().Add(20 * time.Second); metric(t, s.httpAddr, "gatehouse_accesslog_store_errors_total") < 1; {
		if time.Now().After(deadline) {
			t.Fatal("no store error counted while ClickHouse was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := metric(t, s.httpAddr, "gatehouse_accesslog_stored_total"); st != 400 {
		t.Fatalf("stored %v while ClickHouse was down", st)
	}
	if sp := metric(t, s.httpAddr, "gatehouse_accesslog_spooled_total"); sp != 800 {
		t.Fatalf("spooled %v, want 800", sp)
	}
	srv.Restart(t)
	for deadline := time.Now().Add(60 * time.Second); metric(t, s.httpAddr, "gatehouse_accesslog_stored_total") != 800; {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart only %v of 800 stored", metric(t, s.httpAddr, "gatehouse_accesslog_stored_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, b := c.get("/v1/verify", nil, apiToken)
	if code != 200 || !strings.Contains(string(b), `"ok":true`) || !strings.Contains(string(b), `"records":800`) {
		t.Fatalf("verify: %d %s", code, b)
	}
	if code, b := c.get("/v1/stats", url.Values{"group_by": {"decision"}}, apiToken); code != 200 || !strings.Contains(string(b), `"key":"deny"`) {
		t.Fatalf("stats: %d %s", code, b)
	}
}
