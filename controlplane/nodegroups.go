package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
)

// Defaults of the node-group admission.
const (
	DefaultMaxNodeGroups = 64
	DefaultGroupGrace    = 10 * time.Minute
)

// groupAdmission decides which node groups get snapshots. With a fixed
// list (--node-groups), exactly those. Without it: the groups the specs,
// the canary and proxyless options name; the group an authenticated
// node's certificate names; and, for nodes without a certificate
// (plaintext on loopback, or TLS without a client CA), any other group up
// to MaxNodeGroups. Groups no node uses are dropped after GroupGrace.
type groupAdmission struct {
	cp *ControlPlane

	mu      sync.Mutex
	dynamic map[string]bool // groups admitted under the cap
}

func (a *groupAdmission) admit(group string, authenticated bool) error {
	cfg := a.cp.cfg
	if len(cfg.NodeGroups) > 0 {
		if slices.Contains(cfg.NodeGroups, group) {
			return nil
		}
		return fmt.Errorf("not one of --node-groups %v", cfg.NodeGroups)
	}
	if authenticated || a.named(group) {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dynamic[group] {
		return nil
	}
	if len(a.dynamic) >= cfg.MaxNodeGroups {
		return fmt.Errorf("no spec names it and %d node groups (--max-node-groups) are served already", cfg.MaxNodeGroups)
	}
	a.dynamic[group] = true
	return nil
}

// named reports whether the configuration or a spec names group.
func (a *groupAdmission) named(group string) bool {
	cfg := a.cp.cfg
	if group == cfg.CanaryGroup || slices.Contains(cfg.Compile.ProxylessGroups, group) || slices.Contains(cfg.Compile.ScopedRouteGroups, group) {
		return true
	}
	for _, res := range []*compile.Result{a.cp.pub.Good(), a.cp.pub.Served(cfg.CanaryGroup)} {
		if res != nil && slices.Contains(res.NodeGroups(), group) {
			return true
		}
	}
	return false
}

// collect drops the groups without a stream for longer than the grace
// period, every grace/4, until ctx ends.
func (a *groupAdmission) collect(ctx context.Context) {
	grace := a.cp.cfg.GroupGrace
	t := time.NewTicker(max(grace/4, 10*time.Millisecond))
	defer t.Stop()
	idleSince := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := a.cp.cfg.Now()
		served := a.cp.pub.State().Served
		for g := range idleSince {
			if _, ok := served[g]; !ok {
				delete(idleSince, g)
			}
		}
		for g := range served {
			if a.cp.xds.Connected(g) > 0 || a.named(g) || slices.Contains(a.cp.cfg.NodeGroups, g) {
				delete(idleSince, g)
				continue
			}
			since, ok := idleSince[g]
			if !ok {
				idleSince[g] = now
				continue
			}
			if now.Sub(since) < grace {
				continue
			}
			if a.cp.pub.Forget(g, func() bool { return a.cp.xds.Connected(g) == 0 }) {
				a.mu.Lock()
				delete(a.dynamic, g)
				a.mu.Unlock()
				a.cp.metrics.groupsDropped.Inc()
			}
			delete(idleSince, g)
		}
	}
}
