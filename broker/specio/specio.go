// Package specio is how the broker reads EdgeRoutes: parse and validate
// OSB parameters with the spec package (the same code the control plane
// runs), check hosts against the other stored specs, and merge binding API
// keys into their apiKeys provider. It must not import the api, queue or
// worker packages, nor the control plane.
package specio

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Reader parses and merges specs under a validation policy (the
// operator's --upstream-allow and the broker's own addresses); the zero
// Reader applies the production rules.
type Reader struct{ Policy spec.Policy }

// Parse parses data as exactly one EdgeRoute and validates it on its own.
// Problems come back as a spec.ErrorList with field paths; origin names
// the input in them (e.g. "parameters").
func (rd Reader) Parse(origin string, data []byte) (*spec.Document, error) {
	docs, err := spec.Parse(origin, data)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, spec.ErrorList{{File: origin, Reason: fmt.Sprintf("want exactly one EdgeRoute document, got %d", len(docs))}}
	}
	if err := rd.Policy.ValidateOne(docs[0], nil); err != nil {
		return nil, err
	}
	return docs[0], nil
}

// CheckHosts reports every host of d (claimed by tenant) that clashes with
// a host of another stored spec (internal/tenancy: the same host twice, a
// host under another tenant's wildcard, a wildcard over another tenant's
// host) as a *HostConflicts naming each owner's spec and instance.
func CheckHosts(x *store.HostIndex, d *spec.Document, tenant string) error {
	conflicts := x.Conflicts(d.Name(), tenant, d.EdgeRoute.Spec.Hosts)
	if len(conflicts) == 0 {
		return nil
	}
	e := &HostConflicts{}
	for _, c := range conflicts {
		path := fmt.Sprintf("spec.hosts[%d]", c.Index)
		e.List = append(e.List, &spec.Error{File: d.File, Line: d.Line(path), Spec: d.Name(), Path: path,
			Reason: fmt.Sprintf("%s: EdgeRoute %q of service instance %q claims %q", c.Reason, c.Owner.Spec, c.Owner.Instance, c.Owner.Host)})
		e.Owners = append(e.Owners, c.Owner)
	}
	return e
}

// HostConflicts is CheckHosts' error: the hosts other stored specs hold.
type HostConflicts struct {
	List   spec.ErrorList
	Owners []store.HostOwner
}

func (e *HostConflicts) Error() string { return e.List.Error() }

// Unwrap gives the problems with their field paths (see Problems).
func (e *HostConflicts) Unwrap() error { return e.List }

// CheckHostNames reports the hosts of d no tenant may claim (single labels,
// localhost, IP literals, public suffixes and wildcards over them) and,
// when the operator restricts tenants to domains, the hosts outside
// tenant's, each with its field path.
func CheckHostNames(d *spec.Document, tenant string, domains tenancy.Domains) error {
	var l spec.ErrorList
	for i, h := range d.EdgeRoute.Spec.Hosts {
		path := fmt.Sprintf("spec.hosts[%d]", i)
		err := tenancy.CheckHost(h)
		if err != nil {
			err = fmt.Errorf("host %q %w", h, err)
		} else {
			err = domains.Allow(tenant, h)
		}
		if err != nil {
			l = append(l, &spec.Error{File: d.File, Line: d.Line(path), Spec: d.Name(), Path: path, Reason: err.Error()})
		}
	}
	if len(l) == 0 {
		return nil
	}
	return l
}

// Canonical returns the canonical JSON of d.
func Canonical(d *spec.Document) ([]byte, error) {
	b, err := d.EdgeRoute.CanonicalJSON()
	if err != nil {
		return nil, fmt.Errorf("spec %q: canonical JSON: %w", d.Name(), err)
	}
	return b, nil
}

// Merge returns the canonical JSON of the spec in base (canonical JSON,
// without binding keys) with the key of every active binding added to its
// apiKeys provider, validated again as a whole (a binding key id or hash
// clashing with a declared key is an error).
func (rd Reader) Merge(name string, base []byte, bindings []store.Binding) ([]byte, error) {
	active := make([]store.Binding, 0, len(bindings))
	for _, b := range bindings {
		if b.Active() {
			active = append(active, b)
		}
	}
	if len(active) == 0 {
		return base, nil // base is canonical and was validated when it was accepted
	}
	origin := "broker:" + name
	d, err := rd.Parse(origin, base)
	if err != nil {
		return nil, err
	}
	sort.Slice(active, func(i, j int) bool { return active[i].ID < active[j].ID })
	id := d.EdgeRoute.Spec.Identity
	var missing []string
	for _, b := range active {
		found := false
		for i := 0; id != nil && i < len(id.APIKeys); i++ {
			p := &id.APIKeys[i]
			if p.Name == b.Provider {
				p.Keys = append(p.Keys, spec.APIKey{ID: b.KeyID, SHA256: b.SHA256, Labels: b.Labels})
				found = true
			}
		}
		if !found {
			missing = append(missing, fmt.Sprintf("binding %q: the spec has no apiKeys provider %q", b.ID, b.Provider))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("merging binding keys into %q: %v", name, missing)
	}
	merged, err := Canonical(d)
	if err != nil {
		return nil, err
	}
	if _, err := rd.Parse(origin, merged); err != nil {
		return nil, fmt.Errorf("spec %q with its binding keys: %w", name, err)
	}
	return merged, nil
}

// Hash is a stable digest of the parts, used to tell an identical request
// from a conflicting one.
func Hash(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Problems returns the items of a spec.ErrorList inside err, or nil.
func Problems(err error) spec.ErrorList {
	var l spec.ErrorList
	if errors.As(err, &l) {
		return l
	}
	return nil
}
