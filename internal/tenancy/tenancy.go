// Package tenancy holds the rules that keep tenants apart on the names
// they share: which host names may be claimed at all (no public suffixes,
// single labels, localhost, IP literals, or wildcards over a public
// suffix), when two claims overlap (an exact host under another tenant's
// wildcard, a wildcard over another tenant's host, the same host twice),
// which domains an operator allows a tenant (--tenant-domains), who owns a
// certificate (--cert-owners) and whether a certificate's SANs cover a
// spec's hosts. The broker (api, worker) and the control plane (compile)
// both apply these rules, so the answer is the same on every path.
//
// It is a leaf: it must not import the broker, the control plane or the
// spec package, and it has no flags, listeners or globals.
package tenancy

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/net/publicsuffix"
	"gopkg.in/yaml.v3"
)

// TeamPrefix marks a tenant taken from a spec's metadata.team (the platform
// named none): "team:pets".
const TeamPrefix = "team:"

// FromTeam is the tenant of a spec whose platform sent no tenant: its
// metadata.team. "" when the team is empty.
func FromTeam(team string) string {
	team = strings.TrimSpace(team)
	if team == "" {
		return ""
	}
	return TeamPrefix + team
}

// FromTeamIn is the tenant of a broker instance whose OSB context names
// none: its metadata.team within the platform's organization_guid and
// space_guid (the REQUIRED top-level provision fields),
// "team:pets@ORG/SPACE". A key "team:pets" of Domains or CertOwners
// matches it.
func FromTeamIn(team, org, space string) string {
	t := FromTeam(team)
	org, space = strings.TrimSpace(org), strings.TrimSpace(space)
	if org == "" && space == "" {
		return t
	}
	return t + "@" + org + "/" + space
}

// KeyMatches reports whether an operator's tenant key (in Domains or
// CertOwners) names tenant: the same id, or a prefix of it ending where a
// '/' or '@' begins ("cf:ORG" matches "cf:ORG/SPACE", "team:pets" matches
// "team:pets@ORG/SPACE").
func KeyMatches(key, tenant string) bool {
	return key != "" && (key == tenant || strings.HasPrefix(tenant, key+"/") || strings.HasPrefix(tenant, key+"@"))
}

// FromContext reads the tenant from an OSB context object: a
// platform-neutral "tenant", Cloud Foundry's organization_guid and
// space_guid ("cf:ORG/SPACE"), or Kubernetes' clusterid and namespace
// ("k8s:CLUSTER/NAMESPACE"), in that order. "" when the context names
// none (the caller then falls back to FromTeam). A context that is not a
// JSON object is an error.
func FromContext(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("context: not a JSON object: %v", err)
	}
	str := func(k string) (string, error) {
		v, ok := c[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("context.%s: must be a string", k)
		}
		s = strings.TrimSpace(s)
		if strings.ContainsAny(s, "/\x00\n") || len(s) > 256 {
			return "", fmt.Errorf("context.%s: %q is not a valid identifier (no '/', at most 256 characters)", k, s)
		}
		return s, nil
	}
	var vals [5]string
	for i, k := range []string{"tenant", "organization_guid", "space_guid", "clusterid", "namespace"} {
		v, err := str(k)
		if err != nil {
			return "", err
		}
		vals[i] = v
	}
	tenant, org, space, cluster, ns := vals[0], vals[1], vals[2], vals[3], vals[4]
	switch {
	case tenant != "":
		return tenant, nil
	case org != "":
		if space == "" {
			return "cf:" + org, nil
		}
		return "cf:" + org + "/" + space, nil
	case ns != "":
		if cluster == "" {
			cluster = "default"
		}
		return "k8s:" + cluster + "/" + ns, nil
	}
	return "", nil
}

