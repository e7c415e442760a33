package authn

import (
	"fmt"
	"path"
)

// MTLSConfig is one mTLS provider: peer principals (the URI SAN Envoy
// reports as attributes.source.principal) matching one of the globs
// (path.Match syntax: '*' does not cross '/').
type MTLSConfig struct {
	Name       string
	Principals []string
}

// MTLS accepts peers whose principal matches a glob.
type MTLS struct{ cfg MTLSConfig }

// NewMTLS checks the globs.
func NewMTLS(cfg MTLSConfig) (*MTLS, error) {
	if len(cfg.Principals) == 0 {
		return nil, fmt.Errorf("mtls provider %q: at least one principal glob is required", cfg.Name)
	}
	for i, g := range cfg.Principals {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return nil, fmt.Errorf("mtls provider %q: principals[%d] %q is not a valid glob", cfg.Name, i, g)
		}
	}
	return &MTLS{cfg: cfg}, nil
}

// Name is the provider name.
func (p *MTLS) Name() string { return p.cfg.Name }

// Authenticate matches the peer principal against the globs.
func (p *MTLS) Authenticate(principal string) (*Identity, error) {
	for _, g := range p.cfg.Principals {
		if ok, _ := path.Match(g, principal); ok {
			return &Identity{Provider: p.cfg.Name, Kind: KindMTLS, Subject: principal}, nil
		}
	}
	return nil, refuse(p.cfg.Name, CodePrincipalForbidden, "the peer principal matches none of the provider's globs")
}
