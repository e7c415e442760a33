package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gatehouse-edge/gatehouse/broker/api"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

// tenancyFiles are the broker's tenant-policy flags.
type tenancyFiles struct {
	domains, certDir, certOwners string
}

func (t *tenancyFiles) flags(f *pflag.FlagSet) {
	f.StringVar(&t.domains, "tenant-domains", "", "YAML file: tenant -> domain suffixes its hosts must be under (e.g. \"cf:ORG-GUID: [pets.example.com]\"); empty: any valid host")
	f.StringVar(&t.certDir, "cert-dir", "", "the control plane's certificate directory (NAME.crt is read for its SANs): a spec naming a certificate that does not cover all of its hosts is refused with 400 (empty: checked by the worker and control plane only)")
	f.StringVar(&t.certOwners, "cert-owners", "", "YAML file: certificate name -> the tenants that may name it (certificates not listed: any tenant whose hosts they cover)")
}

func (t *tenancyFiles) load() (api.Tenancy, error) {
	out := api.Tenancy{CertDir: t.certDir}
	var err error
	if t.domains != "" {
		if out.Domains, err = tenancy.LoadDomains(t.domains); err != nil {
			return out, fmt.Errorf("--tenant-domains: %w", err)
		}
	}
	if t.certOwners != "" {
		if out.CertOwners, err = tenancy.LoadCertOwners(t.certOwners); err != nil {
			return out, fmt.Errorf("--cert-owners: %w", err)
		}
	}
	return out, nil
}
