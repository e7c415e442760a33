package compile

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// DefaultMaxJWKSURIsPerGroup is Options.MaxJWKSURIsPerGroup's default.
const DefaultMaxJWKSURIsPerGroup = 64

// admitJWKS keeps the specs whose JWKS URIs fit every node group's cap,
// admitting the longest-standing first (lowest store revision, then source
// order), so a new spec cannot push out one already serving; the rest are
// marked failed.
func admitJWKS(specs []*Spec, max int) []*Spec {
	order := slices.Clone(specs)
	slices.SortStableFunc(order, func(a, b *Spec) int { return cmp.Compare(a.Revision, b.Revision) })
	budget := newJWKSBudget(max)
	for _, s := range order {
		if err := budget.admit(s); err != nil {
			s.Err = err
		}
	}
	return slices.DeleteFunc(specs, func(s *Spec) bool { return s.Err != nil })
}

// jwksBudget counts the distinct JWKS URIs each node group's authz
// sidecars would fetch. Specs are admitted in source order; one that would
// take a group over the cap is left out (and reported) like any other bad
// spec, so the specs already serving keep serving.
type jwksBudget struct {
	max    int
	every  map[string]bool            // URIs of specs serving every group
	groups map[string]map[string]bool // URIs of specs naming the group
}

func newJWKSBudget(max int) *jwksBudget {
	return &jwksBudget{max: max, every: map[string]bool{}, groups: map[string]map[string]bool{}}
}

// admit adds s's JWKS URIs, or says which group they would overfill.
func (b *jwksBudget) admit(s *Spec) error {
	var uris []string
	if s.policy != nil {
		for _, p := range s.policy.Providers {
			if p.JWT != nil && p.JWT.JWKSURI != "" {
				uris = append(uris, p.JWT.JWKSURI)
			}
		}
	}
	if len(uris) == 0 || b.max <= 0 {
		return nil
	}
	groups := s.NodeGroups
	if len(groups) == 0 {
		// Serves every group: the ones named so far, and any other.
		groups = []string{""}
		for g := range b.groups {
			groups = append(groups, g)
		}
		sort.Strings(groups)
	}
	for _, g := range groups {
		distinct := make(map[string]bool, len(b.every)+len(b.groups[g])+len(uris))
		for _, set := range []map[string]bool{b.every, b.groups[g]} {
			for u := range set {
				distinct[u] = true
			}
		}
		for _, u := range uris {
			distinct[u] = true
		}
		if n := len(distinct); n > b.max {
			name := fmt.Sprintf("node group %q", g)
			if g == "" {
				name = "every node group"
			}
			return fmt.Errorf("%s: spec %s: spec.identity.jwt: %s would fetch %d distinct JWKS URIs, over the control plane's cap of %d (--max-jwks-uris-per-group); spec left out", s.Origin, s.Name, name, n, b.max)
		}
	}
	if len(s.NodeGroups) == 0 {
		for _, u := range uris {
			b.every[u] = true
		}
		return nil
	}
	for _, g := range s.NodeGroups {
		if b.groups[g] == nil {
			b.groups[g] = map[string]bool{}
		}
		for _, u := range uris {
			b.groups[g][u] = true
		}
	}
	return nil
}
