package xds

import "github.com/prometheus/client_golang/prometheus"

// metrics are the xDS server's Prometheus metrics, registered on the
// injected registry; labels are bounded (protocol, type, kind, reason).
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
