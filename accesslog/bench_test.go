package accesslog_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
	"github.com/gatehouse-edge/gatehouse/internal/testenv"
	"github.com/gatehouse-edge/gatehouse/spec"
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

// ingestSpec is the EdgeRoute of BenchmarkIngestGRPC's sidecar
// (sidecars/accesslog): ingestSpecs copies of it under other names are
// compiled into the redactor BenchmarkFromHTTPWireIngest decodes under.
const ingestSpec = `apiVersion: gatehouse/v1
kind: EdgeRoute
metadata: {name: petstore, team: pets}
spec:
  hosts: [petstore.example.com]
  upstreams:
    - {name: api, endpoints: ["192.0.2.10:9080"]}
  identity:
    apiKeys:
      - {name: partners, header: x-partner-key, keys: [{id: acme, sha256: "66e801a8cf159f1994aeaa3f6c3220ad1f7038dc1803667a5a3f41e9f0b45cc1"}]}
  routes:
    - name: list-pets
      match: {pathPrefix: /pets}
      upstream: api
      auth: {anyOf: [partners]}
      accessLog:
        headers: [user-agent, x-request-id, authorization, x-session-ref, x-partner-key, x-trace]
        redact: [x-session-ref]
`

const ingestSpecs = 16

func ingestSpecName(k int) string {
	if k == 0 {
		return "petstore"
	}
	return fmt.Sprintf("shop%d", k)
}

// ingestRedactor compiles ingestSpecs copies of ingestSpec, as the
// benchmark's sidecar does from its spec directory (no HMAC key: the
// shipped default).
func ingestRedactor(tb testing.TB) *accesslog.Redactor {
	var specs []*accesslog.SpecSettings
	for k := range ingestSpecs {
		name := ingestSpecName(k)
		docs, err := spec.Parse(name+".yaml", []byte(strings.ReplaceAll(ingestSpec, "petstore", name)))
		if err != nil {
			tb.Fatal(err)
		}
		s, err := accesslog.Compile(&docs[0].EdgeRoute)
		if err != nil {
			tb.Fatal(err)
		}
		specs = append(specs, s)
	}
	return accesslog.NewRedactor(specs, nil)
}

// ingestEntry is entry i of n as BenchmarkIngestGRPC's load generator
// builds it (sidecars/accesslog uniqueEntry): request id, path, query
// values, client address, user agent, trace header and secrets unique per
// entry; route (of ingestSpecs specs), method, status and subject from
// bounded sets.
func ingestEntry(i, n int, t0 time.Time) *alv3.HTTPAccessLogEntry {
	h := uint64(i)*0x9e3779b97f4a7c15 ^ 0xd1b54a32d192ed03
	tok := fmt.Sprintf("sekrit-%016x", h)
	e := accesslogtest.Entry{
		Time:      t0.Add(20 * time.Minute / time.Duration(max(n, 1)) * time.Duration(i)),
		Route:     "petstore/list-pets",
		Method:    corev3.RequestMethod_GET,
		Path:      fmt.Sprintf("/pets/%d/photos/%x?page=%d&api_key=%s&sig=%x", i, h>>40, i%97, tok, h),
		Status:    200,
		ClientIP:  fmt.Sprintf("%d.%d.%d.%d", 11+i>>24&0x7f, i>>16&0xff, i>>8&0xff, i&0xff),
		Subject:   fmt.Sprintf("user-%d", h%50000),
		Decision:  "allow",
		RequestID: fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(h), uint16(h>>32), i&0xfff, (i>>12)&0xfff, h>>16),
		Duration:  time.Duration(1+h%40000) * time.Microsecond,
		Headers: map[string]string{
			"authorization": "Bearer " + tok,
			"cookie":        "session=" + tok,
			"x-partner-key": tok,
			"x-session-ref": tok,
			"user-agent":    fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) bench/%d.%d", i, h%1000),
			"x-trace":       fmt.Sprintf("trace-%x-%d", h, i),
			"x-not-kept":    "dropped",
		},
	}
	switch h % 100 {
	case 0, 1, 2, 3, 4:
		e.Status, e.Decision = 403, "deny"
		e.Flags = &alv3.ResponseFlags{UnauthorizedDetails: &alv3.ResponseFlags_Unauthorized{Reason: alv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}}
	case 5, 6, 7:
		e.Status = 429
		e.Flags = &alv3.ResponseFlags{RateLimited: true}
	case 8, 9:
		e.Method, e.Status = corev3.RequestMethod_POST, 201
	}
	out := e.HTTP()
	name := ingestSpecName(int(h>>20) % ingestSpecs)
	out.CommonProperties.RouteName = name + "/list-pets"
	out.CommonProperties.UpstreamCluster = name + "/api"
	out.CommonProperties.TlsProperties.TlsSniHostname = name + ".example.com"
	out.Request.Authority = name + ".example.com"
	out.Request.UserAgent = e.Headers["user-agent"]
	out.CommonProperties.DownstreamRemoteAddress = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: e.ClientIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(1024 + i%64000)},
	}}}
	return out
}

// ingestWireEntries are the wire forms of ingestWireN unique entries
// (about 40 MB, more than a last-level cache), built once per process.
const ingestWireN = 1 << 16

var ingestWire = sync.OnceValue(func() [][]byte {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	out := make([][]byte, ingestWireN)
	for i := range out {
		b, err := proto.Marshal(ingestEntry(i, ingestWireN, t0))
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
	p := ingestRedactor(b)
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
