package accesslogsidecar

import (
	"errors"
	"io"
	"log/slog"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"

	"github.com/gatehouse-edge/gatehouse/accesslog"
)

// alsServer receives Envoy's access-log streams. Recv never waits on
// storage: records go into the Ingester's bounded buffer.
type alsServer struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	settings *settingsHolder
	ing      *accesslog.Ingester
	m        *accesslog.Metrics
	log      *slog.Logger
}

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
		// Envoy sends the identifier on the first message of a stream only.
		if id := msg.GetIdentifier(); id != nil {
			node, group = id.GetNode().GetId(), id.GetNode().GetCluster()
		}
		p := s.settings.current()
		recs = recs[:0]
		sampled := 0
		if h := msg.GetHttpLogs(); h != nil {
			for _, e := range h.GetLogEntry() {
				r := p.FromHTTP(node, group, e)
				if !p.Keep(&r) {
					sampled++
					continue
				}
				recs = append(recs, r)
			}
		}
		if t := msg.GetTcpLogs(); t != nil {
			for _, e := range t.GetLogEntry() {
				recs = append(recs, p.FromTCP(node, group, e))
			}
		}
		s.m.Received.Add(float64(len(recs) + sampled))
		if sampled > 0 {
			s.m.SampledOut.Add(float64(sampled))
		}
		if len(recs) > 0 {
			s.ing.Add(recs...)
		}
	}
}
