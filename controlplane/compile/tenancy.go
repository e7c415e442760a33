package compile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

// The tenant rules the control plane applies to every source, the same
// the broker applies before anything is stored (internal/tenancy): host
// names nobody may claim, hosts claimed by two specs (overlap across
// tenants, the same host twice) and certificates a spec may not name. A
// spec that breaks one is pruned with its error; the others ship.

// tenantOf is the tenant that claims s's hosts: the source's (the broker
// knows the instance's), else metadata.team.
func tenantOf(s *Spec) string {
	if s.Tenant != "" {
		return s.Tenant
	}
	if s.doc == nil {
		return ""
	}
	return tenancy.FromTeam(s.doc.EdgeRoute.Metadata.Team)
}

// checkHostNames refuses the host patterns no tenant may claim and, with
// Options.TenantDomains, the hosts outside the spec's tenant's domains.
func (c *Compiler) checkHostNames(s *Spec) error {
	var problems []string
	for i, h := range s.doc.EdgeRoute.Spec.Hosts {
		if err := tenancy.CheckHost(h); err != nil {
			problems = append(problems, fmt.Sprintf("spec.hosts[%d]: host %q %v", i, h, err))
		} else if err := c.opts.TenantDomains.Allow(tenantOf(s), h); err != nil {
			problems = append(problems, fmt.Sprintf("spec.hosts[%d]: %v", i, err))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: spec %s: %s", s.Origin, s.Name, strings.Join(problems, "; "))
}

// claimOrder is the order specs claim hosts in: the oldest store revision
// first (file and S3 sources have none), then by origin and name, so which
// of two clashing specs wins never depends on delivery or map order, and
// a newcomer in the broker's store never evicts a spec already served.
func claimOrder(all []*Spec) []*Spec {
	out := append([]*Spec(nil), all...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if a.Origin != b.Origin {
			return a.Origin < b.Origin
		}
		return a.Name < b.Name
	})
	return out
}

// hostClaims are the hosts of the specs accepted so far in one assemble,
// indexed so a host meets only the claims it overlaps (a scan of every
// claim per host made assembling 1,000 specs quadratic).
type hostClaims struct {
	exact map[string]claimedHost // lower-case pattern -> its first claim
	// bySuffix: every claimed pattern under each of its dot-suffixes
	// ("a.b.c" under ".b.c" and ".c"): the hosts a wildcard covers.
	bySuffix map[string][]claimedHost
	n        int
}

type claimedHost struct {
	host string
	s    *Spec
	seq  int // claim order
}

func newHostClaims() *hostClaims {
	return &hostClaims{exact: map[string]claimedHost{}, bySuffix: map[string][]claimedHost{}}
}

// clash returns why s may not claim its hosts next to those accepted, or
// nil. A host is checked against the same pattern, the wildcards over it
// ("*" + each of its dot-suffixes) and, for a wildcard, every claim under
// it: exactly the claims tenancy.Overlap holds for, in claim order after
// the same pattern.
func (c *hostClaims) clash(s *Spec) error {
	tenant := tenantOf(s)
	for i, h := range s.doc.EdgeRoute.Spec.Hosts {
		lh := strings.ToLower(h)
		var cands []claimedHost
		if o, ok := c.exact[lh]; ok {
			cands = append(cands, o)
		}
		first := len(cands)
		for j := 0; j < len(lh); j++ {
			if lh[j] == '.' {
				if o, ok := c.exact["*"+lh[j:]]; ok && o.host != lh {
					cands = append(cands, o)
				}
			}
		}
		if strings.HasPrefix(lh, "*.") {
			for _, o := range c.bySuffix[lh[1:]] {
				if o.host != lh {
					cands = append(cands, o)
				}
			}
		}
		rest := cands[first:]
		sort.Slice(rest, func(a, b int) bool { return rest[a].seq < rest[b].seq })
		for _, o := range cands {
			if why := tenancy.Clash(tenant, lh, tenantOf(o.s), o.host); why != "" {
				return fmt.Errorf("%s: spec.hosts[%d]: %s: EdgeRoute %q (%s) claims %q", s.Origin, i, why, o.s.Name, o.s.Origin, o.host)
			}
		}
	}
	return nil
}

func (c *hostClaims) add(s *Spec) {
	for _, h := range s.doc.EdgeRoute.Spec.Hosts {
		lh := strings.ToLower(h)
		ch := claimedHost{lh, s, c.n}
		c.n++
		if _, ok := c.exact[lh]; !ok {
			c.exact[lh] = ch
		}
		for j := 0; j < len(lh); j++ {
			if lh[j] == '.' {
				c.bySuffix[lh[j:]] = append(c.bySuffix[lh[j:]], ch)
			}
		}
	}
}

// checkCertificate: the certificate a spec names must not be bound to
// other tenants (Options.CertOwners) and its SANs must cover every host of
// the spec.
func (c *Compiler) checkCertificate(s *Spec) error {
	tls := s.doc.EdgeRoute.Spec.TLS
	if tls == nil || s.secret == nil {
		return nil
	}
	if err := c.opts.CertOwners.Allow(tls.Certificate, tenantOf(s)); err != nil {
		return fmt.Errorf("spec.tls.certificate: %w", err)
	}
	leaf, err := tenancy.Leaf(s.secret.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if err != nil {
		return fmt.Errorf("spec.tls.certificate: certificate %q: %w", tls.Certificate, err)
	}
	if miss := tenancy.Uncovered(leaf, s.doc.EdgeRoute.Spec.Hosts); len(miss) > 0 {
		return fmt.Errorf("spec.tls.certificate: certificate %q does not cover host(s) %s (its names: %s); a spec may name a certificate only when its SANs cover every host", tls.Certificate, strings.Join(miss, ", "), strings.Join(leaf.DNSNames, ", "))
	}
	return nil
}
