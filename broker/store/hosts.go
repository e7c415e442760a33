package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
)

// HostIndex knows which spec, instance and tenant claim each host, kept
// current from a Feed's change feed so a host check costs a few map
// lookups, not a parse of every stored spec. It applies the overlap rules
// of internal/tenancy (the same host twice, an exact host under another
// tenant's wildcard, a wildcard over another tenant's host). It is safe
// for concurrent use.
type HostIndex struct {
	mu     sync.Mutex
	cursor int64
	specs  map[string]hostClaim    // spec name -> its claim
	owners map[string][]*hostClaim // lower-case host pattern -> claims
	// reserved are the claims of accepted provisions and updates not
	// stored yet, by instance id (Reserve): a second overlapping claim
	// sent before the first is stored is refused as well.
	reserved map[string]hostClaim
}

type hostClaim struct {
	spec, instance, tenant string
	hosts                  []string // lower case
}

// HostOwner is a stored spec's claim on a host.
type HostOwner struct {
	Spec, Instance, Tenant, Host string
}

// HostConflict is one host of a new claim that clashes with a stored one.
type HostConflict struct {
	Index  int    // index into the hosts passed to Conflicts
	Host   string // as passed
	Owner  HostOwner
	Reason string
}

// NewHostIndex returns an empty index; call Refresh before use.
func NewHostIndex() *HostIndex {
	return &HostIndex{specs: map[string]hostClaim{}, owners: map[string][]*hostClaim{}, reserved: map[string]hostClaim{}}
}

// instanceReader is the part of a Store that tells a spec's tenant.
type instanceReader interface {
	GetInstance(ctx context.Context, id string) (Instance, error)
}

// Refresh applies every change since the last refresh. When f is also a
// Store, a spec's tenant is its instance's Tenant; otherwise (and for
// instances stored before tenants were recorded) its metadata.team.
func (x *HostIndex) Refresh(ctx context.Context, f Feed) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	next, changes, err := f.Changes(ctx, x.cursor)
	if err != nil {
		return fmt.Errorf("refreshing the host index: %w", err)
	}
	ir, _ := f.(instanceReader)
	for _, c := range changes {
		x.remove(c.Name)
		if c.Deleted {
			continue
		}
		var doc struct {
			Metadata struct {
				Team string `json:"team"`
			} `json:"metadata"`
			Spec struct {
				Hosts []string `json:"hosts"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(c.JSON, &doc); err != nil {
			return fmt.Errorf("refreshing the host index: spec %q at revision %d: %w", c.Name, c.Revision, err)
		}
		tenant := tenancy.FromTeam(doc.Metadata.Team)
		if ir != nil && c.InstanceID != "" {
			in, err := ir.GetInstance(ctx, c.InstanceID)
			switch {
			case err == nil && in.Tenant != "":
				tenant = in.Tenant
			case err != nil && !errors.Is(err, ErrNotFound):
				return fmt.Errorf("refreshing the host index: the tenant of spec %q: %w", c.Name, err)
			}
		}
		cl := hostClaim{spec: c.Name, instance: c.InstanceID, tenant: tenant}
		for _, h := range doc.Spec.Hosts {
			cl.hosts = append(cl.hosts, strings.ToLower(h))
		}
		x.specs[c.Name] = cl
		p := new(hostClaim)
		*p = cl
		for _, h := range cl.hosts {
			x.owners[h] = append(x.owners[h], p)
		}
	}
	x.cursor = next
	return nil
}

func (x *HostIndex) remove(name string) {
	old, ok := x.specs[name]
	if !ok {
		return
	}
	for _, h := range old.hosts {
		list := x.owners[h][:0]
		for _, c := range x.owners[h] {
			if c.spec != name {
				list = append(list, c)
			}
		}
		if len(list) == 0 {
			delete(x.owners, h)
		} else {
			x.owners[h] = list
		}
	}
	delete(x.specs, name)
}

// Reserve records the hosts of an accepted provision or update of
// instance (spec specName, claimed by tenant) until Release: Conflicts
// counts them like a stored spec's. A later Reserve of the same instance
// replaces its claim.
func (x *HostIndex) Reserve(specName, instance, tenant string, hosts []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cl := hostClaim{spec: specName, instance: instance, tenant: tenant}
	for _, h := range hosts {
		cl.hosts = append(cl.hosts, strings.ToLower(h))
	}
	x.reserved[instance] = cl
}

// Release drops instance's reservation (its operation ended: the spec is
// stored, or the operation failed).
func (x *HostIndex) Release(instance string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.reserved, instance)
}

// Reserved are the instances holding a reservation, sorted.
func (x *HostIndex) Reserved() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	ids := make([]string, 0, len(x.reserved))
	for id := range x.reserved {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Conflicts returns every host of specName's hosts (claimed by tenant)
// that clashes with a host of another stored spec, in host order, each
// with its first owner by spec name.
func (x *HostIndex) Conflicts(specName, tenant string, hosts []string) []HostConflict {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []HostConflict
	for i, h := range hosts {
		lh := strings.ToLower(h)
		var cands []*hostClaim
		cands = append(cands, x.owners[lh]...)
		// Wildcards that cover lh: *.<every suffix of lh>.
		for rest := strings.TrimPrefix(lh, "*."); ; {
			_, after, ok := strings.Cut(rest, ".")
			if !ok {
				break
			}
			cands = append(cands, x.owners["*."+after]...)
			rest = after
		}
		// Hosts a wildcard covers: a scan (wildcard claims are few).
		if strings.HasPrefix(lh, "*.") {
			for _, c := range x.specs {
				for _, oh := range c.hosts {
					if oh != lh && tenancy.Overlap(lh, oh) {
						c := c
						cands = append(cands, &c)
					}
				}
			}
		}
		// Reservations of operations in flight (few: a scan).
		for _, id := range sortedKeys(x.reserved) {
			c := x.reserved[id]
			cands = append(cands, &c)
		}
		sort.SliceStable(cands, func(a, b int) bool { return cands[a].spec < cands[b].spec })
		for _, c := range cands {
			if c.spec == specName {
				continue
			}
			found := false
			for _, oh := range c.hosts {
				if why := tenancy.Clash(tenant, lh, c.tenant, oh); why != "" {
					out = append(out, HostConflict{Index: i, Host: h, Owner: HostOwner{Spec: c.spec, Instance: c.instance, Tenant: c.tenant, Host: oh}, Reason: why})
					found = true
					break
				}
			}
			if found {
				break
			}
		}
	}
	return out
}

func sortedKeys(m map[string]hostClaim) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
