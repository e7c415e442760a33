// Package snapshot turns compiled results into go-control-plane snapshots,
// one per node group, and decides which result each group is served: the
// last good result fleet-wide, or the rollout's candidate for the canary
// group. It refuses to publish an empty or inconsistent result, so a bad
// compile never replaces a good snapshot. It must not import xds internals
// beyond the small Cache interface below, nor source.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
)

// Cache is where snapshots go (xds.Server implements it): rev is the
// revision the snapshot is of (the result's GroupVersion), which the
// cache maps nodes' ACKs of per-type versions back to.
type Cache interface {
	SetSnapshot(ctx context.Context, group, rev string, snap *cachev3.Snapshot) error
}

// Publisher owns which compiled result each node group is served.
type Publisher struct {
	cache   Cache
	log     *slog.Logger
	metrics *metrics
	marshal *marshaler

	mu      sync.Mutex
	good    *compile.Result // fleet-wide last known good
	canary  string          // canary group while a candidate is in flight
	cand    *compile.Result // the candidate
	groups  map[string]bool // every group ever served
	served  map[string]string
	lastErr error
}

// New builds a Publisher. reg may be nil.
func New(c Cache, log *slog.Logger, reg *prometheus.Registry) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cache: c, log: log.With("component", "snapshot"), metrics: newMetrics(reg), marshal: newMarshaler(), groups: map[string]bool{}, served: map[string]string{}}
}

// ErrEmpty is returned for a result with no published spec.
var ErrEmpty = errors.New("no spec compiled: refusing to replace the served config with an empty one")

// Build is the snapshot of a node group for a result, checked for
// consistency (every EDS cluster and RDS name resolves) and with every
// resource encoded once. Each resource type carries its own version, a
// hash of the type's encoded resources (typeVersion): a rebuild that
// leaves a type byte-identical leaves its version, so the type is not
// sent again; replicas compute the same versions from the same content.
func (p *Publisher) Build(res *compile.Result, group string) (*cachev3.Snapshot, error) {
	r, _, err := res.Resources(group)
	if err != nil {
		return nil, err
	}
	version := res.GroupVersion(group)
	snap, err := cachev3.NewSnapshot(version, r)
	if err != nil {
		return nil, fmt.Errorf("node group %s: %w", group, err)
	}
	// go-control-plane's own check does not follow API listeners (proxyless
	// groups); compile.CheckReferences, already run, does.
	if !hasAPIListener(r) {
		if err := snap.Consistent(); err != nil {
			return nil, fmt.Errorf("node group %s, version %s: inconsistent snapshot: %w", group, version, err)
		}
	}
	out := &cachev3.Snapshot{}
	for typ, list := range r {
		idx := cachev3.GetResponseType(typ)
		if idx == types.UnknownType {
			return nil, fmt.Errorf("node group %s: unknown resource type %s", group, typ)
		}
		wrapped := make([]types.Resource, len(list))
		enc := make([]encoded, len(list))
		for i, x := range list {
			name := cachev3.GetResourceName(x)
			var b []byte
			if wrapped[i], b, err = p.marshal.wrap(name, x); err != nil {
				return nil, fmt.Errorf("node group %s: encoding %s %s: %w", group, typ, name, err)
			}
			enc[i] = encoded{name, b}
		}
		out.Resources[idx] = cachev3.NewResources(typeVersion(enc), wrapped)
	}
	return out, nil
}

// encoded is one resource's name and deterministic encoding.
type encoded struct {
	name  string
	bytes []byte
}

// typeVersion is the xDS version of one resource type's resources: a
// hash of their names and encodings, independent of their order.
func typeVersion(res []encoded) string {
	sorted := slices.Clone(res)
	slices.SortFunc(sorted, func(a, b encoded) int { return strings.Compare(a.name, b.name) })
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, e := range sorted {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(e.name)))])
		h.Write([]byte(e.name))
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(e.bytes)))])
		h.Write(e.bytes)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// groupList is every group to (re)publish for res: known groups plus the
