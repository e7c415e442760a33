package accesslogsidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// loadgen is the separate process of BenchmarkIngestGRPC: it encodes n
// entries whose values are all unique (accesslogtest.UniqueEntry), prints "ready",
// waits for a line on stdin, streams them over `streams` ALS streams in
// messages of 500 entries, then exits. Bounded by n and by ten minutes.
// The messages are encoded before "ready" (the same bytes Envoy's
// generated code would put on the wire, see preencode), so the generator
// spends its CPU during the measurement on gRPC, not on proto.Marshal,
// and leaves the shared cores to the sidecar.
func loadgen(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return 2
	}
	addr := f[0]
	n, _ := strconv.Atoi(f[1])
	streams, _ := strconv.Atoi(f[2])
	if n <= 0 || streams <= 0 {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now().UTC().Add(-30 * time.Minute)
	perStream := make([][][]byte, streams) // stream -> messages
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for s := 0; s < streams; s++ {
		share := n / streams
		from := s * share
		if s == streams-1 {
			share += n % streams
		}
		wg.Add(1)
		go func(s, from, share int) {
			defer wg.Done()
			id, err := proto.Marshal(&accesslogv3.StreamAccessLogsMessage{Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{
				Node: &corev3.Node{Id: fmt.Sprintf("envoy-%d", s), Cluster: "bench"}}})
			if err != nil {
				errs <- err
				return
			}
			for sent := 0; sent < share; {
				m := min(500, share-sent)
				pool := make([]*alv3.HTTPAccessLogEntry, m)
				for i := range pool {
					pool[i] = accesslogtest.UniqueEntry(from+sent+i, n, t0)
				}
				enc, err := preencode(pool)
				if err != nil {
					errs <- err
					return
				}
				msg := enc.message(0, m)
				if sent == 0 {
					msg = append(slices.Clip(id), msg...)
				}
				perStream[s] = append(perStream[s], msg)
				sent += m
			}
		}(s, from, share)
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	default:
	}
	// The CPU spent encoding, so the benchmark can leave it out.
	fmt.Println("ready", testenv.CPUTime().Nanoseconds())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: waiting for go:", err)
		return 1
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	method := "/" + accesslogv3.AccessLogService_ServiceDesc.ServiceName + "/StreamAccessLogs"
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func(msgs [][]byte) {
			defer wg.Done()
			st, err := conn.NewStream(ctx, desc, method, grpc.ForceCodecV2(rawCodec{encoding.GetCodecV2("proto")}))
			if err != nil {
				errs <- err
				return
			}
			for _, msg := range msgs {
				if err := st.SendMsg(rawBytes(msg)); err != nil {
					errs <- err
					return
				}
			}
			if err := st.CloseSend(); err != nil {
				errs <- err
				return
			}
			if err := st.RecvMsg(new(accesslogv3.StreamAccessLogsResponse)); err != nil {
				errs <- err
			}
		}(perStream[s])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return 0
}

// encodedPool holds every pool entry as the wire bytes of an http_logs
// log_entry field (tag, length, HTTPAccessLogEntry).
type encodedPool struct {
	fields [][]byte
}

func preencode(pool []*alv3.HTTPAccessLogEntry) (encodedPool, error) {
	var p encodedPool
	for _, e := range pool {
		b, err := proto.Marshal(e)
		if err != nil {
			return p, err
		}
		f := protowire.AppendTag(nil, 1, protowire.BytesType)
		p.fields = append(p.fields, protowire.AppendBytes(f, b))
	}
	return p, nil
}

// message is a StreamAccessLogsMessage with http_logs (field 2) holding
// the m entries from off, as proto.Marshal would encode it.
func (p encodedPool) message(off, m int) []byte {
	var logs []byte
	for _, f := range p.fields[off : off+m] {
		logs = append(logs, f...)
	}
	b := protowire.AppendTag(nil, 2, protowire.BytesType)
	return protowire.AppendBytes(b, logs)
}

// rawBytes is a message already in wire form; rawCodec sends it as is and
// leaves every other value to the proto codec.
type rawBytes []byte

type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawBytes); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (rawCodec) Name() string { return "proto" }

// gatherMetrics reads the named unlabelled gauges or counters (-1 if
// absent) from reg.
func gatherMetrics(reg *prometheus.Registry, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		i := slices.Index(names, mf.GetName())
		if i < 0 || len(mf.GetMetric()) != 1 {
			continue
		}
		if m := mf.GetMetric()[0]; m.GetGauge() != nil {
			out[i] = m.GetGauge().GetValue()
		} else if m.GetCounter() != nil {
			out[i] = m.GetCounter().GetValue()
		}
	}
	return out
}

