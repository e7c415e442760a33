package xds

import (
	"sort"
	"strings"
	"time"
)

// NodeStatus is what /debug/nodes shows for one stream.
type NodeStatus struct {
	NodeID    string    `json:"node_id"`
	NodeGroup string    `json:"node_group"`
	Protocol  string    `json:"protocol"` // sotw | delta
	StreamID  int64     `json:"stream_id"`
	Since     time.Time `json:"connected_since"`
	// Revision is the revision the node runs: the newest one at which
	// every type it ACKed is at the version it ACKed ("" before its
	// first ACK). Acked are those versions, per type (each type has its
	// own version, kept while the type's resources do not change).
	Revision  string            `json:"revision,omitempty"`
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
		for _, ty := range s.types {
			if ty.hasAcked {
				ns.Acked[ty.typeURL] = ty.acked
			}
		}
		if s.lastNACK != nil {
			n := *s.lastNACK
			ns.LastNACK = &n
		}
		out = append(out, ns)
	}
	t.mu.Unlock()
	for i := range out {
		out[i].Revision = t.cache.running(out[i].NodeGroup, out[i].Acked)
	}
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

// GroupServed is what a node group is served now: the revision set last
// and the version of each of its resource types.
type GroupServed struct {
	Revision string            `json:"revision"`
	Versions map[string]string `json:"versions"` // type URL → version
}

// Served is, per node group with a snapshot, what it is served now.
func (s *Server) Served() map[string]GroupServed {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]GroupServed, len(c.groups))
	for name, g := range c.groups {
		if g.snap == nil || len(g.history) == 0 {
			continue
		}
		last := g.history[len(g.history)-1]
		v := make(map[string]string, len(last.versions))
		for t, x := range last.versions {
			v[t] = x
		}
		out[name] = GroupServed{Revision: last.name, Versions: v}
	}
	return out
}

// Streams is the number of open ADS streams.
func (s *Server) Streams() int {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	return len(s.tracker.streams)
}
