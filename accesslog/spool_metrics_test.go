package accesslog_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

// TestFlushesGrowingCounted: gatehouse_accesslog_spool_flushes_growing_total
// counts the flushes whose fsync covered a segment that grew: none while
// prepared segments are ready ahead of the flushes, every one when each
// frame is larger than a segment (so every frame grows its file).
func TestFlushesGrowingCounted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segBytes int64
		growing  bool
	}{{name: "prepared ahead", segBytes: 256 << 10}, {name: "frames larger than a segment", segBytes: 64, growing: true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDuck(t, filepath.Join(dir, "logs.duckdb"))
			r := runIngester(t, accesslog.IngesterConfig{Store: db, SpoolDir: filepath.Join(dir, "spool"), BatchSize: 50, StoreBatch: 50,
				FlushInterval: 20 * time.Millisecond, SegmentBytes: tc.segBytes, StoreDelay: time.Millisecond,
				RetryMax: 50 * time.Millisecond, StopGrace: 300 * time.Millisecond})
			recs := accesslogtest.RandomRecords(3, 2000, time.Now().UTC().Add(-time.Hour), time.Minute)
			for added := 0; added < len(recs); added += 50 {
				if !tc.growing {
					// The preparer is given the time to keep ahead.
					testenv.WaitFor(t, "a prepared segment", 20*time.Second, func() bool { return accesslog.SpoolFreeReady(r.in) >= 1 })
				}
				r.in.Add(recs[added : added+50]...)
				r.in.Admit(context.Background())
				testenv.WaitFor(t, "spooled", 20*time.Second, func() bool { return testutil.ToFloat64(r.m.Spooled) == float64(added+50) })
			}
			growing := testutil.ToFloat64(r.m.FlushesGrowing)
			n := histCount(t, r)
			if n == 0 {
				t.Fatal("no flush observed")
			}
			if tc.growing && growing != n {
				t.Fatalf("%v of %v flushes counted as growing, want all", growing, n)
			}
			if !tc.growing && growing != 0 {
				t.Fatalf("%v of %v flushes counted as growing with prepared segments ready, want 0", growing, n)
			}
		})
	}
}

// histCount is the number of flushes the fsync histogram observed.
func histCount(t *testing.T, r *runningIngester) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gatehouse_accesslog_spool_fsync_seconds" {
			return float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	t.Fatal("no fsync histogram")
	return 0
}