// histBounds returns, for each quantile q, the upper bound of the first
// bucket of histogram name in reg holding at least q of its observations
// (+Inf as -1; nil without observations).
func histBounds(reg *prometheus.Registry, name string, qs ...float64) []float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() == 0 {
			return nil
		}
		out := make([]float64, len(qs))
		for i, q := range qs {
			out[i] = -1
			for _, bk := range h.GetBucket() {
				if float64(bk.GetCumulativeCount()) >= q*float64(h.GetSampleCount()) {
					out[i] = bk.GetUpperBound()
					break
				}
			}
		}
		return out
	}
	return nil
}

// peakRSSMiB is the process's peak resident set (VmHWM, since the
// benchmark reset it): Go heap, DuckDB and everything else of the
// benchmark process.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// BenchmarkIngestGRPC: b.N entries, every value unique (accesslogtest.UniqueEntry),
// streamed over ALS gRPC by a separate process (loadgen, this test binary
// run again) into a sidecar with the embedded DuckDB store, redaction on
// and the shipped default settings (the zero Config values, which are the
// CLI's defaults), until all are stored. The clock starts when the
// generator has encoded its messages. Reports entries/s, the sidecar's
// CPU per 1,000 entries, the most entries seen in memory and not yet
// written to the spool (what kill -9 could lose at that moment; a power
// loss also what is written and not yet fsynced) and how long an entry
// waited from receipt to the spool fsync that made it durable (the
// crash-loss window in time).
func BenchmarkIngestGRPC(b *testing.B) {
	// Peak RSS from here: with -count N the earlier runs' peak would stay
	// (Linux resets VmHWM on "5" to clear_refs).
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	dir := b.TempDir()
	reg := prometheus.NewRegistry()
	s := startSidecar(b, dir, func(c *accesslogsidecar.Config) {
		// startSidecar's test settings off: the defaults of `gatehouse
		// accesslog` (10,000 per spool frame, 200,000 per store batch, 2
		// store writers, 2 s store delay, 100 ms flush interval, DuckDB
		// 512MB and 2 threads).
		c.BatchSize, c.StoreBatch, c.FlushInterval = 0, 0, 0
		c.DuckDBMemoryLimit, c.DuckDBThreads = "", 0
		// The poll below gathers this registry in process: no HTTP and no
		// process collector reading /proc every 10 ms on the sidecar's CPU
		// (≈ 3 % of it through /metrics).
		c.Registry = reg
		for k := 1; k < accesslogtest.IngestSpecs; k++ {
			y := accesslogtest.IngestSpec(k)
			if err := os.WriteFile(filepath.Join(dir, "specs", accesslogtest.IngestSpecName(k)+".yaml"), []byte(y), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
	base := metric(b, s.httpAddr, "gatehouse_accesslog_stored_total")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("GATEHOUSE_ACCESSLOG_LOADGEN=%s %d %d", s.grpcAddr, b.N, 4))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	var encodeCPU time.Duration // the generator's, before "ready"
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		ns, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			done <- fmt.Errorf("loadgen said %q, not ready: %v", line, cmd.Wait())
			return
		}
		encodeCPU = time.Duration(ns)
		done <- nil
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	b.ResetTimer()
	cpu0, t0 := testenv.CPUTime(), time.Now()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	var maxBuffered float64
	tr := newIngestTrace(os.Getenv("GATEHOUSE_BENCH_TRACE"), cmd.Process.Pid, t0, cpu0)
	deadline := time.Now().Add(5 * time.Minute)
	for loadDone := false; ; {
		if !loadDone {
			select {
			case err := <-done:
				if err != nil {
					b.Fatalf("loadgen: %v", err)
				}
				loadDone = true
			default:
			}
		}
		m := gatherMetrics(reg, "gatehouse_accesslog_buffered_entries", "gatehouse_accesslog_stored_total")
		maxBuffered = max(maxBuffered, m[0])
		tr.sample(reg)
		if m[1]-base >= float64(b.N) && loadDone {
			break
		}
		if time.Now().After(deadline) {
			tr.write(b)
			b.Fatalf("only %v of %d stored within 5 minutes", m[1]-base, b.N)
		}
		time.Sleep(10 * time.Millisecond)
	}
	el, cpu := time.Since(t0), testenv.CPUTime()-cpu0
	b.StopTimer()
	tr.write(b)
	if d := metric(b, s.httpAddr, `gatehouse_accesslog_dropped_total{reason="buffer_full"}`); d != 0 {
		b.Fatalf("%v entries dropped", d)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)*1000, "cpu-ms/1k-entries")
	b.ReportMetric(maxBuffered, "max-unspooled-entries")
	// How much of the run the store writers spent writing a batch
	// (summed over the --store-writers, 2 by default, so up to 200; it
	// includes a batch's wait for the one before it to commit) and how
	// large the batches were.
	if n := metric(b, s.httpAddr, "gatehouse_accesslog_store_write_seconds_count"); n > 0 {
		b.ReportMetric(100*metric(b, s.httpAddr, "gatehouse_accesslog_store_write_seconds_sum")/el.Seconds(), "%-time-store-writing")
		b.ReportMetric(metric(b, s.httpAddr, "gatehouse_accesslog_batch_entries_sum")/n, "entries/store-batch")
	}
	b.ReportMetric(peakRSSMiB(), "peak-rss-MiB")
	// The load generator shares the cores: its CPU is the rest of the
	// budget.
	if ps := cmd.ProcessState; ps != nil {
		b.ReportMetric(float64((ps.UserTime()+ps.SystemTime()-encodeCPU).Milliseconds())/float64(b.N)*1000, "loadgen-cpu-ms/1k-entries")
	}
	// The crash-loss window per spool fsync (how long its oldest entry
	// had waited since it was received), from the histogram: the share
	// within 50 and 100 ms, and the bucket bounds holding the 99th
	// percentile and the maximum.
	const h = "gatehouse_accesslog_spool_sync_lag_hist_seconds"
	if n := metric(b, s.httpAddr, h+"_count"); n > 0 {
		b.ReportMetric(100*metric(b, s.httpAddr, h+`_bucket{le="0.1"}`)/n, "%-syncs-within-100ms")
		b.ReportMetric(100*metric(b, s.httpAddr, h+`_bucket{le="0.05"}`)/n, "%-syncs-within-50ms")
		p99, top := -1.0, -1.0
		for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.25", "0.5", "1", "2.5", "+Inf"} {
			c := metric(b, s.httpAddr, h+`_bucket{le="`+le+`"}`)
			v, _ := strconv.ParseFloat(le, 64)
			if p99 < 0 && c >= 0.99*n {
				p99 = v
			}
			if top < 0 && c >= n {
				top = v
			}
		}
		b.ReportMetric(p99*1000, "p99-sync-lag-le-ms")
		b.ReportMetric(top*1000, "max-sync-lag-le-ms")
		// The mean is exact (the histogram's sum), steadier than a
		// bucket bound between short runs.
		b.ReportMetric(1000*metric(b, s.httpAddr, h+"_sum")/n, "mean-sync-lag-ms")
	}
	// The share of flushes whose fsync covered a segment that grew (no
	// prepared segment was ready: the fsync commits the file's size too).
	if n := metric(b, s.httpAddr, "gatehouse_accesslog_spool_fsync_seconds_count"); n > 0 {
		b.ReportMetric(100*metric(b, s.httpAddr, "gatehouse_accesslog_spool_flushes_growing_total")/n, "%-flushes-growing")
	}
	// The window's parts per flush (bucket bounds of p50, p99, max): the
	// oldest entry's wait for its flush to start, encoding + write(2),
	// fsync.
	for _, part := range []string{"flush_wait", "flush_write", "fsync"} {
		for i, v := range histBounds(reg, "gatehouse_accesslog_spool_"+part+"_seconds", 0.5, 0.99, 1) {
			b.ReportMetric(v*1000, []string{"p50", "p99", "max"}[i]+"-"+part+"-le-ms")
		}
	}
	// Stored is not the end of the store's work: DuckDB compresses what
	// it has not checkpointed yet when the sidecar closes it. The CPU
	// including that shutdown is what the entries cost in the end.
	s.run.Stop()
	b.ReportMetric(float64((testenv.CPUTime()-cpu0).Milliseconds())/float64(b.N)*1000, "cpu-ms/1k-entries-incl-close")
	b.ReportMetric(0, "ns/op")
}

