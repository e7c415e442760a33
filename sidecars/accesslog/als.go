package accesslogsidecar

import (
	"errors"
	"io"
	"log/slog"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// alsServer receives Envoy's access-log streams. Recv never waits on
// storage: records go into the Ingester's bounded buffer; only a late
// spool flush holds the next read back, until the flush has taken the
// late entries (up to ten FlushIntervals), or a buffer more than half
// full until a flush makes room (Ingester.Admit).
type alsServer struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	settings *settingsHolder
	ing      *accesslog.Ingester
	m        *accesslog.Metrics
	log      *slog.Logger
	// outcomes counts every entry (sampled out or not) for the rollout
	// gate's reports (outcome.go); nil: off.
	outcomes *accesslog.Outcomes
}

// rawMessage is a StreamAccessLogsMessage as it came off the wire: the
// ALS codec leaves it undecoded so that entries are read straight into
// records (Redactor.FromHTTPWire) instead of through the generated message.
type rawMessage struct{ b []byte }

// alsCodec is the gRPC codec of the accesslog server: a *rawMessage gets
// the message bytes (copied into its reused buffer), every other value
// goes through the standard proto codec.
type alsCodec struct{ proto encoding.CodecV2 }

func newALSCodec() alsCodec { return alsCodec{proto: encoding.GetCodecV2("proto")} }

func (c alsCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c alsCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMessage); ok {
		r.b = r.b[:0]
		for _, buf := range data {
			r.b = append(r.b, buf.ReadOnlyData()...)
		}
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (alsCodec) Name() string { return "proto" }

// alsServiceDesc is AccessLogService with a stream handler that receives
// raw messages; it answers to the same method as the generated one.
var alsServiceDesc = grpc.ServiceDesc{
	ServiceName: accesslogv3.AccessLogService_ServiceDesc.ServiceName,
	HandlerType: (*accesslogv3.AccessLogServiceServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamAccessLogs",
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(*alsServer).streamRaw(stream) },
		ClientStreams: true,
	}},
	Metadata: accesslogv3.AccessLogService_ServiceDesc.Metadata,
}

// streamRaw serves one ALS stream from raw messages (the server uses
// alsCodec).
func (s *alsServer) streamRaw(stream grpc.ServerStream) error {
	var node, group string
	recs := make([]accesslog.Record, 0, 64)
	var msg rawMessage
	var dec accesslog.WireDecoder
	for {
		err := stream.RecvMsg(&msg)
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		var sampled int
		recs, sampled, err = s.convertRaw(&dec, msg.b, &node, &group, recs[:0])
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "access-log message: %v", err)
		}
		s.add(recs, sampled)
		// A late spool flush holds the next read back (flow control)
		// rather than let the crash-loss window grow.
		s.ing.Admit(stream.Context())
	}
}

