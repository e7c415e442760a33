package xds

import (
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeStatus is what /debug/nodes shows for one stream.
type NodeStatus struct {
	NodeID    string            `json:"node_id"`
	NodeGroup string            `json:"node_group"`
	Protocol  string            `json:"protocol"` // sotw | delta
	StreamID  int64             `json:"stream_id"`
	Since     time.Time         `json:"connected_since"`
	Acked     map[string]string `json:"acked_versions"` // type URL → version
	LastNACK  *NACK             `json:"last_nack,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	// CertGroup is the node group of the stream's client certificate
	// (empty without mutual TLS).
	CertGroup string `json:"certificate_node_group,omitempty"`
}

func (t *tracker) nodes() []NodeStatus {
	t.mu.Lock()
	out := make([]NodeStatus, 0, len(t.streams))
	for _, s := range t.streams {
		ns := NodeStatus{StreamID: s.id, Protocol: protoLabel(s.delta), Since: s.since, Acked: map[string]string{}, CertGroup: s.certGroup}
		if s.node != nil {
			ns.NodeID = s.node.GetId()
			ns.NodeGroup = s.node.GetCluster()
			ns.UserAgent = strings.TrimSpace(s.node.GetUserAgentName() + " " + s.node.GetUserAgentVersion())
		}
		for k, v := range s.acked {
			ns.Acked[k] = v
		}
		if s.lastNACK != nil {
			n := *s.lastNACK
			ns.LastNACK = &n
		}
		out = append(out, ns)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}

// Groups are the node groups with at least one connected stream.
func (s *Server) Groups() []string {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	out := make([]string, 0, len(s.tracker.groups))
	for g := range s.tracker.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

type metrics struct {
	streams    *prometheus.GaugeVec
	requests   *prometheus.CounterVec
	responses  *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	resumed    *prometheus.CounterVec
	refused    *prometheus.CounterVec
	rejecting  prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_xds_streams", Help: "Open xDS streams by protocol (sotw, delta).",
		}, []string{"protocol"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_requests_total", Help: "xDS requests by resource type and kind (initial, ack, nack).",
		}, []string{"type", "kind"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_responses_total", Help: "xDS responses sent by resource type.",
		}, []string{"type"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_nack_resends_suppressed_total", Help: "NACKs of the current version that did not trigger a re-send of that same version.",
		}, []string{"type"}),
		resumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_sotw_resumed_total", Help: "SotW first requests on a new stream that presented the version served now (a node reconnecting, to this replica or another): nothing re-sent.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_xds_streams_refused_total", Help: "xDS streams refused (PermissionDenied) by reason: group_mismatch, no_group_in_certificate, node_changed, unknown_group, secret_to_sidecar.",
		}, []string{"reason"}),
	}
	m.rejecting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gatehouse_xds_streams_rejecting", Help: "Streams whose latest answer for some type is a NACK (which nodes: /debug/nodes).",
	})
	if reg != nil {
		reg.MustRegister(m.streams, m.requests, m.responses, m.suppressed, m.resumed, m.refused, m.rejecting)
	}
	return m
}

func protoLabel(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

// typeLabel maps a type URL to a bounded label value.
func typeLabel(typeURL string) string {
	switch typeURL {
	case "type.googleapis.com/envoy.config.listener.v3.Listener":
		return "listener"
	case "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":
		return "route"
	case "type.googleapis.com/envoy.config.cluster.v3.Cluster":
		return "cluster"
	case "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":
		return "endpoint"
	case "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":
		return "extension_config"
	case "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig":
		return "ratelimit_config"
	case "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret":
		return "secret"
	}
	return "other"
}
