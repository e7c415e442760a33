package main

import (
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/gatehouse-edge/gatehouse/controlplane/internal/benchspec"
	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// benchPKI is -tls's throwaway PKI, minted into a run's temp dir with the
// repo's own CA (internal/tlsconfig, as `gatehouse certs` mints): the
// control plane's certificate for 127.0.0.1 and one client certificate
// per node group, so the fleet dials with mutual TLS as a real one does.
type benchPKI struct {
	// Server is the control plane's --tls-cert-file, --tls-key-file and
	// --tls-client-ca-file.
	Server tlsconfig.Server
	// creds are the fleet's transport credentials by node group: the
	// group's client certificate (URI SAN
	// spiffe://gatehouse/node-group/<group>, which the control plane
	// requires to match node.cluster) and the CA as the only root.
	creds map[string]credentials.TransportCredentials
}

// mintPKI writes the PKI for groups node groups under dir.
func mintPKI(dir string, groups int) (*benchPKI, error) {
	now := time.Now()
	const validity = 24 * time.Hour
	ca, err := tlsconfig.NewCA("xdsbench CA", validity, now)
	if err != nil {
		return nil, fmt.Errorf("minting the CA: %w", err)
	}
	p := &benchPKI{
		Server: tlsconfig.Server{
			CertFile:     filepath.Join(dir, "controlplane.crt"),
			KeyFile:      filepath.Join(dir, "controlplane.key"),
			ClientCAFile: filepath.Join(dir, "ca.crt"),
		},
		creds: map[string]credentials.TransportCredentials{},
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := tlsconfig.WritePair(p.Server.ClientCAFile, ca.CertPEM(), filepath.Join(dir, "ca.key"), keyPEM); err != nil {
		return nil, err
	}
	srv, err := ca.IssueServer("xdsbench control plane", []string{"127.0.0.1"}, validity, now)
	if err != nil {
		return nil, fmt.Errorf("issuing the control plane's certificate: %w", err)
	}
	if err := srv.Write(p.Server.CertFile, p.Server.KeyFile); err != nil {
		return nil, err
	}
	for g := 0; g < groups; g++ {
		group := benchspec.Group(g, groups)
		c := tlsconfig.Client{CAFile: p.Server.ClientCAFile, CertFile: filepath.Join(dir, group+".crt"), KeyFile: filepath.Join(dir, group+".key")}
		node, err := ca.IssueNode("xdsbench "+group, group, validity, now)
		if err != nil {
			return nil, fmt.Errorf("issuing group %s's certificate: %w", group, err)
		}
		if err := node.Write(c.CertFile, c.KeyFile); err != nil {
			return nil, err
		}
		tc, err := c.Config("--xds")
		if err != nil {
			return nil, err
		}
		p.creds[group] = credentials.NewTLS(tc)
	}
	return p, nil
}

// args are the control plane's TLS flags.
func (p *benchPKI) args() []string {
	return []string{"--tls-cert-file", p.Server.CertFile, "--tls-key-file", p.Server.KeyFile, "--tls-client-ca-file", p.Server.ClientCAFile}
}
