package authn

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-edge/gatehouse/authn/authntest"
)

func mustAllow(t testing.TB, entries ...string) *AllowList {
	t.Helper()
	a, err := ParseAllowList(entries)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// countingServer serves a JWKS and counts the requests it sees.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newJWKSServer(t *testing.T, tls bool, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	if h == nil {
		doc := authntest.JWKS(authntest.NewEC("k1"))
		h = func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }
	}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.hits.Add(1); h(w, r) })
	if tls {
		s.Server = httptest.NewTLSServer(wrapped)
	} else {
		s.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(s.Close)
	return s
}

// guardedClient is NewJWKSClient trusting the httptest servers' certificate.
func guardedClient(t *testing.T, allow *AllowList, trust *countingServer) *http.Client {
	t.Helper()
	c := NewJWKSClient(allow, 0)
	if trust != nil {
		tc := trust.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		tc.ServerName = "example.com" // in the test certificate, so "localhost" URLs verify too
		c.Transport.(*schemeGuard).next.(*http.Transport).TLSClientConfig = tc
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// fetch runs one JWKS fetch of uri with client, as RemoteJWKS does.
func fetch(t *testing.T, uri string, client *http.Client) error {
	t.Helper()
	r, err := NewRemoteJWKS(RemoteJWKSConfig{URI: uri, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return r.fetchOnce(context.Background())
}

// TestJWKSRedirectToAnotherHostIsRefused: an https JWKS endpoint that
// answers 302 to plain http on another port is not followed, even with
// loopback allowed, and the second server sees no request.
func TestJWKSRedirectToAnotherHostIsRefused(t *testing.T) {
	second := newJWKSServer(t, false, nil)
	first := newJWKSServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, second.URL+"/jwks", http.StatusFound)
	})
	err := fetch(t, first.URL+"/jwks", guardedClient(t, mustAllow(t, "127.0.0.1"), first))
	if !errors.Is(err, ErrAddressRefused) || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("fetch through a cross-host redirect: %v, want a refused redirect", err)
	}
	if first.hits.Load() != 1 || second.hits.Load() != 0 {
		t.Fatalf("first server saw %d requests, second %d; want 1 and 0", first.hits.Load(), second.hits.Load())
	}

	// https to http on the same host and port is refused too.
	downgrade := newJWKSServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		u := *r.URL
		u.Scheme, u.Host, u.Path = "http", r.Host, "/plain"
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	if err := fetch(t, downgrade.URL+"/jwks", guardedClient(t, mustAllow(t, "127.0.0.1"), downgrade)); !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("https→http redirect: %v, want refused", err)
	}

	// A redirect within the same origin is followed.
	local := newJWKSServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusMovedPermanently)
			return
		}
		_, _ = w.Write(authntest.JWKS(authntest.NewEC("k1")))
	})
	if err := fetch(t, local.URL+"/old", guardedClient(t, mustAllow(t, "127.0.0.1"), local)); err != nil {
		t.Fatalf("same-origin redirect: %v", err)
	}
}

// TestJWKSInternalAddressesNeedTheAllowList: loopback is refused at
// connect time (the request never arrives) unless allowed, by CIDR, IP or
// IP:port; a host name is checked by the address it resolves to, so a
// name pointing inside is refused as well.
func TestJWKSInternalAddressesNeedTheAllowList(t *testing.T) {
	srv := newJWKSServer(t, true, nil)
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	uri := srv.URL + "/jwks"
	byName := strings.Replace(uri, "127.0.0.1", "localhost", 1)
	for _, tc := range []struct {
		name  string
		uri   string
		allow []string
		ok    bool
	}{
		{name: "loopback, no allow list", uri: uri},
		{name: "a name resolving to loopback, no allow list", uri: byName},
		{name: "loopback, another range allowed", uri: uri, allow: []string{"10.0.0.0/8"}},
		{name: "loopback, another port allowed", uri: uri, allow: []string{"127.0.0.1:1"}},
		{name: "loopback allowed by CIDR", uri: uri, allow: []string{"127.0.0.0/8"}, ok: true},
		{name: "loopback allowed by IP", uri: uri, allow: []string{"127.0.0.1"}, ok: true},
		{name: "loopback allowed by IP and port", uri: uri, allow: []string{"127.0.0.1:" + itoa(port)}, ok: true},
		{name: "a name resolving to loopback, its address allowed", uri: byName, allow: []string{"127.0.0.1"}, ok: true},
		{name: "a name allowed", uri: byName, allow: []string{"localhost"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.hits.Load()
			err := fetch(t, tc.uri, guardedClient(t, mustAllow(t, tc.allow...), srv))
			if tc.ok {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrAddressRefused) {
				t.Fatalf("fetch: %v, want refused", err)
			}
			if srv.hits.Load() != before {
				t.Fatal("the refused request reached the server")
			}
		})
	}
	// The default client of a RemoteJWKS is guarded too.
	r, err := NewRemoteJWKS(RemoteJWKSConfig{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.fetchOnce(context.Background()); !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("default client: %v, want refused", err)
	}
}

// TestJWKSPlainHTTPNeedsTheAllowList: http:// only to a host the allow
// list names (an allowed address range alone is enough for an IP literal).
func TestJWKSPlainHTTPNeedsTheAllowList(t *testing.T) {
	srv := newJWKSServer(t, false, nil)
	u, _ := url.Parse(srv.URL)
	for _, tc := range []struct {
		allow []string
		ok    bool
	}{
		{nil, false},
		{[]string{"127.0.0.1:1"}, false},
		{[]string{"127.0.0.1:" + u.Port()}, true},
		{[]string{"127.0.0.0/8"}, true},
	} {
		err := fetch(t, srv.URL+"/jwks", guardedClient(t, mustAllow(t, tc.allow...), nil))
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrAddressRefused)) {
			t.Errorf("allow %v: fetch %v, want ok=%v", tc.allow, err, tc.ok)
		}
	}
	if srv.hits.Load() != 2 {
		t.Errorf("server saw %d requests, want only the 2 allowed", srv.hits.Load())
	}
}

func TestIsPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700:4700::1111": true, "1.1.1.1": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fc00::1": false, "0.0.0.0": false, "::": false,
		"224.0.0.1": false, "255.255.255.255": false, "100.64.0.1": false, "::ffff:127.0.0.1": false,
		"::ffff:169.254.169.254": false, "64:ff9b::a9fe:a9fe": false, "2002:7f00:1::1": false,
	} {
		if got := isPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	a, err := ParseAllowList([]string{"10.0.0.0/8", " 127.0.0.1:9081 ", "IdP.Internal", "idp2.internal:8443", "::1", ""})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.String(); got != "10.0.0.0/8,::1/128,127.0.0.1:9081,idp.internal,idp2.internal:8443" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "idp internal", "host:99999", "127.0.0.1:0", "-bad.example", "a..b"} {
		_, err := ParseAllowList([]string{"10.0.0.0/8", bad})
		if err == nil || !strings.Contains(err.Error(), "entry 1") || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseAllowList(%q) = %v, want an error naming entry 1", bad, err)
		}
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestRemoteJWKSErrorsHideTheURI: a jwks uri's query or credentials never
// appear in an error.
func TestRemoteJWKSErrorsHideTheURI(t *testing.T) {
	for _, uri := range []string{"ftp://idp.test/jwks?token=s3cr3t", "https://user:s3cr3t@idp.test/jwks", "/jwks?token=s3cr3t"} {
		_, err := NewRemoteJWKS(RemoteJWKSConfig{URI: uri})
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("NewRemoteJWKS(%q) = %v, want an error without the secret", uri, err)
		}
	}
}