// CheckHost reports why a host pattern may not be claimed by anyone: a
// single label, localhost, an IP literal, a public suffix (a TLD or a
// registry-controlled domain like co.uk or github.io) or a wildcard over
// one (*.com, *.co.uk). A wildcard is allowed one label below a
// registrable domain (*.example.com) or deeper.
func CheckHost(host string) error {
	h := strings.ToLower(strings.TrimSpace(host))
	name := strings.TrimPrefix(h, "*.")
	wildcard := name != h
	switch {
	case name == "":
		return errors.New("is empty")
	case strings.Contains(name, "*"):
		return errors.New("a wildcard is allowed only as the whole first label (*.example.com)")
	case net.ParseIP(strings.Trim(name, "[]")) != nil:
		return errors.New("is an IP address; claim a DNS name")
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		return errors.New("localhost names are the node's own and cannot be claimed")
	case reservedTLD(name):
		return errors.New("is under a special-use domain (.local, .arpa, .invalid: RFC 6761/6762) that never reaches the edge from the internet")
	case !strings.Contains(name, "."):
		if wildcard {
			return errors.New("covers a whole top-level domain; a wildcard must sit below a domain you own (e.g. *.team.example.com)")
		}
		return errors.New("is a single-label name (a bare TLD or an intranet short name); claim a fully qualified name under a domain you own")
	}
	suffix, _ := publicsuffix.PublicSuffix(name)
	if name == suffix {
		if wildcard {
			return fmt.Errorf("covers every domain under the public suffix %q; a wildcard must sit below a registrable domain (e.g. *.team.example.%s)", suffix, name)
		}
		return errors.New("is a public suffix (a TLD or a registry-controlled domain); nobody owns all of it")
	}
	return nil
}

// reservedTLD reports names under special-use domains no public client
// resolves to the edge.
func reservedTLD(name string) bool {
	for _, tld := range []string{"local", "arpa", "invalid"} {
		if name == tld || strings.HasSuffix(name, "."+tld) {
			return true
		}
	}
	return false
}

// Overlap reports whether two host patterns can match the same request
// host (Envoy's "*.x" matches any non-empty prefix before ".x").
func Overlap(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == b {
		return true
	}
	aw, bw := strings.HasPrefix(a, "*."), strings.HasPrefix(b, "*.")
	switch {
	case aw && bw:
		return strings.HasSuffix(a[1:], b[1:]) || strings.HasSuffix(b[1:], a[1:])
	case aw:
		return strings.HasSuffix(b, a[1:])
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return false
}

// Clash says why host (claimed by tenant) may not sit next to ownerHost
// (claimed by ownerTenant in another spec), or "" when both may be served:
// the same pattern twice is always a clash (Envoy serves a domain from one
// virtual host); an overlap is one unless both claims are the same
// tenant's (a tenant may nest its own exact hosts under its own
// wildcard). An empty tenant is nobody's: it never shares.
func Clash(tenant, host, ownerTenant, ownerHost string) string {
	if !Overlap(host, ownerHost) {
		return ""
	}
	if strings.EqualFold(host, ownerHost) {
		return fmt.Sprintf("host %q is already served by another EdgeRoute (a host belongs to one EdgeRoute only)", host)
	}
	if tenant != "" && tenant == ownerTenant {
		return ""
	}
	if strings.HasPrefix(host, "*.") && !strings.HasPrefix(ownerHost, "*.") {
		return fmt.Sprintf("wildcard %q covers host %q of another tenant", host, ownerHost)
	}
	if strings.HasPrefix(host, "*.") {
		return fmt.Sprintf("wildcard %q overlaps wildcard %q of another tenant", host, ownerHost)
	}
	return fmt.Sprintf("host %q is under wildcard %q of another tenant", host, ownerHost)
}

// Domains is the operator's allow-list: tenant -> the domain suffixes its
// hosts must be under. A key matches a tenant exactly or as a prefix up to
// '/' or '@' (KeyMatches); the key "*" applies to tenants no other key
// matches. A nil Domains allows every (otherwise valid) host.
type Domains map[string][]string

// LoadDomains reads a --tenant-domains YAML file (tenant: [suffix, ...]).
func LoadDomains(path string) (Domains, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenant domains: %w", err)
	}
	var d Domains
	if err := yaml.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("tenant domains %s: want a YAML map of tenant to a list of domain suffixes: %v", path, err)
	}
	if d == nil {
		d = Domains{}
	}
	var errs []error
	for tenant, suffixes := range d {
		for i, s := range suffixes {
			s = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "."))
			if err := CheckHost(s); err != nil || strings.HasPrefix(s, "*") {
				errs = append(errs, fmt.Errorf("tenant domains %s: %s[%d]: %q must be a domain (example.com), not a wildcard or public suffix", path, tenant, i, suffixes[i]))
			}
			suffixes[i] = s
		}
	}
	return d, errors.Join(errs...)
}

