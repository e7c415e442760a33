// Package xds serves the compiled snapshots over ADS, state-of-the-world
// and delta (a stream loop of its own with go-control-plane's protocol
// behaviour, stream.go, over go-control-plane's snapshot cache), and
// watches what the fleet does
// with them: which nodes are connected, which version of each type every
// node ACKed, and every NACK (recorded per node, counted, and handed to the
// rollout). It fixes go-control-plane#962: after a NACK, SotW does not
// re-send the rejected version in a loop; the node waits for the next
// version.
//
// Snapshots are keyed by node group (node.cluster). Over mutual TLS a
// node's group is bound to its client certificate (a URI SAN
// spiffe://gatehouse/node-group/<group>): a stream whose node.cluster
// differs, or that changes its node mid-stream, is refused with
// PermissionDenied and counted. Which groups are served at all is the
// caller's decision (Options.Admit). Sidecars (user agent
// gatehouse-xdsclient) are never sent SDS secrets. The package knows
// nothing of specs; it must not import compile, snapshot or the
// controlplane package (whose rollout.go takes the NACKs).
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
	"github.com/gatehouse-edge/gatehouse/internal/xdsclient"
)

// GroupHash keys snapshots by node group: node.cluster.
type GroupHash struct{}

// ID implements cachev3.NodeHash.
func (GroupHash) ID(n *corev3.Node) string { return n.GetCluster() }

// NACK is one rejection by one node.
type NACK struct {
	NodeID    string
	NodeGroup string
	TypeURL   string
	// Version is the revision the rejected response was sent for (the
	// name the caller gave SetSnapshot; "" when no longer remembered),
	// TypeVersion the version of the type rejected.
	Version     string
	TypeVersion string
	Message     string // at most MaxNACKMessage bytes
	At          time.Time
	// Authenticated: the node's group came from its verified client
	// certificate.
	Authenticated bool
}

// MaxNACKMessage caps the error text kept from a NACK: it is the node's
// text, shown in /debug and in broker operation descriptions.
const MaxNACKMessage = 1024

func capMessage(m string) string {
	if len(m) <= MaxNACKMessage {
		return m
	}
	cut := MaxNACKMessage
	for cut > 0 && m[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return m[:cut] + "…(truncated)"
}

// Options configure a Server.
type Options struct {
	Log      *slog.Logger
	Registry *prometheus.Registry
	// OnNACK is called (synchronously, from the stream's goroutine; keep
	// it short) for every NACK.
	OnNACK func(NACK)
	// OnGroup is called, synchronously, the first time a stream of a node
	// group sends a request, before the request is served: the caller can
	// set that group's snapshot in time for the first response.
	OnGroup func(group string)
	// Admit, when set, decides whether a stream of a node group is served,
	// before OnGroup: authenticated says the group was bound to a verified
	// client certificate. An error refuses the stream (PermissionDenied).
	Admit func(group string, authenticated bool) error
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is the ADS server plus its node tracker.
type Server struct {
	cache   *watchCache
	ads     *adsServer
	tracker *tracker
	log     *slog.Logger
	metrics *metrics
}

// New builds a Server with its own snapshot cache.
func New(ctx context.Context, o Options) *Server {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "xds")
	if o.Now == nil {
		o.Now = time.Now
	}
	// ads=false: go-control-plane's ADS mode leaves a named request
	// unanswered unless the snapshot holds exactly those names, which would
	// starve a sidecar subscribing to its own spec's resources.
	// SotW and delta watches are both answered by watchCache from shared
	// encodings (delta sends only what changed); go-control-plane's cache
	// only stores the snapshots.
	inner := newWatchCache(cachev3.NewSnapshotCache(false, GroupHash{}, nil))
	m := newMetrics(o.Registry)
	t := newTracker(o, m, log, inner)
	s := &Server{cache: inner, tracker: t, log: log, metrics: m}
	s.ads = newADSServer(ctx, &nackCache{watchCache: inner, t: t}, t)
	return s
}

// Register adds the ADS service to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.ads)
}

