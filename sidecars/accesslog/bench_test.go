package accesslogsidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	accesslogsidecar "github.com/gatehouse-edge/gatehouse/sidecars/accesslog"
)

// loadgen is the separate process of BenchmarkIngestGRPC: it streams n
// entries (with secrets to redact) over `streams` ALS streams, messages of
// 500 entries, then exits. Bounded by n and by two minutes. The messages
// are encoded before the first one is sent (the same bytes Envoy's
// generated code would put on the wire, see preencode), so the generator
// spends its CPU on gRPC, not on proto.Marshal, and leaves the shared
// cores to the sidecar.
func loadgen(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return 2
	}
	addr := f[0]
	n, _ := strconv.Atoi(f[1])
	streams, _ := strconv.Atoi(f[2])
	_, pool := secretEntries(5000, time.Now().UTC().Add(-30*time.Minute))
	enc, err := preencode(pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	method := "/" + accesslogv3.AccessLogService_ServiceDesc.ServiceName + "/StreamAccessLogs"
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for s := 0; s < streams; s++ {
		share := n / streams
		if s == 0 {
			share += n % streams
		}
		wg.Add(1)
		go func(s, share int) {
			defer wg.Done()
			st, err := conn.NewStream(ctx, desc, method, grpc.ForceCodecV2(rawCodec{encoding.GetCodecV2("proto")}))
			if err != nil {
				errs <- err
				return
			}
			id, err := proto.Marshal(&accesslogv3.StreamAccessLogsMessage{Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{
				Node: &corev3.Node{Id: fmt.Sprintf("envoy-%d", s), Cluster: "bench"}}})
			if err != nil {
				errs <- err
				return
			}
			msgs := map[[2]int][]byte{} // (offset, entries) -> message
			for sent := 0; sent < share; {
				m := min(500, share-sent)
				off := (sent + s*977) % (len(pool) - 500)
				msg, ok := msgs[[2]int{off, m}]
				if !ok {
					msg = enc.message(off, m)
					msgs[[2]int{off, m}] = msg
				}
				if sent == 0 {
					msg = append(slices.Clip(id), msg...)
				}
				if err := st.SendMsg(rawBytes(msg)); err != nil {
					errs <- err
					return
				}
				sent += m
			}
			if err := st.CloseSend(); err != nil {
				errs <- err
				return
			}
			if err := st.RecvMsg(new(accesslogv3.StreamAccessLogsResponse)); err != nil {
				errs <- err
			}
		}(s, share)
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

// pollMetrics reads the named samples (-1 if absent) with one
// uncompressed /metrics request: the benchmark polls every 10 ms, and
// gzip and a request per sample would be CPU charged to the sidecar.
func pollMetrics(httpAddr string, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for i, name := range names {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				out[i], _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return out
}

// peakRSSMiB is the process's peak resident set (VmHWM): Go heap, DuckDB
// and everything else of the benchmark process.
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

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngestGRPC: b.N entries streamed over ALS gRPC by a separate
// process into a sidecar with the embedded store, redaction on, until all
// are stored. Reports entries/s, the sidecar's CPU per 1,000 entries, the
// most entries seen in memory and not yet fsynced to the spool (what
// kill -9 could lose at that moment) and the longest an entry waited from
// receipt to its spool fsync (the crash-loss window in time).
func BenchmarkIngestGRPC(b *testing.B) {
	dir := b.TempDir()
	s := startSidecar(b, dir, func(c *accesslogsidecar.Config) {
		c.BatchSize = 20000
		c.StoreBatch = 200000
		c.FlushInterval = 100 * time.Millisecond
		c.DuckDBMemoryLimit = "1GB"
		c.DuckDBThreads = 2
	})
	base := metric(b, s.httpAddr, "gatehouse_accesslog_stored_total")
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("GATEHOUSE_ACCESSLOG_LOADGEN=%s %d %d", s.grpcAddr, b.N, 4))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var maxBuffered float64
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
		m := pollMetrics(s.httpAddr, "gatehouse_accesslog_buffered_entries", "gatehouse_accesslog_stored_total")
		maxBuffered = max(maxBuffered, m[0])
		if m[1]-base >= float64(b.N) && loadDone {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %v of %d stored within 5 minutes", m[1]-base, b.N)
		}
		time.Sleep(10 * time.Millisecond)
	}
	el, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	if d := metric(b, s.httpAddr, `gatehouse_accesslog_dropped_total{reason="buffer_full"}`); d != 0 {
		b.Fatalf("%v entries dropped", d)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)*1000, "cpu-ms/1k-entries")
	b.ReportMetric(maxBuffered, "max-unspooled-entries")
	b.ReportMetric(peakRSSMiB(), "peak-rss-MiB")
	// The load generator shares the cores: its CPU is the rest of the
	// budget.
	if ps := cmd.ProcessState; ps != nil {
		b.ReportMetric(float64((ps.UserTime()+ps.SystemTime()).Milliseconds())/float64(b.N)*1000, "loadgen-cpu-ms/1k-entries")
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
	}
	// Stored is not the end of the store's work: DuckDB compresses what
	// it has not checkpointed yet when the sidecar closes it. The CPU
	// including that shutdown is what the entries cost in the end.
	s.stop(b)()
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N)*1000, "cpu-ms/1k-entries-incl-close")
	b.ReportMetric(0, "ns/op")
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
