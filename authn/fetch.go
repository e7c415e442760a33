package authn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// AllowList names the JWKS endpoints an operator lets a fetch reach
// although they are internal: by default a JWKS fetch refuses loopback,
// link-local, private and other non-public addresses, and plain http.
// The zero value and nil allow nothing.
//
// Entries (ParseAllowList):
//   - a CIDR ("10.20.0.0/16") or an IP ("10.20.0.7"): addresses a
//     connection may reach, any port; a URL naming such an IP literally may
//     use plain http.
//   - an IP and port ("127.0.0.1:9081"): exactly that address.
//   - a host name ("idp.corp.internal") or host name and port: URLs with
//     that host may use plain http and connect to whatever it resolves to.
//     Trust in the name is trust in its DNS.
type AllowList struct {
	prefixes  []netip.Prefix
	addrPorts []netip.AddrPort
	hosts     []string // lower case, no port: any port
	hostPorts []string // lower case "host:port"
}

// ParseAllowList parses --jwks-allow entries (empty ones are skipped). An
// error names the entry and why it is no CIDR, IP, IP:port, host or
// host:port.
func ParseAllowList(entries []string) (*AllowList, error) {
	a := &AllowList{}
	var problems []string
	for i, raw := range entries {
		e := strings.ToLower(strings.TrimSpace(raw))
		if e == "" {
			continue
		}
		if err := a.add(e); err != nil {
			problems = append(problems, fmt.Sprintf("entry %d %q: %v", i, raw, err))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("jwks allow list: %s", strings.Join(problems, "; "))
	}
	return a, nil
}

func (a *AllowList) add(e string) error {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return errors.New("not a CIDR (want e.g. 10.0.0.0/8)")
		}
		a.prefixes = append(a.prefixes, p.Masked())
		return nil
	}
	if ip, err := netip.ParseAddr(e); err == nil {
		a.prefixes = append(a.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		return nil
	}
	if ap, err := netip.ParseAddrPort(e); err == nil {
		if ap.Port() == 0 {
			return errors.New("port 0")
		}
		a.addrPorts = append(a.addrPorts, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		return nil
	}
	host, port := e, ""
	if h, p, err := net.SplitHostPort(e); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be 1-65535")
		}
	}
	if !isDNSName(host) {
		return errors.New("not a CIDR, IP, IP:port, host name or host:port")
	}
	if port == "" {
		a.hosts = append(a.hosts, host)
	} else {
		a.hostPorts = append(a.hostPorts, net.JoinHostPort(host, port))
	}
	return nil
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// String lists the entries (for logs; an allow list holds no secret).
func (a *AllowList) String() string {
	if a == nil {
		return ""
	}
	var out []string
	for _, p := range a.prefixes {
		out = append(out, p.String())
	}
	for _, ap := range a.addrPorts {
		out = append(out, ap.String())
	}
	out = append(out, a.hosts...)
	out = append(out, a.hostPorts...)
	return strings.Join(out, ",")
}

// allowsHost reports whether URL host hostport ("host" or "host:port",
// the port already defaulted) is allowed by name or literal IP.
func (a *AllowList) allowsHost(host, port string) bool {
	if a == nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		n, _ := strconv.ParseUint(port, 10, 16)
		return a.allowsAddr(netip.AddrPortFrom(ip.Unmap(), uint16(n)))
	}
	return slices.Contains(a.hosts, host) || slices.Contains(a.hostPorts, net.JoinHostPort(host, port))
}

// allowsAddr reports whether a connection to ap is allowed by address.
func (a *AllowList) allowsAddr(ap netip.AddrPort) bool {
	if a == nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return slices.Contains(a.addrPorts, netip.AddrPortFrom(ip, ap.Port()))
}

// nonPublic are the ranges a JWKS fetch never reaches unless allowed, on
// top of what netip reports as loopback, link-local, private, multicast or
// unspecified.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may embed any IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed any IPv4
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
}

// isPublic reports whether ip is an ordinary public unicast address.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ErrAddressRefused is wrapped by every error of a fetch the guard stopped.
var ErrAddressRefused = errors.New("refused by the JWKS fetch guard")

// DefaultJWKSTimeout bounds one JWKS fetch of NewJWKSClient.
const DefaultJWKSTimeout = 5 * time.Second

// maxJWKSRedirects bounds the redirects one fetch follows.
const maxJWKSRedirects = 3

// NewJWKSClient is the HTTP client JWKS fetches use: no proxy from the
// environment, at most 3 redirects and only to the same scheme, host and
// port, plain http only to hosts allow names, and a dialer that checks the
// address it actually connects to (after DNS, so a name that re-resolves to
// an internal address is refused too): loopback, link-local, private and
// other non-public addresses only when allow lists them. timeout <= 0
// means DefaultJWKSTimeout.
func NewJWKSClient(allow *AllowList, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultJWKSTimeout
	}
	guarded := &net.Dialer{Timeout: timeout, Control: func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot check address %q", ErrAddressRefused, address)
		}
		if isPublic(ap.Addr()) || allow.allowsAddr(ap) {
			return nil
		}
		return fmt.Errorf("%w: %s is not a public address (allow it with --jwks-allow)", ErrAddressRefused, ap.Addr().Unmap())
	}}
	open := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		Proxy: nil, // the guard checks the JWKS host, not a proxy's
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil {
				if _, err := netip.ParseAddr(host); err != nil && allow.allowsHost(host, port) {
					// An allowed host name: wherever it resolves.
					return open.DialContext(ctx, network, addr)
				}
			}
			return guarded.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     &schemeGuard{allow: allow, next: tr},
		CheckRedirect: checkJWKSRedirect,
	}
}

// schemeGuard refuses plain http unless the URL's host is allowed.
type schemeGuard struct {
	allow *AllowList
	next  http.RoundTripper
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.URL.Scheme {
	case "https":
	case "http":
		port := req.URL.Port()
		if port == "" {
			port = "80"
		}
		if !g.allow.allowsHost(req.URL.Hostname(), port) {
			closeBody(req)
			return nil, fmt.Errorf("%w: plain http to %s (use https, or allow the host with --jwks-allow)", ErrAddressRefused, req.URL.Host)
		}
	default:
		closeBody(req)
		return nil, fmt.Errorf("%w: scheme %q", ErrAddressRefused, req.URL.Scheme)
	}
	return g.next.RoundTrip(req)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (g *schemeGuard) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// checkJWKSRedirect follows a redirect only to the same scheme, host and
// port as the original request, at most maxJWKSRedirects times.
func checkJWKSRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxJWKSRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrAddressRefused, maxJWKSRedirects)
	}
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || !strings.EqualFold(hostPort(req.URL), hostPort(first)) {
		return fmt.Errorf("%w: redirect from %s://%s to %s://%s (a JWKS may redirect within its own scheme, host and port only)",
			ErrAddressRefused, first.Scheme, first.Host, req.URL.Scheme, req.URL.Host)
	}
	return nil
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.TrimSuffix(u.Hostname(), "."), port)
}
