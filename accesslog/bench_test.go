package accesslog_test

import (
	"net/url"
	"sync"
	"testing"
	"time"

	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func benchEntries(n int) []*alv3.HTTPAccessLogEntry {
	es := accesslogtest.Random(1, n, time.Now().Add(-time.Hour), time.Hour)
	out := make([]*alv3.HTTPAccessLogEntry, n)
	for i := range es {
		es[i].Path += "?page=2&token=secret-value&q=shoes"
		es[i].Headers["cookie"] = "session=abc"
		out[i] = es[i].HTTP()
	}
	return out
}

// BenchmarkFromHTTP is the per-entry hot path of the ALS server:
// conversion plus redaction of headers and query.
func BenchmarkFromHTTP(b *testing.B) {
	entries := benchEntries(1024)
	p := accesslog.NewRedactor([]*accesslog.SpecSettings{{Spec: "svc0", Routes: map[string]accesslog.RouteSettings{
		"svc0/route0": {Headers: []string{"user-agent", "authorization"}, SampleRate: 1},
	}}}, []byte("bench-hmac-key-0123456789"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r := p.FromHTTP("node", "group", entries[i%len(entries)])
			if !p.Keep(&r) {
				b.Fatal("dropped")
			}
			i++
		}
	})
}

// BenchmarkFromHTTPWire is the ALS server's path: proto.Unmarshal of the
// entry plus FromHTTP ("proto"), against the wire reader with one
// WireDecoder per goroutine ("wire").
func BenchmarkFromHTTPWire(b *testing.B) {
	entries := benchEntries(1024)
	wire := make([][]byte, len(entries))
	for i, e := range entries {
		wire[i], _ = proto.Marshal(e)
	}
	p := accesslog.NewRedactor([]*accesslog.SpecSettings{{Spec: "svc0", Routes: map[string]accesslog.RouteSettings{
		"svc0/route0": {Headers: []string{"user-agent", "authorization"}, SampleRate: 1},
	}}}, []byte("bench-hmac-key-0123456789"))
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				e := new(alv3.HTTPAccessLogEntry)
				if err := proto.Unmarshal(wire[i%len(wire)], e); err != nil {
					b.Fatal(err)
				}
				p.FromHTTP("node", "group", e)
			}
		})
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var d accesslog.WireDecoder
			for i := 0; pb.Next(); i++ {
				if _, err := d.FromHTTP(p, "node", "group", wire[i%len(wire)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkAppendBinary is the spool encoding and hash-chain input per record.
func BenchmarkAppendBinary(b *testing.B) {
	p := accesslog.NewRedactor(nil, nil)
	entries := benchEntries(256)
	recs := make([]accesslog.Record, len(entries))
	for i, e := range entries {
		recs[i] = p.FromHTTP("n", "g", e)
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = recs[i%len(recs)].AppendBinary(buf[:0])
	}
}

// BenchmarkChainHash hashes one 10,000-record batch.
func BenchmarkChainHash(b *testing.B) {
	p := accesslog.NewRedactor(nil, nil)
	entries := benchEntries(10000)
	recs := make([]accesslog.Record, len(entries))
	for i, e := range entries {
		recs[i] = p.FromHTTP("n", "g", e)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := accesslog.ChainHash("", 1, recs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFilter(b *testing.B) {
	v, _ := url.ParseQuery("since=1h&route=petstore/list-pets&status=403&decision=deny&client_ip=203.0.113.9&limit=100")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := accesslog.ParseFilter(v, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChainHashKeyed is BenchmarkChainHash with the chain key
// (HMAC-SHA256), what the Ingester computes when --chain-key-file is set.
func BenchmarkChainHashKeyed(b *testing.B) {
	p := accesslog.NewRedactor(nil, nil)
	entries := benchEntries(10000)
	recs := make([]accesslog.Record, len(entries))
	for i, e := range entries {
		recs[i] = p.FromHTTP("n", "g", e)
	}
	keys, err := accesslog.ParseKeyRing([]byte("k1 bench-chain-key-0123456789abcdef0123456789"))
	if err != nil {
		b.Fatal(err)
	}
	h := accesslog.BatchHeader{Seq: 1, KeyID: keys.Active()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := accesslog.BatchHash(keys, &h, recs); err != nil {
			b.Fatal(err)
		}
	}
}

// ingestWireEntries are the wire forms of ingestWireN unique entries
// (about 40 MB, more than a last-level cache), built once per process.
const ingestWireN = 1 << 16

var ingestWire = sync.OnceValue(func() [][]byte {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	out := make([][]byte, ingestWireN)
	for i := range out {
		b, err := proto.Marshal(accesslogtest.UniqueEntry(i, ingestWireN, t0))
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
})

// BenchmarkFromHTTPWireIngest is the decode and redaction of the entries
// BenchmarkIngestGRPC sends, under its 16 specs, one goroutine and one
// WireDecoder (as one ALS stream): ns/op is the CPU of one entry. The
// entries are all different and more than a cache holds, so neither the
// caches nor the branch predictors see one entry repeated. cpu-ns/op is
// the process's CPU time (GC included) per entry, steadier than ns/op on a
// shared machine.
func BenchmarkFromHTTPWireIngest(b *testing.B) {
	wire := ingestWire()
	p := accesslogtest.IngestRedactor(b)
	var d accesslog.WireDecoder
	b.ReportAllocs()
	cpu0 := testenv.CPUTime()
	for i := 0; b.Loop(); i++ {
		if _, err := d.FromHTTP(p, "envoy-0", "bench", wire[i%len(wire)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkBatchReader decodes a store batch's encoded records (as a
// FrameStore reads them) a DuckDB chunk (2,048 records) at a time.
func BenchmarkBatchReader(b *testing.B) {
	recs := accesslogtest.RandomRecords(1, 10_000, time.Now().Add(-time.Hour), time.Hour)
	var frame []byte
	for i := range recs {
		frame = recs[i].AppendBinary(frame)
	}
	scratch := make([]accesslog.Record, 2048)
	b.ReportAllocs()
	for b.Loop() {
		bt := &accesslog.Batch{Frames: [][]byte{frame}}
		bt.Seq, bt.Count = 1, uint32(len(recs))
		rd := bt.Reader()
		for {
			part, err := rd.Next(scratch)
			if err != nil {
				b.Fatal(err)
			}
			if len(part) == 0 {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
