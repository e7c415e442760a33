package spec

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Policy is what the platform, not the spec, decides about validation.
// The zero Policy is the production default; Validate and Load use it.
type Policy struct {
	Upstreams UpstreamPolicy
}

// UpstreamPolicy says which addresses spec upstreams (endpoints and dns)
// may name. A tenant's upstream must never point Envoy at the node it
// runs on or at the platform: loopback, link-local (cloud metadata),
// unspecified, multicast and broadcast addresses, localhost and
// single-label names, and the node's own services are refused. Private
// ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: tenant
// backends live there.
type UpstreamPolicy struct {
	// Allow lifts the refusal of the addresses it covers (operators:
	// --upstream-allow).
	Allow UpstreamAllow
	// Reserved are the node's own services (Envoy admin, the sidecars,
	// the control plane, the broker): an upstream naming one is refused
	// even when Allow covers it. A reserved address with an unspecified
	// host (0.0.0.0:9901, [::]:9901, :9901) reserves its port on every
	// loopback and unspecified address and on localhost.
	Reserved []NodeService
}

// NodeService is one address of the node's own services and what listens
// there ("authz sidecar", "Envoy admin").
type NodeService struct {
	Addr string // host:port
	What string
	// AllAddresses reserves the port on every address, private ones
	// included: a service every node of the fleet exposes there (Envoy
	// admin bound to 0.0.0.0).
	AllAddresses bool
}

// UpstreamAllow is a parsed --upstream-allow list: CIDRs, and exact
// host:port entries (an IP or a DNS name).
type UpstreamAllow struct {
	prefixes  []netip.Prefix
	hostPorts map[string]bool // normalised host:port
}

// ParseUpstreamAllow parses allow-list entries: a CIDR ("10.0.0.0/8",
// "127.0.0.1/32"), a single IP (its /32 or /128), or host:port
// ("127.0.0.1:9080", "[::1]:8080", "legacy-api:8080"). Empty entries are
// skipped.
func ParseUpstreamAllow(entries []string) (UpstreamAllow, error) {
	var a UpstreamAllow
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			a.prefixes = append(a.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil && ip.Zone() == "" {
			a.prefixes = append(a.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		key, ok := hostPortKey(e)
		if !ok {
			return UpstreamAllow{}, fmt.Errorf("upstream allow-list entry %q: want a CIDR (10.0.0.0/8), an IP, or host:port (127.0.0.1:9080, api.internal:8080)", e)
		}
		if a.hostPorts == nil {
			a.hostPorts = map[string]bool{}
		}
		a.hostPorts[key] = true
	}
	return a, nil
}

// MustParseUpstreamAllow is ParseUpstreamAllow for constant lists; it
// panics on a bad entry.
func MustParseUpstreamAllow(entries ...string) UpstreamAllow {
	a, err := ParseUpstreamAllow(entries)
	if err != nil {
		panic(err)
	}
	return a
}

// Empty reports whether the list allows nothing.
func (a UpstreamAllow) Empty() bool { return len(a.prefixes) == 0 && len(a.hostPorts) == 0 }

// String lists the entries in a canonical form (part of the compile
// options key).
func (a UpstreamAllow) String() string {
	var out []string
	for _, p := range a.prefixes {
		out = append(out, p.String())
	}
	for hp := range a.hostPorts {
		out = append(out, hp)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// hostPortKey normalises host:port: IPs in their canonical form
// (IPv4-mapped IPv6 unmapped), names in lower case.
func hostPortKey(s string) (string, bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", false
		}
		return netip.AddrPortFrom(ip.Unmap(), uint16(n)).String(), true
	}
	host = strings.ToLower(host)
	if host != "" && (!isHost(host) || strings.HasPrefix(host, "*")) {
		return "", false
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), true
}

// Well-known addresses of cloud platforms' metadata and control services
// that are not link-local.
var platformAddrs = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("fd00:ec2::/32"), "the AWS instance metadata and DNS service range"},
	{netip.MustParsePrefix("168.63.129.16/32"), "the Azure platform (wire server) address"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the Alibaba Cloud metadata address"},
}

// loopbackDomains are public domains whose every name resolves to
// 127.0.0.1.
var loopbackDomains = []string{"localtest.me", "lvh.me", "vcap.me", "localhost.direct", "lacolhost.com"}

// nodeNames are DNS names that mean the node itself or its platform.
var nodeNames = map[string]string{
	"localhost":                  "localhost",
	"localhost.localdomain":      "localhost",
	"metadata.google.internal":   "a cloud metadata service",
	"metadata.goog":              "a cloud metadata service",
	"instance-data.ec2.internal": "a cloud metadata service",
}

// check reports why the upstream address s (host:port, syntax already
// checked) may not be used, or nil.
func (p *UpstreamPolicy) check(s string) error {
	key, ok := hostPortKey(s)
	if !ok {
		return nil // a syntax error, reported by checkHostPort
	}
	host, portStr, _ := net.SplitHostPort(key)
	port, _ := strconv.Atoi(portStr)
	ip, ipErr := netip.ParseAddr(host)
	isIP := ipErr == nil
	for _, r := range p.Reserved {
		if reservedMatch(r.Addr, host, ip, isIP, port) || r.AllAddresses && reservedPort(r.Addr) == port {
			what := r.What
			if what == "" {
				what = "one of the node's own services"
			}
			return fmt.Errorf("%q is the address of %s on the node; an upstream may never point there", s, what)
		}
	}
	if p.Allow.hostPorts[key] {
		return nil
	}
	if isIP {
		why := forbiddenIP(ip)
		if why == "" {
			return nil
		}
		for _, pr := range p.Allow.prefixes {
			if pr.Contains(ip) {
				return nil
			}
		}
		return fmt.Errorf("%q is %s: upstreams may not point at the node or the platform (an operator can allow it with --upstream-allow)", s, why)
	}
	if why := forbiddenName(host); why != "" {
		return fmt.Errorf("%q: %s: upstreams may not point at the node or the platform (an operator can allow it with --upstream-allow)", s, why)
	}
	return nil
}

// reservedMatch reports whether host:port is the reserved address r.
func reservedMatch(r, host string, ip netip.Addr, isIP bool, port int) bool {
	rk, ok := hostPortKey(r)
	if !ok {
		return false
	}
	rh, rp, _ := net.SplitHostPort(rk)
	if rp != strconv.Itoa(port) {
		return false
	}
	rip, err := netip.ParseAddr(rh)
	switch {
	case rh == "" || err == nil && rip.IsUnspecified():
		// Bound on every address: the node's loopback and unspecified
		// addresses, and localhost, reach it.
		if isIP {
			return ip.IsLoopback() || ip.IsUnspecified()
		}
		return isLocalhostName(host)
	case err == nil:
		return isIP && ip == rip || !isIP && rip.IsLoopback() && isLocalhostName(host)
	case isLocalhostName(rh):
		return isIP && ip.IsLoopback() || !isIP && isLocalhostName(host)
	default:
		return !isIP && strings.EqualFold(host, rh)
	}
}

// reservedPort is the port of host:port r, or -1.
func reservedPort(r string) int {
	_, p, err := net.SplitHostPort(r)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}

func isLocalhostName(h string) bool {
	return h == "localhost" || strings.HasSuffix(h, ".localhost") || h == "localhost.localdomain"
}

// forbiddenIP names the kind of a refused IP, or "" when it is allowed.
func forbiddenIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		// IPv4 embedded in NAT64 (64:ff9b::/96) or IPv4-compatible
		// (::/96) form reaches the IPv4 address.
		b := ip.As16()
		nat64 := netip.MustParsePrefix("64:ff9b::/96")
		compat := netip.MustParsePrefix("::/96")
		if nat64.Contains(ip) || compat.Contains(ip) && !ip.IsUnspecified() && ip != netip.IPv6Loopback() {
			v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
			if why := forbiddenIP(v4); why != "" {
				return why + " (embedded in " + ip.String() + ")"
			}
		}
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address (the node itself: Envoy admin, the sidecars)"
	case ip.IsUnspecified(), ip.Is4() && ip.As4()[0] == 0:
		return "an unspecified address (the node itself)"
	case ip.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata services live there)"
	case ip.IsMulticast():
		return "a multicast address"
	case ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case ip.Is4() && ip.As4()[0] >= 240:
		return "a reserved address (240.0.0.0/4)"
	}
	for _, pa := range platformAddrs {
		if pa.prefix.Contains(ip) {
			return pa.what
		}
	}
	return ""
}

