package tlsconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

func mint(t *testing.T) (*tlsconfig.CA, string) {
	t.Helper()
	ca, err := tlsconfig.NewCA("test CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, _ := ca.KeyPEM()
	if err := tlsconfig.WritePair(filepath.Join(dir, "ca.crt"), ca.CertPEM(), filepath.Join(dir, "ca.key"), key); err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestNodeCertificateNamesItsGroup(t *testing.T) {
	ca, _ := mint(t)
	iss, err := ca.IssueNode("envoy-1", "us-east-1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(iss.CertPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := tlsconfig.NodeGroup(c); !ok || g != "us-east-1" {
		t.Fatalf("NodeGroup = %q, %v; want us-east-1", g, ok)
	}
	if got := c.URIs[0].String(); got != "spiffe://gatehouse/node-group/us-east-1" {
		t.Fatalf("URI SAN %s", got)
	}
	for _, bad := range []string{"", "a/b", "../x", strings.Repeat("a", 64)} {
		if _, err := ca.IssueNode("n", bad, time.Hour, time.Now()); err == nil {
			t.Errorf("IssueNode(group %q) succeeded", bad)
		}
	}
	srv, err := ca.IssueServer("s", []string{"127.0.0.1", "cp.example"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ = pem.Decode(srv.CertPEM)
	sc, _ := x509.ParseCertificate(b.Bytes)
	if _, ok := tlsconfig.NodeGroup(sc); ok {
		t.Fatal("a server certificate names a node group")
	}
	if len(sc.IPAddresses) != 1 || len(sc.DNSNames) != 1 {
		t.Fatalf("server SANs %v %v", sc.IPAddresses, sc.DNSNames)
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9001": true, "[::1]:9001": true, "localhost:9001": true, "127.0.0.2:1": true,
		"0.0.0.0:9001": false, ":9001": false, "10.0.0.1:9001": false, "[::]:9001": false, "example.com:1": false,
	} {
		err := tlsconfig.Server{}.CheckListen("--grpc-addr", addr)
		if (err == nil) != ok {
			t.Errorf("CheckListen(%s) = %v, want ok=%v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("error does not say how to proceed: %v", err)
		}
	}
	if err := (tlsconfig.Server{Insecure: true}).CheckListen("--grpc-addr", "0.0.0.0:1"); err != nil {
		t.Errorf("--insecure refused: %v", err)
	}
	if err := (tlsconfig.Server{CertFile: "c", KeyFile: "k"}).CheckListen("--grpc-addr", "0.0.0.0:1"); err != nil {
		t.Errorf("TLS refused: %v", err)
	}
}

// TestMutualTLSHandshake: a server with a client CA refuses a client
// without a certificate and accepts one the CA issued.
func TestMutualTLSHandshake(t *testing.T) {
	ca, dir := mint(t)
	srv, _ := ca.IssueServer("srv", []string{"127.0.0.1"}, time.Hour, time.Now())
	node, _ := ca.IssueNode("node", "g", time.Hour, time.Now())
	sc, sk := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
	nc, nk := filepath.Join(dir, "n.crt"), filepath.Join(dir, "n.key")
	if err := srv.Write(sc, sk); err != nil {
		t.Fatal(err)
	}
	if err := node.Write(nc, nk); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(nk); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	scfg, err := tlsconfig.Server{CertFile: sc, KeyFile: sk, ClientCAFile: filepath.Join(dir, "ca.crt")}.Config("test")
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	try := func(cc tlsconfig.Client) error {
		cfg, err := cc.Config("--xds")
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := try(tlsconfig.Client{CAFile: filepath.Join(dir, "ca.crt")}); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	if err := try(tlsconfig.Client{CAFile: filepath.Join(dir, "ca.crt"), CertFile: nc, KeyFile: nk}); err != nil {
		t.Fatalf("node certificate refused: %v", err)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	if _, err := (tlsconfig.Server{ClientCAFile: "ca"}).Config("xds"); err == nil || !strings.Contains(err.Error(), "--tls-cert-file") {
		t.Errorf("client CA alone: %v", err)
	}
	if _, err := (tlsconfig.Client{CertFile: "c", KeyFile: "k"}).Config("--xds"); err == nil || !strings.Contains(err.Error(), "--xds-ca-file") {
		t.Errorf("no CA: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "key")
	os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"), 0o600)
	_, err := (tlsconfig.Server{CertFile: bad, KeyFile: bad}).Config("xds")
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("bad pair: %v", err)
	}
}

// TestCARotationBundle: during a CA rotation (docs/DEPLOY.md) a server
// whose client-CA file bundles the old and the new CA accepts node
// certificates of both, and a client trusting the bundle accepts a server
// certificate of either; a CA outside the bundle is refused.
func TestCARotationBundle(t *testing.T) {
	oldCA, oldDir := mint(t)
	newCA, newDir := mint(t)
	strange, _ := mint(t)
	dir := t.TempDir()
	oldPEM, _ := os.ReadFile(filepath.Join(oldDir, "ca.crt"))
	newPEM, _ := os.ReadFile(filepath.Join(newDir, "ca.crt"))
	bundle := filepath.Join(dir, "bundle.crt")
	os.WriteFile(bundle, append(oldPEM, newPEM...), 0o644)

	write := func(name string, iss *tlsconfig.Issued) (string, string) {
		c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if err := iss.Write(c, k); err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	for _, serverCA := range []*tlsconfig.CA{oldCA, newCA} {
		srv, _ := serverCA.IssueServer("srv", []string{"127.0.0.1"}, time.Hour, time.Now())
		sc, sk := write("srv", srv)
		cfg, err := tlsconfig.Server{CertFile: sc, KeyFile: sk, ClientCAFile: bundle}.Config("test")
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(c, c); c.Close() }()
			}
		}()
		for name, ca := range map[string]*tlsconfig.CA{"old": oldCA, "new": newCA, "strange": strange} {
			node, _ := ca.IssueNode("n", "g", time.Hour, time.Now())
			nc, nk := write("node-"+name, node)
			ccfg, err := tlsconfig.Client{CAFile: bundle, CertFile: nc, KeyFile: nk}.Config("--xds")
			if err != nil {
				t.Fatal(err)
			}
			c, err := tls.Dial("tcp", l.Addr().String(), ccfg)
			if err == nil {
				_, err = c.Write([]byte("x"))
				if err == nil {
					_, err = c.Read(make([]byte, 1))
				}
				c.Close()
			}
			if (err == nil) != (name != "strange") {
				t.Errorf("server of the %v CA, node of the %s CA: %v", serverCA == newCA, name, err)
			}
		}
		l.Close()
	}
}
