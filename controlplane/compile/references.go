package compile

import (
	"fmt"
	"github.com/gatehouse-edge/gatehouse/contract"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"

	"github.com/gatehouse-edge/gatehouse/authz"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// checkSpecReferences are the referential checks within one spec: every
// route's cluster is one of the spec's, every EDS cluster has endpoints,
// and the rate-limit rules the sidecar gets are exactly the limits Envoy
// asks about, with the same descriptor keys in the same order.
func checkSpecReferences(s *Spec, packed envoy.Packed) error {
	clusters := map[string]*clusterv3.Cluster{}
	for _, cl := range s.clusters {
		clusters[cl.GetName()] = cl
	}
	clas := map[string]bool{}
	for _, cla := range s.clas {
		clas[cla.GetClusterName()] = true
	}
	for name, cl := range clusters {
		if cl.GetType() == clusterv3.Cluster_EDS && !clas[cl.GetEdsClusterConfig().GetServiceName()] {
			return fmt.Errorf("cluster %s is EDS but has no endpoints", name)
		}
	}
	type limitKey struct{ route, name string }
	want := map[limitKey][]string{}
	for _, rt := range s.vhost.GetRoutes() {
		cl := rt.GetRoute().GetCluster()
		if _, ok := clusters[cl]; !ok {
			return fmt.Errorf("route %s: cluster %q does not exist", rt.GetName(), cl)
		}
		for i, rl := range rt.GetRoute().GetRateLimits() {
			acts := rl.GetActions()
			if len(acts) < 2 || acts[0].GetGenericKey().GetDescriptorKey() != "route" || acts[1].GetGenericKey().GetDescriptorKey() != "limit" {
				return fmt.Errorf("route %s: rate_limits[%d] does not start with the route and limit entries", rt.GetName(), i)
			}
			want[limitKey{acts[0].GetGenericKey().GetDescriptorValue(), acts[1].GetGenericKey().GetDescriptorValue()}] = descriptorKeys(acts)
		}
	}
	if err := checkAuthzReferences(s, packed); err != nil {
		return err
	}
	if s.rules != nil {
		got := map[limitKey]bool{}
		for _, l := range s.rules.Limits {
			k := limitKey{l.Route, l.Name}
			keys, ok := want[k]
			if !ok {
				return fmt.Errorf("rate-limit rule %s/%s has no Envoy rate_limits entry", l.Route, l.Name)
			}
			var ruleKeys []string
			for _, d := range l.Descriptor {
				ruleKeys = append(ruleKeys, d.Key)
			}
			if !slices.Equal(keys, ruleKeys) {
				return fmt.Errorf("rate limit %s/%s: Envoy sends descriptor keys %v but the sidecar rule expects %v", l.Route, l.Name, keys, ruleKeys)
			}
			got[k] = true
		}
		for k := range want {
			if !got[k] {
				return fmt.Errorf("route %s: limit %s has no rate-limit rule for the sidecar", k.route, k.name)
			}
		}
	}
	return nil
}

// descriptorKeys are the descriptor keys a rate_limits entry produces.
func descriptorKeys(acts []*routev3.RateLimit_Action) []string {
	keys := make([]string, 0, len(acts))
	for _, a := range acts {
		switch {
		case a.GetGenericKey() != nil:
			keys = append(keys, a.GetGenericKey().GetDescriptorKey())
		case a.GetRemoteAddress() != nil:
			keys = append(keys, "remote_address")
		case a.GetMaskedRemoteAddress() != nil:
			keys = append(keys, "masked_remote_address")
		case a.GetRequestHeaders() != nil:
			keys = append(keys, a.GetRequestHeaders().GetDescriptorKey())
		case a.GetMetadata() != nil:
			keys = append(keys, a.GetMetadata().GetDescriptorKey())
		default:
			keys = append(keys, "?")
		}
	}
	return keys
}

// checkAuthzReferences: the authz policy and the Envoy routes agree. Every
// route Envoy sends to ext_authz has a policy (or the sidecar would deny
// it), public routes have ext_authz disabled, the policy names no route
// Envoy lacks, and every identity.claim.<name> a rate limit reads is a
// claim the sidecar puts into the dynamic metadata.
func checkAuthzReferences(s *Spec, packed envoy.Packed) error {
	if s.policy == nil {
		return fmt.Errorf("no authz policy was compiled")
	}
	pols := map[string]authz.RoutePolicy{}
	for _, rp := range s.policy.Routes {
		pols[rp.ID] = rp
	}
	seen := map[string]bool{}
	for _, rt := range s.vhost.GetRoutes() {
		id := rt.GetName()
		seen[id] = true
		rp, ok := pols[id]
		a := rt.GetTypedPerFilterConfig()[contract.ExtAuthzFilter]
		per, known := packed[a].(*extauthzv3.ExtAuthzPerRoute)
		if !known || !a.MessageIs(per) {
			per = &extauthzv3.ExtAuthzPerRoute{}
			if err := a.UnmarshalTo(per); err != nil {
				return fmt.Errorf("route %s: ext_authz per-route config: %w", id, err)
			}
		}
		disabled := per.GetDisabled()
		switch {
		case !ok && !disabled:
			return fmt.Errorf("route %s: Envoy checks it with ext_authz but the authz policy has no entry for it", id)
		case ok && (rp.Mode == spec.ModePublic) != disabled:
			return fmt.Errorf("route %s: authz mode %s but ext_authz disabled=%v", id, rp.Mode, disabled)
		case !disabled && per.GetCheckSettings().GetContextExtensions()[contract.ContextRoute] != id:
			return fmt.Errorf("route %s: context extension %s is %q", id, contract.ContextRoute, per.GetCheckSettings().GetContextExtensions()[contract.ContextRoute])
		}
		claims := map[string]bool{}
		for _, c := range rp.MetadataClaims {
			claims[c] = true
		}
		for _, rl := range rt.GetRoute().GetRateLimits() {
			for _, a := range rl.GetActions() {
				md := a.GetMetadata()
				if md == nil {
					continue
				}
				path := md.GetMetadataKey().GetPath()
				if len(path) == 2 && path[0].GetKey() == "claims" && !claims[path[1].GetKey()] {
					return fmt.Errorf("route %s: a rate limit reads claim %q from the ext_authz metadata, but the authz policy does not put it there", id, path[1].GetKey())
				}
			}
		}
	}
	for id := range pols {
		if !seen[id] {
			return fmt.Errorf("authz policy names route %s, which Envoy does not have", id)
		}
	}
	return nil
}
