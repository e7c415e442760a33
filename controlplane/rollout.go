package controlplane

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/source"
	"github.com/gatehouse-edge/gatehouse/controlplane/xds"
)

// Rollout phases.
const (
	PhaseIdle       = "idle"        // the fleet is on the last good version
	PhaseSoaking    = "soaking"     // the canary group has a candidate
	PhaseRolledBack = "rolled_back" // the canary NACKed; waiting for the next revision
)

// State is what /debug/specs shows.
type State struct {
	Revision    string       `json:"revision"`
	Version     string       `json:"version"`
	CompiledAt  time.Time    `json:"compiled_at"`
	CompileTime string       `json:"compile_time"`
	Specs       []SpecStatus `json:"specs"`
	Rollout     Rollout      `json:"rollout"`
	// Refused is set when the newest compile was not published (empty,
	// or a node group's config failed to build).
	Refused string `json:"refused,omitempty"`
	// CertError is set while a change of the certificate directory is
	// refused because it would break published specs.
	CertError string `json:"cert_error,omitempty"`
	// AwaitingACK are the node groups whose connected nodes have not yet
	// ACKed the newest publication (its specs are not reported published
	// until they do), with the version they are served.
	AwaitingACK map[string]string `json:"awaiting_ack,omitempty"`
}

// SpecStatus is one spec of the newest revision.
type SpecStatus struct {
	Name      string `json:"name"`
	Origin    string `json:"origin"`
	Revision  int64  `json:"revision,omitempty"`
	Published bool   `json:"published"`
	Error     string `json:"error,omitempty"`
}

