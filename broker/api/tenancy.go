package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Tenancy is the operator's tenant policy (all optional): which domains
// each tenant may claim hosts under, and which certificates specs may name
// (the certificate directory the control plane serves, read for the SANs
// only, and certificate-to-tenant bindings).
type Tenancy struct {
	// Domains restricts tenants to domain suffixes (nil: any valid host).
	Domains tenancy.Domains
	// CertDir is the control plane's --cert-dir; when set, a spec naming a
	// certificate whose SANs do not cover all of its hosts is refused.
	CertDir string
	// CertOwners binds certificates to tenants (nil: none bound).
	CertOwners tenancy.CertOwners
}

// instanceTenant is the tenant of a new instance: the OSB context's, else
// the spec's metadata.team within the request's organization_guid and
// space_guid (a team name alone is the spec author's word, not the
// platform's).
func instanceTenant(req provisionRequest, d *spec.Document) (string, error) {
	t, err := tenancy.FromContext(req.Context)
	if err != nil || t != "" {
		return t, err
	}
	return tenancy.FromTeamIn(d.EdgeRoute.Metadata.Team, req.OrganizationGUID, req.SpaceGUID), nil
}

// checkPlatformIDs answers 400 unless organization_guid and space_guid
// are present and non-empty (OSB v2.17 §Provisioning marks both REQUIRED).
func checkPlatformIDs(w http.ResponseWriter, req provisionRequest) bool {
	var missing []string
	if strings.TrimSpace(req.OrganizationGUID) == "" {
		missing = append(missing, "organization_guid")
	}
	if strings.TrimSpace(req.SpaceGUID) == "" {
		missing = append(missing, "space_guid")
	}
	if len(missing) == 0 {
		return true
	}
	writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("%s: required and non-empty in a provision request (OSB v2.17 Provisioning)", strings.Join(missing, " and ")))
	return false
}

// checkClaims applies the tenant rules to d before anything is stored:
// host names no one may claim, hosts outside the tenant's domains and
// certificates the spec may not name answer 400 with field paths; a host
// another instance holds answers 409 naming that instance.
func (a *API) checkClaims(w http.ResponseWriter, r *http.Request, d *spec.Document, tenant string) bool {
	var problems spec.ErrorList
	if err := specio.CheckHostNames(d, tenant, a.cfg.Tenancy.Domains); err != nil {
		problems = append(problems, specio.Problems(err)...)
	}
	if err := checkCertificate(a.cfg.Tenancy, d, tenant); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("the EdgeRoute has %d problem(s):\n%s", len(problems), problems.Error()))
		return false
	}
	if err := a.hosts.Refresh(r.Context(), a.cfg.Store); err != nil {
		a.internal(w, r, err)
		return false
	}
	if err := a.releaseEndedClaims(r.Context()); err != nil {
		a.internal(w, r, err)
		return false
	}
	err := specio.CheckHosts(a.hosts, d, tenant)
	var hc *specio.HostConflicts
	if errors.As(err, &hc) {
		writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("the EdgeRoute claims %d host(s) another service instance holds:\n%s", len(hc.List), hc.List.Error()))
		return false
	}
	if err != nil {
		a.internal(w, r, err)
		return false
	}
	return true
}

// releaseEndedClaims drops the host reservations of instances whose
// provision or update is no longer in progress: their spec is stored (the
// index has it) or the operation failed (nothing claims the hosts).
func (a *API) releaseEndedClaims(ctx context.Context) error {
	for _, id := range a.hosts.Reserved() {
		in, err := a.cfg.Store.GetInstance(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case in.Op.InProgress() && (in.Op.Kind == store.OpProvision || in.Op.Kind == store.OpUpdate):
			continue
		}
		a.hosts.Release(id)
	}
	return nil
}

// checkCertificate: a spec may name a certificate only when the operator
// has not bound it to other tenants and (when the broker knows the
// certificate directory) its SANs cover every host of the spec.
func checkCertificate(t Tenancy, d *spec.Document, tenant string) *spec.Error {
	tls := d.EdgeRoute.Spec.TLS
	if tls == nil {
		return nil
	}
	const path = "spec.tls.certificate"
	fail := func(reason string) *spec.Error {
		return &spec.Error{File: d.File, Line: d.Line(path), Spec: d.Name(), Path: path, Reason: reason}
	}
	if err := t.CertOwners.Allow(tls.Certificate, tenant); err != nil {
		return fail(err.Error())
	}
	if t.CertDir == "" {
		return nil
	}
	leaf, err := tenancy.ReadLeaf(t.CertDir, tls.Certificate)
	if err != nil {
		return fail(fmt.Sprintf("certificate %q is not one the operator provides", tls.Certificate))
	}
	if miss := tenancy.Uncovered(leaf, d.EdgeRoute.Spec.Hosts); len(miss) > 0 {
		return fail(fmt.Sprintf("certificate %q does not cover host(s) %s of this EdgeRoute (its names: %s); a spec may name a certificate only when its SANs cover every host", tls.Certificate, strings.Join(miss, ", "), strings.Join(leaf.DNSNames, ", ")))
	}
	return nil
}
