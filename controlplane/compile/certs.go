package compile

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
)

// loadCertificate reads NAME.crt and NAME.key from the cert dir and checks
// that they parse as a matching certificate and key. Its errors never
// carry the key bytes.
func (c *Compiler) loadCertificate(name string) (*tlsv3.Secret, error) {
	if c.opts.CertDir == "" {
		return nil, fmt.Errorf("certificate %q: the control plane has no certificate directory (--cert-dir)", name)
	}
	certFile := filepath.Join(c.opts.CertDir, name+".crt")
	keyFile := filepath.Join(c.opts.CertDir, name+".key")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("certificate %q: %s and %s are not a matching PEM certificate and private key: %w", name, certFile, keyFile, err)
	}
	return envoy.Secret(name, certPEM, keyPEM), nil
}
