package accesslogsidecar

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog"

	"github.com/gatehouse-edge/gatehouse/accesslog/accesslogtest"
)

// TestConvertRawMatchesDecoded: a message read from the wire gives the
// records (and stream identity) the decoded message gives, including wire
// forms proto.Marshal never writes (http_logs sent twice, a TCP oneof
// after HTTP entries, the identifier sent twice).
func TestConvertRawMatchesDecoded(t *testing.T) {
	s := &alsServer{settings: newSettings(slog.New(slog.DiscardHandler), []byte("0123456789abcdef"), prometheus.NewRegistry())}
	es := accesslogtest.Random(5, 6, time.Now().Add(-time.Minute), time.Minute)
	var entries []*alv3.HTTPAccessLogEntry
	for _, e := range es {
		entries = append(entries, e.HTTP())
	}
	id := &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-1", Cluster: "edge"}, LogName: "als"}
	httpMsg := func(es ...*alv3.HTTPAccessLogEntry) *accesslogv3.StreamAccessLogsMessage {
		return &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: es}}}
	}
	m := func(msg proto.Message) []byte { b, _ := proto.Marshal(msg); return b }
	withID := httpMsg(entries[:3]...)
	withID.Identifier = id
	tcp := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_TcpLogs{
		TcpLogs: &accesslogv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: []*alv3.TCPAccessLogEntry{{}}}}}
	idOnly := &accesslogv3.StreamAccessLogsMessage{Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-2"}}}
	cases := [][]byte{
		m(withID),
		m(httpMsg(entries...)),
		append(m(httpMsg(entries[:2]...)), m(httpMsg(entries[4:]...))...), // merged: entries add up
		append(m(httpMsg(entries...)), m(tcp)...),                         // oneof: TCP wins
		append(m(withID), m(idOnly)...),                                   // identifier merged
		protowire.AppendVarint(protowire.AppendTag(m(httpMsg(entries[0])), 9, protowire.VarintType), 1),
		{},
	}
	for i, b := range cases {
		var n1, g1, n2, g2 string
		raw, sampled1, err := s.convertRaw(new(accesslog.WireDecoder), b, &n1, &g1, nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		msg := new(accesslogv3.StreamAccessLogsMessage)
		if err := proto.Unmarshal(b, msg); err != nil {
			t.Fatal(err)
		}
		dec, sampled2 := s.convert(msg, &n2, &g2, nil)
		if n1 != n2 || g1 != g2 || sampled1 != sampled2 || fmt.Sprint(raw) != fmt.Sprint(dec) {
			t.Fatalf("case %d: raw %s/%s %d %v\ndecoded %s/%s %d %v", i, n1, g1, sampled1, raw, n2, g2, sampled2, dec)
		}
	}
	if _, _, err := s.convertRaw(new(accesslog.WireDecoder), []byte{0x12, 0x05, 0x0a}, new(string), new(string), nil); err == nil {
		t.Fatal("truncated message accepted")
	}
}
