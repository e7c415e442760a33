// Package tlsconfig owns the TLS of Gatehouse's internal channels: loading
// server and client credentials from PEM files (mutual TLS on xDS and the
// sidecars' gRPC), minting a small CA and its certificates (`gatehouse
// certs`, `gatehouse dev`), the node-group identity a client certificate
// carries (a URI SAN spiffe://gatehouse/node-group/<group>), and the rule
// that plaintext is served on loopback only. It has no flags and no
// listeners, and imports no other Gatehouse package.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// NodeGroupURIPrefix is how a certificate names the node group its holder
// belongs to: spiffe://gatehouse/node-group/<group>.
const NodeGroupURIPrefix = "spiffe://gatehouse/node-group/"

// NodeGroupURI is the URI SAN of a node certificate of group.
func NodeGroupURI(group string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: "gatehouse", Path: "/node-group/" + group}
}

// NodeGroup is the node group a certificate names, if it names exactly
// one.
func NodeGroup(c *x509.Certificate) (string, bool) {
	if c == nil {
		return "", false
	}
	group, n := "", 0
	for _, u := range c.URIs {
		s := u.String()
		if g, ok := strings.CutPrefix(s, NodeGroupURIPrefix); ok && g != "" && !strings.Contains(g, "/") {
			group = g
			n++
		}
	}
	return group, n == 1
}

// Server is the TLS of one listening port: certificate and key for TLS,
// plus a client CA for mutual TLS. All empty means plaintext, which is
// allowed on a loopback address only, unless Insecure.
type Server struct {
	CertFile     string // PEM certificate (chain) of the server
	KeyFile      string // its PEM private key
	ClientCAFile string // PEM CA bundle client certificates must chain to; empty: no client certificate asked
	// Insecure allows plaintext on a non-loopback address.
	Insecure bool
}

// Enabled reports whether TLS is configured.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" || s.ClientCAFile != "" }

// Config loads the files. It returns nil (plaintext) when nothing is
// configured. what names the port in errors ("xds", "authz gRPC").
func (s Server) Config(what string) (*tls.Config, error) {
	if !s.Enabled() {
		return nil, nil
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, fmt.Errorf("%s TLS: --tls-cert-file and --tls-key-file are both required (a client CA alone is not enough)", what)
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s TLS: loading --tls-cert-file %s with --tls-key-file %s: %w", what, s.CertFile, s.KeyFile, stripKey(err))
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		pool, err := LoadPool(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s TLS: --tls-client-ca-file: %w", what, err)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// CheckListen refuses plaintext on a non-loopback address: flag names the
// address flag in the error.
func (s Server) CheckListen(flag, addr string) error {
	if s.Enabled() || s.Insecure || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s is not a loopback address: serving plaintext there is refused; give --tls-cert-file and --tls-key-file (and --tls-client-ca-file for mutual TLS), or --insecure", flag, addr)
}

// IsLoopback reports whether addr (host:port or host) names a loopback
// address only: 127.0.0.0/8, ::1 or localhost. An empty host (every
// interface) is not loopback.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client is the TLS a client presents to a server: a CA bundle to verify
// the server, and a certificate and key to present (mutual TLS).
type Client struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// Enabled reports whether TLS is configured.
func (c Client) Enabled() bool { return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" }

// Config loads the files; nil (plaintext) when nothing is configured.
// prefix is the flags' prefix in errors ("--xds").
func (c Client) Config(prefix string) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if c.CAFile == "" {
		return nil, fmt.Errorf("%s-ca-file is required with %s-cert-file/%s-key-file (the server's certificate is verified against it)", prefix, prefix, prefix)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%s-cert-file and %s-key-file go together", prefix, prefix)
	}
	pool, err := LoadPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s-ca-file: %w", prefix, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s-cert-file %s with %s-key-file %s: %w", prefix, c.CertFile, prefix, c.KeyFile, stripKey(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

// stripKey keeps key material out of error text: crypto/tls errors name
// files and kinds only, but a wrapped PEM parse error is cut to its first
// line to be sure.
func stripKey(err error) error {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		return errors.New(msg[:i])
	}
	return err
}
