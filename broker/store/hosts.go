package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// HostIndex knows which spec owns each host, kept current from a Feed's
// change feed so a host-conflict check costs a map lookup, not a parse of
// every stored spec. It is safe for concurrent use.
type HostIndex struct {
	mu     sync.Mutex
	cursor int64
	owner  map[string]string   // host -> spec name
	hosts  map[string][]string // spec name -> its hosts
}

// NewHostIndex returns an empty index; call Refresh before use.
func NewHostIndex() *HostIndex {
	return &HostIndex{owner: map[string]string{}, hosts: map[string][]string{}}
}

// Refresh applies every change since the last refresh.
func (x *HostIndex) Refresh(ctx context.Context, f Feed) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	next, changes, err := f.Changes(ctx, x.cursor)
	if err != nil {
		return fmt.Errorf("refreshing the host index: %w", err)
	}
	for _, c := range changes {
		for _, h := range x.hosts[c.Name] {
			if x.owner[h] == c.Name {
				delete(x.owner, h)
			}
		}
		delete(x.hosts, c.Name)
		if c.Deleted {
			continue
		}
		var doc struct {
			Spec struct {
				Hosts []string `json:"hosts"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(c.JSON, &doc); err != nil {
			return fmt.Errorf("refreshing the host index: spec %q at revision %d: %w", c.Name, c.Revision, err)
		}
		for _, h := range doc.Spec.Hosts {
			h = strings.ToLower(h)
			x.owner[h] = c.Name
			x.hosts[c.Name] = append(x.hosts[c.Name], h)
		}
	}
	x.cursor = next
	return nil
}

// Conflicts returns, for each host of specName's hosts owned by another
// spec, "host -> owner".
func (x *HostIndex) Conflicts(specName string, hosts []string) map[string]string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out map[string]string
	for _, h := range hosts {
		if o, ok := x.owner[strings.ToLower(h)]; ok && o != specName {
			if out == nil {
				out = map[string]string{}
			}
			out[h] = o
		}
	}
	return out
}
