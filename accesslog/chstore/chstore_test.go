package chstore_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/accesslog/chstore"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func records(seed uint64, n int, start time.Time, span time.Duration) []accesslog.Record {
	p := accesslog.NewRedactor(nil, nil)
	out := make([]accesslog.Record, 0, n)
	for _, e := range accesslogtest.Random(seed, n, start, span) {
		out = append(out, p.FromHTTP("node-1", "us-east-1", e.HTTP()))
	}
	return out
}

func startIngester(t *testing.T, s accesslog.Store, spool string) (*accesslog.Ingester, *accesslog.Metrics, func()) {
	return startWriter(t, s, spool, 0)
}

func startWriter(t *testing.T, s accesslog.Store, spool string, writer uint32) (*accesslog.Ingester, *accesslog.Metrics, func()) {
	t.Helper()
	m := accesslog.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	in, err := accesslog.NewIngester(ctx, accesslog.IngesterConfig{Store: s, Writer: writer, SpoolDir: spool, BatchSize: 200, StoreBatch: 200,
		FlushInterval: 20 * time.Millisecond, Metrics: m, RetryMax: 200 * time.Millisecond, StopGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingester: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return in, m, stop
}

// TestClickHouse runs the store against the Debian clickhouse-server
// (18.16) started on loopback ports: ingest, query, stats, histogram,
// hash chain and tampering, a server crash and recovery, retention.
func TestClickHouse(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	ctx := context.Background()
	s, err := chstore.Open(ctx, chstore.Config{Addr: srv.TCPAddr, Database: "gatehouse_test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("clickhouse-server %s", s.Version())
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := records(1, 1000, now.Add(-30*time.Minute), 30*time.Minute)
	in, m, stop := startIngester(t, s, filepath.Join(dir, "spool"))
	in.Add(slices.Clone(recs)...)
	testenv.WaitFor(t, "1000 stored", 30*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 1000 })

	all, err := s.Query(ctx, accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 5000})
	if err != nil || len(all) != 1000 {
		t.Fatalf("query all: %d %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.After(all[i-1].Time) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	// Round trip: what was sent is what is read (ms precision included).
	byID := map[string]accesslog.Record{}
	for _, r := range all {
		byID[r.RequestID] = r
	}
	for _, want := range recs {
		got := byID[want.RequestID]
		got.Batch, got.Index = 0, 0
		if string(got.AppendBinary(nil)) != string(want.AppendBinary(nil)) {
			t.Fatalf("record %s changed in ClickHouse:\n got %+v\nwant %+v", want.RequestID, got, want)
		}
	}
	var n403 int
	for _, r := range recs {
		if r.Status == 403 {
			n403++
		}
	}
	got, err := s.Query(ctx, accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Status: 403, Limit: 5000})
	if err != nil || len(got) != n403 || n403 == 0 {
		t.Fatalf("status=403: %d want %d (%v)", len(got), n403, err)
	}
	// Pagination with cursors.
	page := accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 300}
	var paged int
	for i := 0; i < 10; i++ {
		rows, err := s.Query(ctx, page)
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range rows {
			if r.RequestID != all[paged+j].RequestID {
				t.Fatalf("page %d row %d differs", i, j)
			}
		}
		paged += len(rows)
		if len(rows) < page.Limit {
			break
		}
		c := accesslog.CursorOf(&rows[len(rows)-1])
		page.After = &c
	}
	if paged != 1000 {
		t.Fatalf("paged %d", paged)
	}
	counts := map[string]int64{}
	for _, r := range recs {
		counts[r.Route]++
	}
	groups, err := s.Stats(ctx, accesslog.StatsQuery{Filter: accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Limit: 100}, GroupBy: "route"})
	if err != nil || len(groups) != len(counts) {
		t.Fatalf("stats: %v %v", groups, err)
	}
	for _, g := range groups {
		if g.Count != counts[g.Key] || g.P99MS < g.P50MS || g.P50MS <= 0 {
			t.Fatalf("group %+v, want count %d", g, counts[g.Key])
		}
	}
	hist, err := s.Histogram(ctx, accesslog.Filter{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range hist {
		total += b.Count
	}
	if total != 1000 {
		t.Fatalf("histogram total %d", total)
	}
	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 1000 || res.Batches < 5 {
		t.Fatalf("verify: %+v %v", res, err)
	}

	// Crash the server, keep ingesting: entries wait in the spool.
	srv.Stop()
	more := records(2, 600, now.Add(-10*time.Minute), 5*time.Minute)
	in.Add(slices.Clone(more)...)
	testenv.WaitFor(t, "spooled during outage", 20*time.Second, func() bool { return testutil.ToFloat64(m.Spooled) == 1600 })
	testenv.WaitFor(t, "store errors", 20*time.Second, func() bool { return testutil.ToFloat64(m.StoreErrors) > 0 })
	if st := testutil.ToFloat64(m.Stored); st != 1000 {
		t.Fatalf("stored %v while the server was down", st)
	}
	srv.Restart(t)
	testenv.WaitFor(t, "replayed after restart", 60*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 1600 })
	stop()
	res, err = accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 1600 {
		t.Fatalf("verify after outage: %+v %v", res, err)
	}

	// Tampering with one row (a mutation) breaks that batch.
	if err := s.Exec(ctx, "ALTER TABLE logs UPDATE subject = 'mallory' WHERE batch = 3 AND idx = 11"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "mutation", 30*time.Second, func() bool {
		r, err := s.Query(ctx, accesslog.Filter{Subject: "mallory", Limit: 10})
		return err == nil && len(r) == 1
	})
	res, err = accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || res.OK || res.BrokenBatch != 3 {
		t.Fatalf("verify after tampering: %+v %v", res, err)
	}
}

func TestClickHouseRetentionDropsPartitions(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	ctx := context.Background()
	s, err := chstore.Open(ctx, chstore.Config{Addr: srv.TCPAddr, Database: "retention"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	ing, m2, stop2 := startIngester(t, s, filepath.Join(t.TempDir(), "spool"))
	var n int
	for d := 3; d >= 0; d-- {
		ing.Add(records(uint64(20+d), 150, today.Add(-time.Duration(d)*24*time.Hour+2*time.Hour), time.Hour)...)
		n += 150
		testenv.WaitFor(t, "stored", 30*time.Second, func() bool { return testutil.ToFloat64(m2.Stored) == float64(n) })
	}
	stop2()
	dropped, err := ing.DropBefore(ctx, today.Add(-24*time.Hour))
	if err != nil || dropped != 300 {
		t.Fatalf("dropped %d rows (%v), want 300", dropped, err)
	}
	left, err := s.Query(ctx, accesslog.Filter{Limit: 10000})
	if err != nil || len(left) != 300 {
		t.Fatalf("left %d rows (%v), want 300", len(left), err)
	}
	res, err := accesslog.Verify(ctx, s, accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Pruned != 2 || res.Records != 300 {
		t.Fatalf("verify after retention: %+v %v", res, err)
	}
}

// TestClickHouseSharedByTwoWriters: two sidecars' ingesters write to one
// database at the same time; each keeps its own chain and both verify.
func TestClickHouseSharedByTwoWriters(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	ctx := context.Background()
	var stores []*chstore.Store
	for i := 0; i < 2; i++ {
		s, err := chstore.Open(ctx, chstore.Config{Addr: srv.TCPAddr, Database: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	now := time.Now().UTC()
	in1, m1, stop1 := startWriter(t, stores[0], filepath.Join(t.TempDir(), "spool"), 7)
	in2, m2, stop2 := startWriter(t, stores[1], filepath.Join(t.TempDir(), "spool"), 9)
	for i := 0; i < 5; i++ {
		in1.Add(records(uint64(100+i), 150, now.Add(-20*time.Minute), 10*time.Minute)...)
		in2.Add(records(uint64(200+i), 150, now.Add(-20*time.Minute), 10*time.Minute)...)
		time.Sleep(30 * time.Millisecond)
	}
	testenv.WaitFor(t, "both stored", 30*time.Second, func() bool {
		return testutil.ToFloat64(m1.Stored) == 750 && testutil.ToFloat64(m2.Stored) == 750
	})
	stop1()
	stop2()
	res, err := accesslog.Verify(ctx, stores[0], accesslog.VerifyOptions{})
	if err != nil || !res.OK || res.Records != 1500 {
		t.Fatalf("verify shared store: %+v %v", res, err)
	}
	hs, err := stores[0].Headers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	writers := map[uint32]int{}
	for _, h := range hs {
		writers[accesslog.WriterOf(h.Seq)]++
	}
	if len(writers) != 2 || writers[7] == 0 || writers[9] == 0 {
		t.Fatalf("chains by writer: %v", writers)
	}
}

// TestClickHouseChainTamperEvidence: the tamper-evidence suite against a
// real clickhouse-server, one database per store.
func TestClickHouseChainTamperEvidence(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	n := 0
	accesslogtest.ChainTamperEvidence(t, func(t *testing.T) accesslog.Store {
		n++
		s, err := chstore.Open(context.Background(), chstore.Config{Addr: srv.TCPAddr, Database: "tamper" + strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestClickHouseFilterLanguage: prefix, negation and status classes
// select in ClickHouse exactly what the Go reference matcher selects.
func TestClickHouseFilterLanguage(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	ctx := context.Background()
	s, err := chstore.Open(ctx, chstore.Config{Addr: srv.TCPAddr, Database: "gatehouse_lang"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := records(7, 1000, now.Add(-30*time.Minute), 30*time.Minute)
	in, m, _ := startIngester(t, s, filepath.Join(t.TempDir(), "spool"))
	in.Add(slices.Clone(recs)...)
	testenv.WaitFor(t, "1000 stored", 30*time.Second, func() bool { return testutil.ToFloat64(m.Stored) == 1000 })
	accesslogtest.CheckLanguage(t, s, recs, now)
}
