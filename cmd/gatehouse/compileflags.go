package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/controlplane/compile"
	"github.com/gatehouse-edge/gatehouse/controlplane/envoy"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

// compileFlags are the compile options, registered the same way on
// `gatehouse controlplane` and `gatehouse worker`: the worker's check must
// refuse exactly what the control plane would leave out, so it compiles
// with the same certificate directory, certificate owners, listener and
// sidecar addresses, upstream CA and proxyless groups. Give both roles the
// same values (flags or GATEHOUSE_CONTROLPLANE_* / GATEHOUSE_WORKER_*).
type compileFlags struct {
	certOwners, tenantDomains string
	upstreamAllow             []string
}

func (c *compileFlags) register(f *pflag.FlagSet, o *compile.Options) {
	f.StringVar(&o.HTTPAddress, "listener-addr", contract.DefaultEnvoyHTTPAddr, "address the Envoy HTTP listener binds on the fleet")
	f.StringVar(&o.HTTPSAddress, "https-listener-addr", contract.DefaultEnvoyHTTPSAddr, "address the Envoy HTTPS listener binds on the fleet (there is one only when a spec names a certificate)")
	f.StringVar(&o.CertDir, "cert-dir", "", "directory of the certificates specs name in spec.tls.certificate, as NAME.crt and NAME.key (PEM), served to Envoy over SDS (empty: specs naming a certificate fail)")
	f.StringVar(&c.certOwners, "cert-owners", "", "YAML file: certificate name -> the tenants that may name it (certificates not listed: any spec whose hosts they cover)")
	f.StringVar(&c.tenantDomains, "tenant-domains", "", "YAML file: tenant -> domain suffixes its hosts must be under, as the broker's --tenant-domains (files and S3: the tenant is team:<metadata.team>); empty: any claimable host")
	f.StringVar(&o.Sidecars.Authz, "authz-addr", envoy.DefaultSidecars.Authz, "authz sidecar address as seen from Envoy (cluster gatehouse_authz)")
	f.StringVar(&o.Sidecars.RateLimit, "ratelimit-addr", envoy.DefaultSidecars.RateLimit, "ratelimit sidecar address as seen from Envoy (cluster gatehouse_ratelimit)")
	f.StringVar(&o.Sidecars.AccessLog, "accesslog-addr", envoy.DefaultSidecars.AccessLog, "accesslog sidecar address as seen from Envoy (cluster gatehouse_accesslog)")
	f.StringVar(&o.Upstream.CAFile, "upstream-ca-file", "/etc/ssl/certs/ca-certificates.crt", "CA bundle Envoy verifies TLS upstreams with (empty: no verification)")
	f.IntVar(&o.MaxJWKSURIsPerGroup, "max-jwks-uris-per-group", compile.DefaultMaxJWKSURIsPerGroup, "most distinct jwksUris the specs of one node group may name (every authz sidecar fetches each); a spec over it is left out and reported (negative: no cap)")
	upstreamAllowFlag(f, &c.upstreamAllow)
	f.StringVar(&o.EnvoyAdmin, "envoy-admin-addr", contract.DefaultEnvoyAdminAddr, "the fleet's Envoy admin address (as in the bootstrap): no spec upstream may point there; bound to 0.0.0.0, its port is refused on every address")
	f.StringSliceVar(&o.ProxylessGroups, "proxyless-groups", nil, "node groups of proxyless gRPC clients (grpc-go xds:/// targets): they get one API listener per spec host instead of the Envoy listener")
	f.StringSliceVar(&o.ScopedRouteGroups, "scoped-route-groups", nil, "Envoy node groups served scoped routes: one route table per spec and one scope per exact host (SRDS), so a spec's change re-sends only its routes; a group with a wildcard host keeps one table")
}

// load reads the files the flags name into o.
func (c *compileFlags) load(o *compile.Options) error {
	var err error
	if o.UpstreamAllow, err = parseUpstreamAllow(c.upstreamAllow); err != nil {
		return err
	}
	if c.certOwners != "" {
		if o.CertOwners, err = tenancy.LoadCertOwners(c.certOwners); err != nil {
			return fmt.Errorf("--cert-owners: %w", err)
		}
	}
	if c.tenantDomains != "" {
		if o.TenantDomains, err = tenancy.LoadDomains(c.tenantDomains); err != nil {
			return fmt.Errorf("--tenant-domains: %w", err)
		}
	}
	return nil
}