// SetSnapshot publishes a snapshot for a node group as revision rev. Each
// resource type carries its own version (the snapshot's): a type whose
// version is the one already served is sent to nobody, and a node's ACKs
// of type versions are mapped back to the revision it runs
// (NodeStatus.Revision). It never waits for a node to read its stream.
func (s *Server) SetSnapshot(ctx context.Context, group, rev string, snap *cachev3.Snapshot) error {
	return s.cache.SetSnapshot(ctx, group, rev, snap)
}

// Snapshot returns a node group's current snapshot, if any.
func (s *Server) Snapshot(group string) (cachev3.ResourceSnapshot, bool) {
	snap, err := s.cache.GetSnapshot(group)
	return snap, err == nil
}

// ClearSnapshot forgets a node group's snapshot (a group no node uses
// any more); a node of the group that connects later waits for the next.
func (s *Server) ClearSnapshot(group string) { s.cache.ClearSnapshot(group) }

// Connected is the number of streams of a node group.
func (s *Server) Connected(group string) int {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	return s.tracker.groups[group]
}

// Nodes is the state of every connected stream, sorted by node id.
func (s *Server) Nodes() []NodeStatus { return s.tracker.nodes() }

// nackCache wraps the snapshot cache so that a SotW NACK of the current
// version does not make the cache answer again at once with that same
// version (go-control-plane#962): the NACK request is presented to the
// cache as if the node held the current version, so the watch waits for
// the next one. A NACK of an older version, sent after a newer one was
// published, is passed through and gets the newer version.
type nackCache struct {
	*watchCache
	t *tracker
}

func (c *nackCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out func(cachev3.Response)) (func(), error) {
	if req.GetErrorDetail() != nil {
		group := req.GetNode().GetCluster()
		if snap, err := c.watchCache.GetSnapshot(group); err == nil {
			current := snap.GetVersion(req.GetTypeUrl())
			if rejected, ok := c.t.sentVersion(req.GetNode().GetId(), req.GetTypeUrl(), req.GetResponseNonce()); ok && rejected == current {
				r := proto.Clone(req).(*discoveryv3.DiscoveryRequest)
				r.VersionInfo = current
				req = r
				c.t.metrics.suppressed.WithLabelValues(typeLabel(req.GetTypeUrl())).Inc()
			}
		}
	}
	return c.watchCache.CreateWatch(req, c.resumeSotW(req, sub), out)
}

// tracker is the per-stream node state the stream loop records.
type tracker struct {
	opts    Options
	metrics *metrics
	log     *slog.Logger
	cache   *watchCache

	mu      sync.Mutex
	streams map[streamKey]*stream
	groups  map[string]int        // streams per group
	sent    map[string][]typeSent // node id → the last response of each type
}

// sent is a response: its nonce, the version of its type and the
// revision it was sent for.
type sent struct{ nonce, version, revision string }

// typeSent is the last response of a type. A node or a stream has a few
// types (four or five), so its per-type state is a short list, not maps:
// with thousands of nodes, maps of a few entries each were a tenth of a
// node's heap.
type typeSent struct {
	typeURL string
	sent
}

// lastSent is the entry of typeURL in list, or nil.
func lastSent(list []typeSent, typeURL string) *typeSent {
	for i := range list {
		if list[i].typeURL == typeURL {
			return &list[i]
		}
	}
	return nil
}

// typesPerNode is how many types a node's lists have room for at first.
const typesPerNode = 6

// streamType is a stream's state for one type: its last response (a
// request answers the latest nonce of a type; older ones are stale), and
// the version the node ACKed last.
type streamType struct {
	typeSent
	acked    string
	hasAcked bool
}

type stream struct {
	id        int64
	delta     bool
	tlsPeer   bool   // the peer presented a verified client certificate
	certGroup string // the node group its certificate names
	node      *corev3.Node
	since     time.Time
	types     []streamType // in the order first seen
	lastNACK  *NACK
	rejecting map[string]bool // types whose last answer was a NACK
}

// typ is the state of typeURL, added if missing.
func (s *stream) typ(typeURL string) *streamType {
	for i := range s.types {
		if s.types[i].typeURL == typeURL {
			return &s.types[i]
		}
	}
	s.types = append(s.types, streamType{typeSent: typeSent{typeURL: typeURL}})
	return &s.types[len(s.types)-1]
}