// suffixes returns the allowed suffixes of tenant and whether any key
// applies.
func (d Domains) suffixes(tenant string) ([]string, bool) {
	if s, ok := d[tenant]; ok {
		return s, true
	}
	best := ""
	for k := range d {
		if k != "*" && KeyMatches(k, tenant) && len(k) > len(best) {
			best = k
		}
	}
	if best != "" {
		return d[best], true
	}
	s, ok := d["*"]
	return s, ok
}

// Allow reports why tenant may not claim host under the allow-list; nil
// when it may (or when d is nil: no allow-list).
func (d Domains) Allow(tenant, host string) error {
	if d == nil {
		return nil
	}
	suffixes, ok := d.suffixes(tenant)
	if !ok {
		if tenant == "" {
			return errors.New("the instance names no tenant (no OSB context tenant and no metadata.team) and the operator restricts hosts per tenant")
		}
		return fmt.Errorf("tenant %q has no allowed domains (the operator restricts hosts per tenant)", tenant)
	}
	name := strings.TrimPrefix(strings.ToLower(host), "*.")
	for _, s := range suffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return nil
		}
	}
	return fmt.Errorf("host %q is outside the domains tenant %q may use (%s)", host, tenant, strings.Join(suffixes, ", "))
}

// CertOwners binds certificates to tenants: certificate name -> the
// tenants that may name it (same key matching as Domains). A certificate
// not listed may be named by any tenant whose hosts it covers. A nil
// CertOwners binds nothing.
type CertOwners map[string][]string

// LoadCertOwners reads a --cert-owners YAML file (certificate: [tenant, ...]).
func LoadCertOwners(path string) (CertOwners, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate owners: %w", err)
	}
	var o CertOwners
	if err := yaml.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("certificate owners %s: want a YAML map of certificate name to a list of tenants: %v", path, err)
	}
	if o == nil {
		o = CertOwners{}
	}
	return o, nil
}

// Allow reports why tenant may not use certificate cert; nil when it may.
func (o CertOwners) Allow(cert, tenant string) error {
	owners, listed := o[cert]
	if !listed {
		return nil
	}
	for _, t := range owners {
		if tenant != "" && KeyMatches(t, tenant) {
			return nil
		}
	}
	if tenant == "" {
		return fmt.Errorf("certificate %q is bound to tenants %v and this spec names no tenant", cert, owners)
	}
	return fmt.Errorf("certificate %q is bound to other tenants; tenant %q may not use it", cert, tenant)
}

// Leaf parses the first certificate of a PEM chain.
func Leaf(certPEM []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, certPEM = pem.Decode(certPEM)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// ReadLeaf reads DIR/NAME.crt and parses its first certificate (the key
// file is never read). name must be a plain file name.
func ReadLeaf(dir, name string) (*x509.Certificate, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("certificate %q: not a valid certificate name", name)
	}
	b, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	c, err := Leaf(b)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	return c, nil
}

// Uncovered returns the hosts the certificate's DNS SANs do not cover: an
// exact host must verify against the certificate; a wildcard host needs
// the same wildcard SAN (a *.x certificate does not cover *.y.x).
func Uncovered(c *x509.Certificate, hosts []string) []string {
	sans := map[string]bool{}
	for _, n := range c.DNSNames {
		sans[strings.ToLower(n)] = true
	}
	var out []string
	for _, h := range hosts {
		lh := strings.ToLower(h)
		if strings.HasPrefix(lh, "*.") {
			if !sans[lh] {
				out = append(out, h)
			}
			continue
		}
		if c.VerifyHostname(lh) != nil {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}
