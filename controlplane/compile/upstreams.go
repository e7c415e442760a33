package compile

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// nodeServices are the addresses of the node's own services the compiler
// knows: the sidecars, Envoy admin, Envoy's own listeners, and
// o.NodeServices (the running role's own listen addresses). A spec
// upstream naming one is refused even when o.UpstreamAllow covers it.
// Envoy admin bound to every address (0.0.0.0:9901) reserves its port on
// every address: any node of the fleet answers there.
func nodeServices(o Options) []spec.NodeService {
	admin := o.EnvoyAdmin
	if admin == "" {
		admin = contract.DefaultEnvoyAdminAddr // the bootstrap's default
	}
	out := []spec.NodeService{
		{Addr: o.Sidecars.Authz, What: "the authz sidecar"},
		{Addr: o.Sidecars.RateLimit, What: "the ratelimit sidecar"},
		{Addr: o.Sidecars.AccessLog, What: "the accesslog sidecar"},
		{Addr: admin, What: "Envoy admin", AllAddresses: unspecifiedHost(admin)},
		{Addr: o.HTTPAddress, What: "Envoy's own HTTP listener"},
	}
	if o.CertDir != "" {
		out = append(out, spec.NodeService{Addr: o.HTTPSAddress, What: "Envoy's own HTTPS listener"})
	}
	return append(out, o.NodeServices...)
}

// checkPolicyOptions: the addresses of the options are host:port.
func checkPolicyOptions(o Options) error {
	if o.EnvoyAdmin != "" {
		if _, _, err := net.SplitHostPort(o.EnvoyAdmin); err != nil {
			return fmt.Errorf("the Envoy admin address %q: want host:port", o.EnvoyAdmin)
		}
	}
	for _, s := range o.NodeServices {
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			return fmt.Errorf("node service address %q (%s): want host:port", s.Addr, s.What)
		}
	}
	return nil
}

func unspecifiedHost(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(h)
	return h == "" || err == nil && ip.IsUnspecified()
}

// NodeServices are the node-service addresses a compiler with options o
// refuses as upstreams (defaults filled in as New does): for checks
// outside a compiler, e.g. `gatehouse spec validate`.
func NodeServices(o Options) []spec.NodeService {
	if o.Sidecars == (envoy.Sidecars{}) {
		o.Sidecars = envoy.DefaultSidecars
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = contract.DefaultEnvoyHTTPAddr
	}
	if o.HTTPSAddress == "" {
		o.HTTPSAddress = contract.DefaultEnvoyHTTPSAddr
	}
	return nodeServices(o)
}

// specPolicy is the validation policy of the compiler's options.
func specPolicy(o Options) spec.Policy {
	return spec.Policy{Upstreams: spec.UpstreamPolicy{Allow: o.UpstreamAllow, Reserved: nodeServices(o)}}
}