// forbiddenName names why a DNS name is refused, or "".
func forbiddenName(h string) string {
	h = strings.ToLower(h)
	if what, ok := nodeNames[h]; ok {
		return fmt.Sprintf("%q is %s", h, what)
	}
	if isLocalhostName(h) {
		return fmt.Sprintf("%q is under .localhost, the node itself", h)
	}
	labels := strings.Split(h, ".")
	if len(labels) == 1 {
		return fmt.Sprintf("%q is a single-label name, resolved by the node's search domains (use a fully qualified name)", h)
	}
	if last := labels[len(labels)-1]; last != "" && last[0] >= '0' && last[0] <= '9' {
		return fmt.Sprintf("%q ends in a numeric label: resolvers read it as an IP address", h)
	}
	for _, d := range loopbackDomains {
		if h == d || strings.HasSuffix(h, "."+d) {
			return fmt.Sprintf("%q is under %s, a public domain that resolves to the loopback address", h, d)
		}
	}
	// Wildcard-DNS names spell the address they resolve to:
	// 127.0.0.1.nip.io, 169-254-169-254.sslip.io.
	for i := 0; i+4 <= len(labels); i++ {
		if ip, err := netip.ParseAddr(strings.Join(labels[i:i+4], ".")); err == nil && forbiddenIP(ip) != "" {
			return fmt.Sprintf("%q spells %s, %s", h, ip, forbiddenIP(ip))
		}
	}
	for _, l := range labels {
		if ip, err := netip.ParseAddr(strings.ReplaceAll(l, "-", ".")); err == nil && ip.Is4() && forbiddenIP(ip) != "" {
			return fmt.Sprintf("%q spells %s, %s", h, ip, forbiddenIP(ip))
		}
	}
	return ""
}
