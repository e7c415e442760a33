package dev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-edge/gatehouse/internal/tlsconfig"
)

// PKI is the throwaway CA of `gatehouse dev` and the certificates it
// issued, under <data-dir>/pki: ca.crt/ca.key (kept across starts),
// server.crt/key (127.0.0.1, localhost: the control plane's and the
// sidecars' gRPC ports), sidecars-<group>.crt/key (the dev sidecars as
// nodes of the group) and envoy-<group>.crt/key (for an Envoy you attach).
type PKI struct {
	Dir                         string
	CAFile                      string
	ServerCert, ServerKey       string
	SidecarCert, SidecarKey     string
	EnvoyCertFile, EnvoyKeyFile string
}

// loadPKI loads the CA under dataDir/pki, minting it on first use, and
// issues fresh leaf certificates (valid 30 days) for group.
func loadPKI(dataDir, group string, now time.Time) (*PKI, error) {
	dir := filepath.Join(dataDir, "pki")
	p := &PKI{
		Dir: dir, CAFile: filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		SidecarCert: filepath.Join(dir, "sidecars-"+group+".crt"), SidecarKey: filepath.Join(dir, "sidecars-"+group+".key"),
		EnvoyCertFile: filepath.Join(dir, "envoy-"+group+".crt"), EnvoyKeyFile: filepath.Join(dir, "envoy-"+group+".key"),
	}
	if err := tlsconfig.ValidGroup(group); err != nil {
		return nil, fmt.Errorf("dev: --node-group: %w", err)
	}
	caKey := filepath.Join(dir, "ca.key")
	ca, err := tlsconfig.LoadCA(p.CAFile, caKey)
	if err != nil {
		if _, statErr := os.Stat(p.CAFile); !errors.Is(statErr, os.ErrNotExist) {
			return nil, fmt.Errorf("dev: %w", err)
		}
		if ca, err = tlsconfig.NewCA("gatehouse dev CA (throwaway)", 5*365*24*time.Hour, now); err != nil {
			return nil, err
		}
		kp, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		if err := tlsconfig.WritePair(p.CAFile, ca.CertPEM(), caKey, kp); err != nil {
			return nil, fmt.Errorf("dev: writing the CA: %w", err)
		}
	}
	const validity = 30 * 24 * time.Hour
	srv, err := ca.IssueServer("gatehouse-dev", []string{"127.0.0.1", "::1", "localhost"}, validity, now)
	if err != nil {
		return nil, err
	}
	side, err := ca.IssueNode("sidecars-"+group, group, validity, now)
	if err != nil {
		return nil, err
	}
	envoy, err := ca.IssueNode("envoy-"+group, group, validity, now)
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		iss      *tlsconfig.Issued
		crt, key string
	}{{srv, p.ServerCert, p.ServerKey}, {side, p.SidecarCert, p.SidecarKey}, {envoy, p.EnvoyCertFile, p.EnvoyKeyFile}} {
		if err := w.iss.Write(w.crt, w.key); err != nil {
			return nil, fmt.Errorf("dev: writing %s: %w", w.crt, err)
		}
	}
	return p, nil
}

// server is the mutual-TLS configuration of a dev gRPC port.
func (p *PKI) server() tlsconfig.Server {
	return tlsconfig.Server{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.CAFile}
}

// sidecarXDS is the dev sidecars' client TLS toward the control plane.
func (p *PKI) sidecarXDS() tlsconfig.Client {
	return tlsconfig.Client{CAFile: p.CAFile, CertFile: p.SidecarCert, KeyFile: p.SidecarKey}
}

// Envoy is the client TLS of an Envoy (or a test playing one) of the dev
// node group: toward xDS and toward the sidecars.
func (p *PKI) Envoy() tlsconfig.Client {
	return tlsconfig.Client{CAFile: p.CAFile, CertFile: p.EnvoyCertFile, KeyFile: p.EnvoyKeyFile}
}