// sentWith is the last response of any type whose nonce is nonce.
func (s *stream) sentWith(nonce string) (sent, bool) {
	for _, ty := range s.types {
		if ty.nonce != "" && ty.nonce == nonce {
			return ty.sent, true
		}
	}
	return sent{}, false
}

func newTracker(o Options, m *metrics, log *slog.Logger, c *watchCache) *tracker {
	return &tracker{opts: o, metrics: m, log: log, cache: c, streams: map[streamKey]*stream{}, groups: map[string]int{}, sent: map[string][]typeSent{}}
}

func (t *tracker) sentVersion(node, typeURL, nonce string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := lastSent(t.sent[node], typeURL)
	if s == nil || s.nonce != nonce {
		return "", false
	}
	return s.version, true
}

// streamKey names a stream: go-control-plane's SotW and delta servers
// number their streams independently, both from 1.
type streamKey struct {
	delta bool
	id    int64
}

func (t *tracker) open(ctx context.Context, id int64, delta bool) {
	// Room for the types a node asks for (listeners, clusters,
	// endpoints, routes, scoped routes, secrets) without regrowing.
	s := &stream{id: id, delta: delta, since: t.opts.Now(), types: make([]streamType, 0, typesPerNode)}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			s.tlsPeer = true
			s.certGroup, _ = tlsconfig.NodeGroup(ti.State.VerifiedChains[0][0])
		}
	}
	t.mu.Lock()
	t.streams[streamKey{delta, id}] = s
	t.mu.Unlock()
	t.metrics.streams.WithLabelValues(protoLabel(delta)).Inc()
}

// setRejecting tracks which streams currently reject a type, for the
// gatehouse_xds_streams_rejecting gauge. Caller holds t.mu.
func (t *tracker) setRejecting(s *stream, typeURL string, on bool) {
	before := len(s.rejecting) > 0
	if on {
		if s.rejecting == nil {
			s.rejecting = map[string]bool{}
		}
		s.rejecting[typeURL] = true
	} else {
		delete(s.rejecting, typeURL)
	}
	switch after := len(s.rejecting) > 0; {
	case after && !before:
		t.metrics.rejecting.Inc()
	case before && !after:
		t.metrics.rejecting.Dec()
	}
}

func (t *tracker) close(id streamKey) {
	t.mu.Lock()
	s := t.streams[id]
	delete(t.streams, id)
	if s != nil && len(s.rejecting) > 0 {
		t.metrics.rejecting.Dec()
	}
	if s != nil && s.node != nil {
		t.groups[s.node.GetCluster()]--
		if t.groups[s.node.GetCluster()] <= 0 {
			delete(t.groups, s.node.GetCluster())
		}
		// Keep the sent-version table bounded by live nodes.
		delete(t.sent, s.node.GetId())
	}
	t.mu.Unlock()
	if s != nil {
		t.metrics.streams.WithLabelValues(protoLabel(s.delta)).Dec()
	}
}

// refuse counts a refused stream and returns the gRPC error that ends it.
func (t *tracker) refuse(reason string, node *corev3.Node, format string, args ...any) error {
	t.metrics.refused.WithLabelValues(reason).Inc()
	msg := fmt.Sprintf(format, args...)
	t.log.Warn("xds stream refused", "reason", reason, "node_id", node.GetId(), "node_group", node.GetCluster(), "error", msg)
	return status.Error(codes.PermissionDenied, msg)
}

// admit checks a request's node against the stream's certificate and
// keeps secrets from sidecars. Caller holds t.mu.
func (t *tracker) admit(s *stream, node *corev3.Node, typeURL string) error {
	if node == nil {
		return nil
	}
	group := node.GetCluster()
	if s.node != nil && (group != s.node.GetCluster() || node.GetId() != s.node.GetId()) {
		return t.refuse("node_changed", node, "node %q of group %q: a stream keeps the node it started with (%q of group %q)", node.GetId(), group, s.node.GetId(), s.node.GetCluster())
	}
	if s.tlsPeer {
		switch {
		case s.certGroup == "":
			return t.refuse("no_group_in_certificate", node, "node %q: the client certificate names no node group (want exactly one URI SAN %s<group>)", node.GetId(), tlsconfig.NodeGroupURIPrefix)
		case group != s.certGroup:
			return t.refuse("group_mismatch", node, "node %q: node.cluster %q differs from the node group %q of its client certificate", node.GetId(), group, s.certGroup)
		}
	}
	if typeURL == resourcev3.SecretType && node.GetUserAgentName() == xdsclient.UserAgent {
		return t.refuse("secret_to_sidecar", node, "node %q: secrets are served to Envoy nodes only, not to sidecars", node.GetId())
	}
	return nil
}

