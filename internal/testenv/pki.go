package testenv

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// PKI is a throwaway CA minted for one test, with its files on disk.
type PKI struct {
	CA     *tlsconfig.CA
	CAFile string
	dir    string
}

// NewPKI mints a CA under a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := tlsconfig.NewCA("gatehouse test CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, dir: t.TempDir()}
	p.CAFile = filepath.Join(p.dir, "ca.crt")
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsconfig.WritePair(p.CAFile, ca.CertPEM(), filepath.Join(p.dir, "ca.key"), key); err != nil {
		t.Fatal(err)
	}
	return p
}

// Server issues a server certificate for 127.0.0.1 and localhost and
// returns its files.
func (p *PKI) Server(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	iss, err := p.CA.IssueServer(name, []string{"127.0.0.1", "localhost"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, iss)
}

// Node issues a node certificate of group and returns its files.
func (p *PKI) Node(t testing.TB, name, group string) (certFile, keyFile string) {
	t.Helper()
	iss, err := p.CA.IssueNode(name, group, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, iss)
}

func (p *PKI) write(t testing.TB, name string, iss *tlsconfig.Issued) (string, string) {
	t.Helper()
	c, k := filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if err := iss.Write(c, k); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// ServerTLS is a server configuration with mutual TLS against this CA.
func (p *PKI) ServerTLS(t testing.TB, name string) tlsconfig.Server {
	t.Helper()
	c, k := p.Server(t, name)
	return tlsconfig.Server{CertFile: c, KeyFile: k, ClientCAFile: p.CAFile}
}

// NodeTLS is a client configuration presenting a node certificate of group.
func (p *PKI) NodeTLS(t testing.TB, name, group string) tlsconfig.Client {
	t.Helper()
	c, k := p.Node(t, name, group)
	return tlsconfig.Client{CAFile: p.CAFile, CertFile: c, KeyFile: k}
}