// groups res names. Caller holds p.mu.
func (p *Publisher) groupList(res *compile.Result) []string {
	set := map[string]bool{}
	for g := range p.groups {
		set[g] = true
	}
	if res != nil {
		for _, g := range res.NodeGroups() {
			set[g] = true
		}
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// PublishAll serves res to every group and makes it the last known good.
// A result that is empty or fails to build for any group is refused and
// nothing changes.
func (p *Publisher) PublishAll(ctx context.Context, res *compile.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(res.Published()) == 0 && !res.EmptyOK {
		if p.good == nil && len(res.Specs) == 0 {
			// A fresh store: nothing served, nothing to serve. Not a refusal.
			p.lastErr = ErrEmpty
			return ErrEmpty
		}
		p.refused(ErrEmpty)
		return ErrEmpty
	}
	groups := p.groupList(res)
	snaps := make(map[string]*cachev3.Snapshot, len(groups))
	for _, g := range groups {
		s, err := p.Build(res, g)
		if err != nil {
			p.refused(err)
			return err
		}
		snaps[g] = s
	}
	for _, g := range groups {
		if err := p.cache.SetSnapshot(ctx, g, res.GroupVersion(g), snaps[g]); err != nil {
			return fmt.Errorf("node group %s: %w", g, err)
		}
		p.groups[g] = true
		p.served[g] = res.GroupVersion(g)
	}
	p.good, p.cand, p.canary, p.lastErr = res, nil, "", nil
	p.marshal.rotate()
	p.metrics.published.Inc()
	p.log.Info("published", "version", res.Version, "specs", len(res.Published()), "node_groups", len(groups))
	return nil
}

// PublishCanary serves res to the canary group only; everyone else stays
// on the last known good. With no last known good yet, there is nothing to
// protect and res goes to everyone (PublishAll).
func (p *Publisher) PublishCanary(ctx context.Context, group string, res *compile.Result) error {
	p.mu.Lock()
	if p.good == nil {
		p.mu.Unlock()
		return p.PublishAll(ctx, res)
	}
	defer p.mu.Unlock()
	if len(res.Published()) == 0 && !res.EmptyOK {
		p.refused(ErrEmpty)
		return ErrEmpty
	}
	// Check every group now, so a promotion cannot fail to build later.
	for _, g := range p.groupList(res) {
		if _, err := p.Build(res, g); err != nil {
			p.refused(err)
			return err
		}
	}
	snap, err := p.Build(res, group)
	if err != nil {
		p.refused(err)
		return err
	}
	if err := p.cache.SetSnapshot(ctx, group, res.GroupVersion(group), snap); err != nil {
		return fmt.Errorf("node group %s: %w", group, err)
	}
	p.groups[group] = true
	p.served[group] = res.GroupVersion(group)
	p.cand, p.canary = res, group
	p.log.Info("canary published", "version", res.Version, "node_group", group)
	return nil
}

// Rollback puts the canary group back on the last known good and drops the
// candidate.
func (p *Publisher) Rollback(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cand == nil || p.good == nil {
		return nil
	}
	snap, err := p.Build(p.good, p.canary)
	if err != nil {
		return err
	}
	if err := p.cache.SetSnapshot(ctx, p.canary, p.good.GroupVersion(p.canary), snap); err != nil {
		return err
	}
	p.served[p.canary] = p.good.GroupVersion(p.canary)
	p.log.Warn("canary rolled back", "node_group", p.canary, "rejected_version", p.cand.GroupVersion(p.canary), "version", p.good.GroupVersion(p.canary))
	p.cand, p.canary = nil, ""
	p.metrics.rollbacks.Inc()
	return nil
}

// Ensure gives a group a snapshot if it has none yet: the candidate for the
// canary group during a rollout, the last known good otherwise. It is what
// a node of a new group gets on its first request.
func (p *Publisher) Ensure(ctx context.Context, group string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.groups[group] {
		return
	}
	res := p.good
	if p.cand != nil && group == p.canary {
		res = p.cand
	}
	if res == nil {
		// Nothing compiled yet: the node's watch waits, and the first
		// publish includes this group.
		p.groups[group] = true
		return
	}
	snap, err := p.Build(res, group)
	if err != nil {
		p.log.Error("cannot build a snapshot for a new node group", "node_group", group, "error", err)
		return
	}
	if err := p.cache.SetSnapshot(ctx, group, res.GroupVersion(group), snap); err != nil {
		p.log.Error("setting snapshot", "node_group", group, "error", err)
		return
	}
	p.groups[group] = true
	p.served[group] = res.GroupVersion(group)
}

// Forget drops a node group that idle reports has no node any more: it
// is no longer rebuilt on every publish, and its snapshot is cleared
// when the cache can (ClearSnapshot). The canary group of a rollout in
// flight is kept. It reports whether the group was dropped.
func (p *Publisher) Forget(group string, idle func() bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.groups[group] || (p.cand != nil && group == p.canary) || !idle() {
		return false
	}
	delete(p.groups, group)
	delete(p.served, group)
	if c, ok := p.cache.(interface{ ClearSnapshot(string) }); ok {
		c.ClearSnapshot(group)
	}
	p.log.Info("node group dropped: no node for the grace period", "node_group", group)
	return true
}

// Groups is the number of node groups served.
func (p *Publisher) Groups() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.groups)
}

func (p *Publisher) refused(err error) {
	p.lastErr = err
	p.metrics.refused.Inc()
	p.log.Error("refusing to publish; keeping the served config", "error", err)
}

// State is what /debug shows about publishing.
type State struct {
	// GoodVersion is the Version of the last good result; CandidateVersion
	// the canary group's GroupVersion of the candidate.
	GoodVersion      string            `json:"good_version,omitempty"`
	CandidateVersion string            `json:"candidate_version,omitempty"`
	CanaryGroup      string            `json:"canary_group,omitempty"`
	Served           map[string]string `json:"served"` // node group → version
	LastError        string            `json:"last_error,omitempty"`
}

// State reports the current publishing state.
func (p *Publisher) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := State{Served: map[string]string{}, CanaryGroup: p.canary}
	for g, v := range p.served {
		st.Served[g] = v
	}
	if p.good != nil {
		st.GoodVersion = p.good.Version
	}
	if p.cand != nil {
		st.CandidateVersion = p.cand.GroupVersion(p.canary)
	}
	if p.lastErr != nil {
		st.LastError = p.lastErr.Error()
	}
	return st
}

// Served is the result a node group is served now (nil when none).
func (p *Publisher) Served(group string) *compile.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cand != nil && group == p.canary {
		return p.cand
	}
	return p.good
}

// Good is the last known good result (nil before the first publish).
func (p *Publisher) Good() *compile.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.good
}

type metrics struct {
	published, refused, rollbacks prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_controlplane_published_total", Help: "Versions published to the whole fleet."}),
		refused:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_controlplane_publish_refused_total", Help: "Compiled results refused (empty or failing to build); the served config was kept."}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_controlplane_rollbacks_total", Help: "Canary rollouts rolled back after a NACK."}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.refused, m.rollbacks)
	}
	return m
}

func hasAPIListener(r compile.Resources) bool {
	for _, x := range r[resourcev3.ListenerType] {
		if l, ok := x.(*listenerv3.Listener); ok && l.GetApiListener() != nil {
			return true
		}
	}
	return false
}