// Rollout is the state of the staged rollout.
type Rollout struct {
	Phase       string    `json:"phase"`
	CanaryGroup string    `json:"canary_group,omitempty"`
	Candidate   string    `json:"candidate_version,omitempty"`
	Since       time.Time `json:"since,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	// Routes is the health gate's per-route comparison of the soak (the
	// current one, or the last one that ended), Verdict its outcome.
	Routes  []RouteComparison `json:"routes,omitempty"`
	Verdict string            `json:"verdict,omitempty"`
}

// State returns a copy of the current state.
func (cp *ControlPlane) State() State {
	cp.stateMu.Lock()
	st := cp.state
	st.Specs = append([]SpecStatus(nil), st.Specs...)
	cp.stateMu.Unlock()
	cp.acks.mu.Lock()
	p := cp.acks.pending
	cp.acks.mu.Unlock()
	if p != nil {
		waiting, _ := ackWaiting(cp.xds.Nodes(), p.versions, cp.cfg.PublishQuorum)
		for _, g := range waiting {
			if st.AwaitingACK == nil {
				st.AwaitingACK = map[string]string{}
			}
			st.AwaitingACK[g] = p.versions[g]
		}
	}
	return st
}

func publishedReports(res *compile.Result) []report {
	out := make([]report, 0, len(res.Published()))
	for _, s := range res.Published() {
		out = append(out, report{spec: s.Name, revision: s.Revision})
	}
	return out
}

// canaryRejected handles a NACK: when CanaryMinNACKs distinct
// authenticated canary nodes have rejected the candidate, the rollout
// stops and the canary returns to the last good version. Other NACKs are
// recorded by the xDS server only; the node waits for the next version.
// It reports whether a rollout was stopped.
func (cp *ControlPlane) canaryRejected(ctx context.Context, n xds.NACK) bool {
	st := cp.pub.State()
	if st.CandidateVersion == "" || n.NodeGroup != st.CanaryGroup || n.Version != st.CandidateVersion {
		return false
	}
	// Without a client CA no node can prove its group; the port is then
	// loopback-only (or --insecure), and every node counts.
	if !n.Authenticated && cp.cfg.TLS.ClientCAFile != "" {
		cp.metrics.canaryNACKs.Inc()
		return false
	}
	if cp.canaryNACKs.version != n.Version {
		cp.canaryNACKs.version, cp.canaryNACKs.nodes = n.Version, map[string]bool{}
	}
	if cp.canaryNACKs.nodes[n.NodeID] {
		cp.metrics.canaryNACKs.Inc()
		return false
	}
	cp.canaryNACKs.nodes[n.NodeID] = true
	if len(cp.canaryNACKs.nodes) < cp.cfg.CanaryMinNACKs {
		cp.log.Warn("canary node rejected the candidate; waiting for more canary nodes before rolling back", "node_id", n.NodeID, "version", n.Version, "nacks", len(cp.canaryNACKs.nodes), "canary_min_nacks", cp.cfg.CanaryMinNACKs)
		return false
	}
	cp.canaryNACKs.version, cp.canaryNACKs.nodes = "", nil
	cand := cp.pub.Served(st.CanaryGroup)
	if err := cp.pub.Rollback(ctx); err != nil {
		cp.log.Error("rollback failed", "error", err)
		return false
	}
	reason := fmt.Sprintf("canary node %s (group %s; %d distinct canary nodes) rejected version %s (%s): %s", n.NodeID, n.NodeGroup, cp.cfg.CanaryMinNACKs, n.Version, shortType(n.TypeURL), n.Message)
	cp.stateMu.Lock()
	cp.state.Rollout = Rollout{Phase: PhaseRolledBack, CanaryGroup: st.CanaryGroup, Candidate: n.Version, Since: cp.cfg.Now(), Reason: reason}
	cp.stateMu.Unlock()
	// The specs that differ from the last good version are the suspects.
	if cand != nil {
		good := cp.pub.Good()
		var reps []report
		for _, s := range cand.Published() {
			if good == nil || !good.Has(s) {
				reps = append(reps, report{spec: s.Name, revision: s.Revision, err: fmt.Errorf("rolled back: %s", reason)})
			}
		}
		cp.report(reps)
	}
	return true
}

// promote sends the soaked candidate to the whole fleet.
func (cp *ControlPlane) promote(ctx context.Context) {
	st := cp.pub.State()
	if st.CandidateVersion == "" {
		return
	}
	var cmp []RouteComparison
	verdict, note := "", ""
	if !cp.cfg.Gate.Disabled && cp.window.candidate == st.CandidateVersion {
		cmp = cp.compare(st.CanaryGroup, cp.pub.Good())
		for i := range cmp {
			if cmp[i].Verdict == VerdictBreach {
				cp.gateRollback(ctx, st.CanaryGroup, st.CandidateVersion, &cmp[i], cmp)
				return
			}
		}
		verdict, note = gateSummary(cmp)
	}
	cp.window = gateWindow{}
	cand := cp.pub.Served(st.CanaryGroup)
	if err := cp.pub.PublishAll(ctx, cand); err != nil {
		cp.log.Error("promotion failed; the fleet keeps the last good version", "version", cand.Version, "error", err)
		return
	}
	cp.stateMu.Lock()
	cp.state.Rollout = Rollout{Phase: PhaseIdle, Candidate: st.CandidateVersion, Routes: cmp, Verdict: verdict, Reason: note}
	cp.stateMu.Unlock()
	if verdict != "" {
		cp.metrics.gatePromotions.WithLabelValues(verdict).Inc()
	}
	cp.log.Info("canary soaked without NACK or health-gate breach; promoted to the fleet", "version", cand.Version, "verdict", verdict, "note", note)
	cp.reportWhenACKed(ctx, cand, append(publishedReports(cand), cp.takeDeleted(cand)...))
}

// takeDeleted returns the pending deletion reports for specs that the
// now-live result res no longer serves and keeps those it still serves; a
// spec created again after its deletion needs no deletion report.
func (cp *ControlPlane) takeDeleted(res *compile.Result) []report {
	live := map[string]int64{}
	for _, s := range res.Published() {
		live[s.Name] = s.Revision
	}
	var out, keep []report
	for _, d := range cp.deleted {
		rev, ok := live[d.spec]
		switch {
		case !ok:
			out = append(out, d)
		case rev > d.revision:
			// created again after the deletion: nothing left to confirm
		default:
			keep = append(keep, d)
		}
	}
	cp.deleted = keep
	return out
}

func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}

// ackGate holds the "published" reports of the newest publication until
// the nodes serve it: published means ACKed, not merely set in a snapshot.
type ackGate struct {
	mu      sync.Mutex
	pending *pendingACK
	started sync.Once
	// history are the last results published, newest last, to find
	// the one a node still runs.
	history []*compile.Result
	// done tells the loop which groups ACKed a publication.
	done chan ackedVersion
}

// pendingACK is one publication waiting for ACKs.
type pendingACK struct {
	versions map[string]string // node group → the version it is served
	reports  []report
	// serves are the node groups of each published spec (empty: all).
	serves map[string][]string
}

// ackedVersion is a publication the nodes have ACKed: for each group
// the version they ACKed ("" for a group with no connected node).
type ackedVersion map[string]string

const historyLen = 16

// ackPoll is how often the node tracker is read while reports wait.
const ackPoll = 50 * time.Millisecond

// reportWhenACKed reports reps once, in every node group the publisher
// serves, PublishQuorum connected nodes (or all, when fewer are
// connected) have ACKed the group's version. A group with no connected
// node holds nothing back: no node there can serve the spec. A newer
// publication replaces a pending one, taking over the reports it does
// not itself carry.
func (cp *ControlPlane) reportWhenACKed(ctx context.Context, res *compile.Result, reps []report) {
	served := cp.pub.State().Served
	p := &pendingACK{versions: make(map[string]string, len(served)), reports: reps, serves: map[string][]string{}}
	for g, v := range served {
		p.versions[g] = v
	}
	for _, s := range res.Published() {
		p.serves[s.Name] = s.NodeGroups
	}
	cp.acks.mu.Lock()
	cp.acks.history = append(cp.acks.history, res)
	if len(cp.acks.history) > historyLen {
		cp.acks.history = cp.acks.history[1:]
	}
	if old := cp.acks.pending; old != nil {
		have := map[string]bool{}
		for _, r := range reps {
			have[r.spec] = true
		}
		for _, r := range old.reports {
			if !have[r.spec] {
				p.reports = append(p.reports, r)
				if g, ok := old.serves[r.spec]; ok {
					p.serves[r.spec] = g
				}
			}
		}
	}
	cp.acks.pending = p
	cp.acks.mu.Unlock()
	cp.acks.started.Do(func() { go cp.ackLoop(ctx) })
	cp.checkACKs()
}

func (cp *ControlPlane) ackLoop(ctx context.Context) {
	t := time.NewTicker(ackPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cp.checkACKs()
		}
	}
}

// checkACKs reports the pending publication when its nodes have ACKed it.
func (cp *ControlPlane) checkACKs() {
	cp.acks.mu.Lock()
	p := cp.acks.pending
	cp.acks.mu.Unlock()
	if p == nil {
		return
	}
	waiting, unconnected := ackWaiting(cp.xds.Nodes(), p.versions, cp.cfg.PublishQuorum)
	if len(waiting) > 0 {
		return
	}
	cp.acks.mu.Lock()
	if cp.acks.pending != p {
		cp.acks.mu.Unlock()
		return // a newer publication took over
	}
	cp.acks.pending = nil
	cp.acks.mu.Unlock()
	reps := p.reports
	if len(unconnected) > 0 {
		cp.log.Info("published; no node of group "+strings.Join(unconnected, ", ")+" connected", "groups", unconnected)
		reps = withUnconnectedNotes(reps, p.serves, unconnected)
	}
	cp.report(reps)
	acked := ackedVersion{}
	for g, v := range p.versions {
		if slices.Contains(unconnected, g) {
			v = "" // nothing there ACKed it
		}
		acked[g] = v
	}
	select {
	case cp.acks.done <- acked:
	default:
	}
}

// withUnconnectedNotes returns reps with a note on each published spec
// that a node group with no connected node serves: "published; no node
// of group G connected" (groups sorted, comma-separated). serves maps a
// spec to its node groups (empty: every group); a spec not in it (a
// deletion) gets no note.
func withUnconnectedNotes(reps []report, serves map[string][]string, unconnected []string) []report {
	unconnected = slices.Sorted(slices.Values(unconnected))
	out := make([]report, len(reps))
	for i, r := range reps {
		out[i] = r
		groups, ok := serves[r.spec]
		if r.err != nil || !ok {
			continue
		}
		var none []string
		for _, g := range unconnected {
			if len(groups) == 0 || slices.Contains(groups, g) {
				none = append(none, g)
			}
		}
		if len(none) > 0 {
			out[i].note = "published; no node of group " + strings.Join(none, ", ") + " connected"
		}
	}
	return out
}

// ackWaiting returns the node groups still short of quorum ACKs of their
// version, and those with no connected node (which hold nothing back). A
// node has ACKed a version when it runs it: every resource type it has
// ACKed is at that version's version of the type (xds.NodeStatus.Revision;
// a type the version left unchanged is not re-sent, its ACK stands).
func ackWaiting(nodes []xds.NodeStatus, versions map[string]string, quorum int) (waiting, unconnected []string) {
	connected := map[string]int{}
	acked := map[string]int{}
	for _, n := range nodes {
		v, ok := versions[n.NodeGroup]
		if !ok {
			continue
		}
		connected[n.NodeGroup]++
		if n.Revision == v {
			acked[n.NodeGroup]++
		}
	}
	for g := range versions {
		switch c := connected[g]; {
		case c == 0:
			unconnected = append(unconnected, g)
		case acked[g] < min(quorum, c):
			waiting = append(waiting, g)
		}
	}
	sort.Strings(waiting)
	sort.Strings(unconnected)
	return waiting, unconnected
}

// fleetRejects are the specs pruned because a node outside the canary
// group NACKed the version that brought them, and the bisection that
// finds them when a version brought several.
type fleetRejects struct {
	rejected map[string]rejectedSpec // by origin
	bisect   *bisection
}

// rejectedSpec is a pruned spec; it stays out until its content changes.
type rejectedSpec struct {
	name   string
	hash   [32]byte
	reason error
}

// bisection narrows down which of the specs new in a NACKed version the
// group rejects: the probe half is published without the rest; an ACK
// clears the probe, a NACK convicts it.
type bisection struct {
	group        string
	reason       string
	suspects     []string          // origins, one of which the group rejects
	names        map[string]string // origin → spec name
	probe        []string          // origins of suspects in the probe version
	probeVersion string
}

// withoutRejected drops the pruned specs (and, during a bisection, the
// suspects left out of the probe) from rev, returning a failed report for
// each pruned one. A pruned spec whose content changed gets a new chance.
func (cp *ControlPlane) withoutRejected(rev source.Revision) (source.Revision, []report) {
	fr := &cp.rejects
	if len(fr.rejected) == 0 && fr.bisect == nil {
		return rev, nil
	}
	held := map[string]bool{}
	if b := fr.bisect; b != nil {
		for _, o := range b.suspects {
			if !slices.Contains(b.probe, o) {
				held[o] = true
			}
		}
	}
	var keep []source.Spec
	var pruned []report
	for _, s := range rev.Specs {
		if r, ok := fr.rejected[s.Origin]; ok {
			if r.hash == sha256.Sum256(s.Data) {
				name := s.Name
				if name == "" {
					name = r.name // a file: named by its content
				}
				pruned = append(pruned, report{spec: name, revision: s.Revision, err: r.reason})
				continue
			}
			delete(fr.rejected, s.Origin)
		}
		if held[s.Origin] {
			continue
		}
		keep = append(keep, s)
	}
	rev.Specs = keep
	return rev, pruned
}

// fleetRejected handles a NACK from a node outside the canary group of
// the version its group is served: the specs new in that version (against
// the version the node still runs) are the suspects; one is pruned at
// once, several are bisected. It reports whether a canary soak started.
func (cp *ControlPlane) fleetRejected(ctx context.Context, n xds.NACK) bool {
	if cp.lastRev == nil || (cp.cfg.CanaryGroup != "" && n.NodeGroup == cp.cfg.CanaryGroup) {
		return false
	}
	res := cp.pub.Served(n.NodeGroup)
	if res == nil || res.GroupVersion(n.NodeGroup) != n.Version {
		return false // an old version: the node has a newer one coming
	}
	reason := fmt.Sprintf("node %s (group %s) rejected version %s (%s): %s", n.NodeID, n.NodeGroup, n.Version, shortType(n.TypeURL), n.Message)
	if b := cp.rejects.bisect; b != nil {
		if n.NodeGroup != b.group || n.Version != b.probeVersion {
			return false
		}
		b.suspects, b.reason = b.probe, reason
		return cp.bisectStep(ctx)
	}
	base := cp.resultRunBy(n)
	var suspects []string
	names := map[string]string{}
	for _, s := range res.Published() {
		if (len(s.NodeGroups) == 0 || slices.Contains(s.NodeGroups, n.NodeGroup)) && (base == nil || !base.Has(s)) {
			suspects = append(suspects, s.Origin)
			names[s.Origin] = s.Name
		}
	}
	if len(suspects) == 0 {
		cp.log.Warn("a node rejected a version with no new spec for its group; nothing to prune", "node_id", n.NodeID, "node_group", n.NodeGroup, "version", n.Version)
		return false
	}
	sort.Strings(suspects)
	cp.rejects.bisect = &bisection{group: n.NodeGroup, reason: reason, suspects: suspects, names: names}
	cp.log.Warn("a node outside the canary group rejected a version; finding the specs it brought", "node_id", n.NodeID, "node_group", n.NodeGroup, "version", n.Version, "suspects", len(suspects))
	return cp.bisectStep(ctx)
}

// resultRunBy is the published result whose version the NACKing node
// still runs (nil when unknown: then every spec of its group is new).
func (cp *ControlPlane) resultRunBy(n xds.NACK) *compile.Result {
	var acked string
	for _, ns := range cp.xds.Nodes() {
		if ns.NodeID == n.NodeID && ns.NodeGroup == n.NodeGroup {
			acked = ns.Revision
		}
	}
	if acked == "" {
		return nil
	}
	cp.acks.mu.Lock()
	defer cp.acks.mu.Unlock()
	for i := len(cp.acks.history) - 1; i >= 0; i-- {
		if r := cp.acks.history[i]; r.GroupVersion(n.NodeGroup) == acked {
			return r
		}
	}
	return nil
}

// bisectStep prunes the one suspect left, or publishes a probe with the
// first half of the suspects and the rest held back.
func (cp *ControlPlane) bisectStep(ctx context.Context) bool {
	b := cp.rejects.bisect
	if len(b.suspects) == 1 {
		origin := b.suspects[0]
		cp.rejects.bisect = nil
		var hash [32]byte
		for _, s := range cp.lastRev.Specs {
			if s.Origin == origin {
				hash = sha256.Sum256(s.Data)
			}
		}
		if cp.rejects.rejected == nil {
			cp.rejects.rejected = map[string]rejectedSpec{}
		}
		cp.rejects.rejected[origin] = rejectedSpec{name: b.names[origin], hash: hash, reason: fmt.Errorf("pruned: %s", b.reason)}
		cp.log.Warn("spec pruned: a node outside the canary group rejected it; republishing the rest", "origin", origin, "reason", b.reason)
		return cp.rebuild(ctx, *cp.lastRev)
	}
	b.probe = b.suspects[:len(b.suspects)/2]
	soaking := cp.rebuild(ctx, *cp.lastRev)
	if r := cp.pub.Served(b.group); r != nil {
		b.probeVersion = r.GroupVersion(b.group)
	}
	return soaking
}

// versionACKed moves a bisection on when the group ACKed its probe: the
// probe's suspects are cleared, the rest stay suspected.
func (cp *ControlPlane) versionACKed(ctx context.Context, a ackedVersion) bool {
	b := cp.rejects.bisect
	if b == nil || b.probeVersion == "" {
		return false
	}
	if v, ok := a[b.group]; ok && v == "" {
		// The group's nodes left: no one is left to tell; ship everything.
		cp.log.Warn("bisection abandoned: no node of the rejecting group is connected", "node_group", b.group)
		cp.rejects.bisect = nil
		return cp.rebuild(ctx, *cp.lastRev)
	}
	if a[b.group] != b.probeVersion {
		return false
	}
	var rest []string
	for _, o := range b.suspects {
		if !slices.Contains(b.probe, o) {
			rest = append(rest, o)
		}
	}
	b.suspects, b.probe = rest, nil
	return cp.bisectStep(ctx)
}
