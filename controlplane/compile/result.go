package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Resources are one node group's xDS resources by type URL.
type Resources map[string][]types.Resource

// Result is one compiled revision: the status of every spec and, per node
// group, the resources to publish. It is immutable.
type Result struct {
	// Revision is the source revision id; Version identifies the whole
	// result. A node group's revision is its GroupVersion, which changes
	// only when the group's content does; each resource type of the group
	// is versioned by its own bytes (controlplane/snapshot), so a change
	// re-sends only the types, and in a scoped group the route tables,
	// that it changed.
	Revision, Version string
	// Specs is every spec of the revision in source order, published or
	// not (Spec.Err).
	Specs []*Spec
	// EmptyOK: publishing this result without any spec is deliberate
	// (the source vouched for an empty store; see source.Revision.EmptyOK).
	EmptyOK bool

	published []*Spec // sorted by name
	opts      Options
	optsKey   string
	shared    *groupCache
	sidecars  []*clusterv3.Cluster

	mu       sync.Mutex
	groups   map[string]groupResult
	versions map[string]string
}

type groupResult struct {
	res      Resources
	warnings []string
	err      error
}

// Published are the specs that made it into the config, by name.
func (r *Result) Published() []*Spec { return r.published }

// Has reports whether r published s with the same content.
func (r *Result) Has(s *Spec) bool {
	i := sort.Search(len(r.published), func(i int) bool { return r.published[i].Name >= s.Name })
	return i < len(r.published) && r.published[i].Name == s.Name && r.published[i].key == s.key && slices.Equal(r.published[i].NodeGroups, s.NodeGroups)
}

// Failed are the specs left out.
func (r *Result) Failed() []*Spec {
	var out []*Spec
	for _, s := range r.Specs {
		if s.Err != nil {
			out = append(out, s)
		}
	}
	return out
}

// NodeGroups are the node groups the published specs name explicitly.
// Specs without nodeGroups serve every group, including ones not listed.
func (r *Result) NodeGroups() []string {
	set := map[string]bool{}
	for _, s := range r.published {
		for _, g := range s.NodeGroups {
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

// GroupVersion is the xDS version string of a node group's resources: a
// hash of exactly what the group is served (its specs' content and the
// compile options). It is also the gatehouse.revision the authz sidecar
// sees. Safe for concurrent use.
func (r *Result) GroupVersion(group string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.groupVersion(group)
}

func (r *Result) groupVersion(group string) string {
	if v, ok := r.versions[group]; ok {
		return v
	}
	h := sha256.New()
	h.Write([]byte(r.optsKey))
	for _, s := range r.published {
		if s.servesGroup(group) {
			fmt.Fprintf(h, "\x00%s\x00%s\x00%v", s.Name, s.key, s.NodeGroups)
		}
	}
	v := hex.EncodeToString(h.Sum(nil)[:8])
	r.versions[group] = v
	return v
}

// Resources returns (building on first use) the validated resources of a
// node group and the warnings about them (limits envoyproxy/ratelimit
// cannot serve). Safe for concurrent use.
func (r *Result) Resources(group string) (Resources, []string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g, ok := r.groups[group]; ok {
		return g.res, g.warnings, g.err
	}
	res, warnings, err := r.build(group)
	if err != nil {
		err = fmt.Errorf("node group %s, version %s: %w", group, r.groupVersion(group), err)
	}
	r.groups[group] = groupResult{res, warnings, err}
	return res, warnings, err
}

// SpecRouteVersion is the version a spec's own route table carries in the
// scoped layout (the gatehouse.revision its ext_authz checks see): a hash
// of the spec's content and the compile options, so it changes only when
// that spec does.
func (r *Result) SpecRouteVersion(s *Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", r.optsKey, s.Name, s.key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// ServedVersion is the version string a request on route (a route id,
// "<spec>/<route>") of a node group carries to the authz sidecar and the
// access log (gatehouse.revision, config_version): the group's
// GroupVersion, or in the scoped route layout the route's spec's
// SpecRouteVersion. Empty when the group serves no such spec. Safe for
// concurrent use.
func (r *Result) ServedVersion(group, route string) string {
	specName, _, _ := strings.Cut(route, "/")
	i := sort.Search(len(r.published), func(i int) bool { return r.published[i].Name >= specName })
	if i == len(r.published) || r.published[i].Name != specName || !r.published[i].servesGroup(group) {
		return ""
	}
	if scoped, _ := r.scopedLayout(group); scoped {
		return r.SpecRouteVersion(r.published[i])
	}
	return r.GroupVersion(group)
}