// TestUniqueEntries: the benchmark's entries repeat no value a real fleet
// would not repeat (request id, path, client address, user agent, trace
// header, secret).
func TestUniqueEntries(t *testing.T) {
	const n = 20000
	seen := map[string]map[string]bool{}
	t0 := time.Now().UTC()
	for i := 0; i < n; i++ {
		e := accesslogtest.UniqueEntry(i, n, t0)
		sa := e.CommonProperties.DownstreamRemoteAddress.GetSocketAddress()
		for k, v := range map[string]string{
			"request id": e.Request.RequestId, "path": e.Request.Path, "client ip": sa.Address,
			"user agent": e.Request.UserAgent, "x-trace": e.Request.RequestHeaders["x-trace"],
			"secret": e.Request.RequestHeaders["x-partner-key"],
		} {
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			if seen[k][v] {
				t.Fatalf("entry %d repeats %s %q", i, k, v)
			}
			seen[k][v] = true
		}
	}
}

// TestPreencodedMessages: the load generator's pre-encoded messages are
// what proto.Marshal of the same StreamAccessLogsMessage decodes to.
func TestPreencodedMessages(t *testing.T) {
	_, pool := secretEntries(20, time.Now().UTC())
	enc, err := preencode(pool)
	if err != nil {
		t.Fatal(err)
	}
	got := new(accesslogv3.StreamAccessLogsMessage)
	if err := proto.Unmarshal(enc.message(3, 7), got); err != nil {
		t.Fatal(err)
	}
	want := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: pool[3:10]}}}
	if !proto.Equal(want, got) {
		t.Errorf("pre-encoded message differs from the proto message:\nwant %v\ngot  %v", want, got)
	}
}