// request records one request; it refuses a request admit refuses, and
// calls OnGroup on the stream's first request.
func (t *tracker) request(id streamKey, node *corev3.Node, typeURL, nonce, version string, errMsg *string) error {
	t.mu.Lock()
	s := t.streams[id]
	if s == nil {
		t.mu.Unlock()
		return nil
	}
	if err := t.admit(s, node, typeURL); err != nil {
		t.mu.Unlock()
		return err
	}
	if s.node == nil && node != nil && t.opts.Admit != nil {
		// The caller's rule runs without t.mu (it may ask for Groups).
		// Requests of one stream arrive one at a time, so s.node is
		// still nil afterwards.
		authenticated := s.certGroup != ""
		t.mu.Unlock()
		if err := t.opts.Admit(node.GetCluster(), authenticated); err != nil {
			return t.refuse("unknown_group", node, "node %q: node group %q is not served: %v", node.GetId(), node.GetCluster(), err)
		}
		t.mu.Lock()
		if s = t.streams[id]; s == nil {
			t.mu.Unlock()
			return nil
		}
	}
	newGroup := ""
	if s.node == nil && node != nil {
		s.node = node
		t.groups[node.GetCluster()]++
		newGroup = node.GetCluster()
	}
	kind := "initial"
	var nack *NACK
	switch {
	case nonce == "":
	case errMsg != nil:
		kind = "nack"
		t.setRejecting(s, typeURL, true)
		rejected, _ := s.sentWith(nonce)
		nack = &NACK{NodeID: s.node.GetId(), NodeGroup: s.node.GetCluster(), TypeURL: typeURL, Version: rejected.revision, TypeVersion: rejected.version, Message: capMessage(*errMsg), At: t.opts.Now(), Authenticated: s.certGroup != ""}
		s.lastNACK = nack
	default:
		kind = "ack"
		t.setRejecting(s, typeURL, false)
		if v, ok := s.sentWith(nonce); ok {
			version = v.version
		}
		ty := s.typ(typeURL)
		ty.acked, ty.hasAcked = version, true
	}
	t.mu.Unlock()
	t.metrics.requests.WithLabelValues(typeLabel(typeURL), kind).Inc()
	if newGroup != "" && t.opts.OnGroup != nil {
		t.opts.OnGroup(newGroup)
	}
	if nack != nil {
		t.log.Warn("node rejected config (NACK)", "node_id", nack.NodeID, "node_group", nack.NodeGroup, "type_url", typeURL, "version", nack.TypeVersion, "revision", nack.Version, "error", nack.Message)
		if t.opts.OnNACK != nil {
			t.opts.OnNACK(*nack)
		}
	}
	return nil
}

// response records what was sent with which nonce.
func (t *tracker) response(id streamKey, typeURL, nonce, version string) {
	t.mu.Lock()
	if s := t.streams[id]; s != nil {
		// Which revision this is: the newest of the group with this
		// version of the type (a response is built from the snapshot
		// set last, so that is the one it was sent for, or a later one
		// that left the type unchanged). Lock order: t.mu, then c.mu.
		rev := ""
		if s.node != nil {
			rev = t.cache.revisionOf(s.node.GetCluster(), typeURL, version)
		}
		// Only the latest nonce per type can be answered (older ones are
		// stale to the server): one entry per type.
		s.typ(typeURL).sent = sent{nonce, version, rev}
		if s.node != nil {
			id := s.node.GetId()
			if last := lastSent(t.sent[id], typeURL); last != nil {
				last.sent = sent{nonce, version, rev}
			} else {
				if t.sent[id] == nil {
					t.sent[id] = make([]typeSent, 0, typesPerNode)
				}
				t.sent[id] = append(t.sent[id], typeSent{typeURL, sent{nonce, version, rev}})
			}
		}
	}
	t.mu.Unlock()
	t.metrics.responses.WithLabelValues(typeLabel(typeURL)).Inc()
}