// convertRaw converts the entries of one StreamAccessLogsMessage in wire
// form (identifier=1; oneof http_logs=2 | tcp_logs=3, each a repeated
// log_entry=1). Anything unusual at this level goes through
// proto.Unmarshal.
func (s *alsServer) convertRaw(dec *accesslog.WireDecoder, b []byte, node, group *string, recs []accesslog.Record) ([]accesslog.Record, int, error) {
	var httpLogs [][]byte
	var id []byte
	idSeen, ok := false, true
	for rest := b; len(rest) > 0 && ok; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			ok = false
			break
		}
		rest = rest[n:]
		if typ != protowire.BytesType {
			if num >= 1 && num <= 3 {
				ok = false
				break
			}
			if n = protowire.ConsumeFieldValue(num, typ, rest); n < 0 {
				ok = false
				break
			}
			rest = rest[n:]
			continue
		}
		val, n := protowire.ConsumeBytes(rest)
		if n < 0 {
			ok = false
			break
		}
		rest = rest[n:]
		switch num {
		case 1:
			if idSeen {
				ok = false // merged by proto
			}
			idSeen, id = true, val
		case 2:
			httpLogs = append(httpLogs, val) // repeated http_logs merge: entries add up
		case 3:
			ok = false // TCP entries are rare: proto decodes them
		}
	}
	if !ok {
		msg := new(accesslogv3.StreamAccessLogsMessage)
		if err := proto.Unmarshal(b, msg); err != nil {
			return recs, 0, err
		}
		recs, sampled := s.convert(msg, node, group, recs)
		return recs, sampled, nil
	}
	if idSeen {
		// Envoy sends the identifier on the first message of a stream only.
		ident := new(accesslogv3.StreamAccessLogsMessage_Identifier)
		if err := proto.Unmarshal(id, ident); err != nil {
			return recs, 0, err
		}
		*node, *group = ident.GetNode().GetId(), ident.GetNode().GetCluster()
	}
	p := s.settings.current()
	sampled := 0
	for _, h := range httpLogs {
		for len(h) > 0 {
			num, typ, n := protowire.ConsumeTag(h)
			if n < 0 {
				return recs, 0, errors.New("malformed http_logs")
			}
			h = h[n:]
			if num != 1 || typ != protowire.BytesType {
				if n = protowire.ConsumeFieldValue(num, typ, h); n < 0 {
					return recs, 0, errors.New("malformed http_logs")
				}
				h = h[n:]
				if num == 1 {
					return recs, 0, errors.New("http_logs.log_entry: wrong wire type")
				}
				continue
			}
			e, n := protowire.ConsumeBytes(h)
			if n < 0 {
				return recs, 0, errors.New("malformed http_logs")
			}
			h = h[n:]
			r, err := dec.FromHTTP(p, *node, *group, e)
			if err != nil {
				return recs, 0, err
			}
			recs, sampled = s.keep(p, &r, recs, sampled)
		}
	}
	return recs, sampled, nil
}

// StreamAccessLogs serves a stream of decoded messages (the generated
// service handler; Run registers streamRaw instead).
func (s *alsServer) StreamAccessLogs(stream accesslogv3.AccessLogService_StreamAccessLogsServer) error {
	var node, group string
	recs := make([]accesslog.Record, 0, 64)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		var sampled int
		recs, sampled = s.convert(msg, &node, &group, recs[:0])
		s.add(recs, sampled)
	}
}

// convert converts the entries of one decoded message.
func (s *alsServer) convert(msg *accesslogv3.StreamAccessLogsMessage, node, group *string, recs []accesslog.Record) ([]accesslog.Record, int) {
	// Envoy sends the identifier on the first message of a stream only.
	if id := msg.GetIdentifier(); id != nil {
		*node, *group = id.GetNode().GetId(), id.GetNode().GetCluster()
	}
	p := s.settings.current()
	sampled := 0
	if h := msg.GetHttpLogs(); h != nil {
		for _, e := range h.GetLogEntry() {
			r := p.FromHTTP(*node, *group, e)
			recs, sampled = s.keep(p, &r, recs, sampled)
		}
	}
	if t := msg.GetTcpLogs(); t != nil {
		for _, e := range t.GetLogEntry() {
			recs = append(recs, p.FromTCP(*node, *group, e))
		}
	}
	return recs, sampled
}

// keep counts the outcome of HTTP entry r and appends it to recs, unless
// p samples it out: then sampled grows by one instead.
func (s *alsServer) keep(p *accesslog.Redactor, r *accesslog.Record, recs []accesslog.Record, sampled int) ([]accesslog.Record, int) {
	if s.outcomes != nil {
		s.outcomes.Add(r)
	}
	if !p.Keep(r) {
		return recs, sampled + 1
	}
	return append(recs, *r), sampled
}

func (s *alsServer) add(recs []accesslog.Record, sampled int) {
	s.m.Received.Add(float64(len(recs) + sampled))
	if sampled > 0 {
		s.m.SampledOut.Add(float64(sampled))
	}
	if len(recs) > 0 {
		s.ing.Add(recs...)
	}
}
