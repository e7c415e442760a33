package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/source"
)

// The pipeline step: the loop (controlplane.go) hands each revision,
// after its hold-off, to rebuild, which compiles it, publishes the result
// (to the fleet, or to the canary group: rollout.go takes it from there)
// and reports what became of each spec (report.go).

// rebuild compiles rev and publishes it (to everyone, or to the canary).
// It reports whether a canary soak started.
func (cp *ControlPlane) rebuild(ctx context.Context, rev source.Revision) bool {
	last := rev
	last.Deleted = nil
	cp.lastRev = &last
	rev, pruned := cp.withoutRejected(rev)
	start := time.Now()
	res := cp.compiler.Compile(rev)
	// Every spec deleted on purpose: serve the empty configuration (once
	// something was served; a fresh store has nothing to replace). A
	// glitch (a read error, specs that fail to parse) never gets here
	// with EmptyOK and keeps the last good config.
	res.EmptyOK = rev.EmptyOK && len(rev.Specs) == 0 && cp.pub.Good() != nil
	took := time.Since(start)
	defer cp.release.touch()
	cp.metrics.compileSeconds.Observe(took.Seconds())
	cp.metrics.specs.WithLabelValues("published").Set(float64(len(res.Published())))
	cp.metrics.specs.WithLabelValues("failed").Set(float64(len(res.Failed())))

	st := State{Revision: res.Revision, Version: res.Version, CompiledAt: cp.cfg.Now(), CompileTime: took.String()}
	for _, s := range res.Specs {
		ss := SpecStatus{Name: s.Name, Origin: s.Origin, Revision: s.Revision, Published: s.Err == nil}
		if s.Err != nil {
			ss.Error = s.Err.Error()
		}
		st.Specs = append(st.Specs, ss)
	}
	cp.log.Info("compiled", "revision", res.Revision, "version", res.Version, "published", len(res.Published()), "failed", len(res.Failed()), "took", took)
	for _, s := range res.Failed() {
		cp.log.Warn("spec left out", "spec", s.Name, "origin", s.Origin, "error", s.Err)
	}

	// Failed specs are reported now; published ones, and deletions, once
	// the fleet has them.
	for _, d := range rev.Deleted {
		cp.deleted = append(cp.deleted, report{spec: d.Name, revision: d.Revision})
	}
	failed := pruned
	for _, s := range res.Failed() {
		failed = append(failed, report{spec: s.Name, revision: s.Revision, err: s.Err})
	}
	for _, r := range pruned {
		st.Specs = append(st.Specs, SpecStatus{Name: r.spec, Revision: r.revision, Error: r.err.Error()})
	}

	var err error
	soaking := false
	if cp.cfg.CanaryGroup == "" || cp.pub.Good() == nil {
		err = cp.pub.PublishAll(ctx, res)
	} else {
		err = cp.pub.PublishCanary(ctx, cp.cfg.CanaryGroup, res)
		soaking = err == nil && cp.pub.Good() != res
	}
	cp.stateMu.Lock()
	prev := cp.state.Rollout
	st.CertError = cp.state.CertError
	cp.state = st
	switch {
	case err != nil:
		cp.state.Refused = err.Error()
		cp.state.Rollout = prev
	case soaking:
		cp.state.Rollout = Rollout{Phase: PhaseSoaking, CanaryGroup: cp.cfg.CanaryGroup, Candidate: res.GroupVersion(cp.cfg.CanaryGroup), Since: cp.cfg.Now()}
		cp.startWindow(res.GroupVersion(cp.cfg.CanaryGroup))
	default:
		cp.state.Rollout = Rollout{Phase: PhaseIdle}
	}
	cp.stateMu.Unlock()

	if err != nil && len(res.Specs) == 0 && cp.pub.Good() == nil {
		cp.log.Info("no EdgeRoute specs yet; nothing to serve until the first one arrives")
		return false
	}
	if err != nil {
		cp.log.Error("new version not published; the fleet keeps the last good one", "version", res.Version, "error", err)
		for _, s := range res.Published() {
			failed = append(failed, report{spec: s.Name, revision: s.Revision, err: fmt.Errorf("not published: %w", err)})
		}
		cp.report(failed)
		return false
	}
	if !soaking {
		cp.report(failed)
		cp.reportWhenACKed(ctx, res, append(publishedReports(res), cp.takeDeleted(res)...))
		return false
	}
	cp.report(failed)
	return true
}
