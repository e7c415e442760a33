// Package dns is the broker's optional provisioning step: one DNS record
// per EdgeRoute host pointing at the edge fleet (or the instance's CDN
// distribution), applied through Route 53 (aws-sdk-go-v2) or, in dry-run
// mode, only logged. Records are owned: next to every record it creates
// the step writes an ownership marker (a TXT record, as external-dns
// does) naming this Gatehouse deployment and the service instance, and
// it only ever changes or deletes a record whose marker names that same
// owner. Where a record exists without a marker, or with another owner's,
// nothing is touched and the step reports ErrNotOwned. It is off unless
// configured. It must not import the api, queue, store or worker
// packages.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// ErrNotOwned: a record exists at a host and its marker does not name the
// owner asking (or it has none). Not worth a retry.
var ErrNotOwned = errors.New("DNS record not owned by this instance")

// NotOwnedError says which host and why (wraps ErrNotOwned).
type NotOwnedError struct {
	Host   string
	Reason string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("host %s: %s; Gatehouse changes only records it created for this instance", e.Host, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotOwned) true.
func (e *NotOwnedError) Unwrap() error { return ErrNotOwned }

// Owner names who may change a record: the Gatehouse deployment (ID, like
// external-dns's --txt-owner-id) and the service instance.
type Owner struct {
	ID       string
	Instance string
	// Legacy lists hosts the instance already served before ownership
	// markers existed (its live spec's hosts): a CNAME without a marker at
	// one of them that points exactly at LegacyTarget (the fleet) is the
	// one Gatehouse wrote for it then, and is taken over (its marker is
	// added) instead of refused. Nothing else is ever adopted.
	Legacy       []string
	LegacyTarget string
}

// legacy reports whether the unmarked records at host are the instance's
// own record from before markers.
func (o Owner) legacy(host, cnameValue string) bool {
	if o.LegacyTarget == "" || !strings.EqualFold(strings.TrimSuffix(cnameValue, "."), o.LegacyTarget) {
		return false
	}
	for _, h := range o.Legacy {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// Marker is the TXT value that records ownership.
func (o Owner) Marker() string {
	return fmt.Sprintf("heritage=gatehouse,gatehouse/owner=%s,gatehouse/instance=%s", o.ID, o.Instance)
}

// MarkerName is the name of the TXT record that marks host's record:
// "_gatehouse.<host>", a leading "*." written "_wildcard." (a TXT record
// cannot share the name of a CNAME, and "_" never appears in a host).
func MarkerName(host string) string {
	host = strings.ToLower(host)
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		return "_gatehouse._wildcard." + rest
	}
	return "_gatehouse." + host
}

// Provisioner manages the records of one owner. Every method is
// idempotent: the worker may run it again after a crash.
type Provisioner interface {
	// Check reports (as *NotOwnedError, joined) every host whose record
	// Ensure would refuse to touch, changing nothing.
	Check(ctx context.Context, owner Owner, hosts []string) error
	// Ensure points each host at target (a CNAME with ttl): it creates
	// the record and its marker where the name is free, updates it where
	// the marker names owner, and refuses (ErrNotOwned) anywhere else.
	Ensure(ctx context.Context, owner Owner, hosts []string, target string, ttl int64) error
	// Remove deletes the record and the marker of each host whose marker
	// names owner, exactly as they are; anything else is left alone.
	Remove(ctx context.Context, owner Owner, hosts []string) error
}

// DryRun logs what it would do and changes nothing (it cannot see the
// zone, so it assumes every name is free or already owned).
type DryRun struct{ Log *slog.Logger }

// Check changes nothing and refuses nothing.
func (d DryRun) Check(context.Context, Owner, []string) error { return nil }

// Ensure logs each record and marker it would write.
func (d DryRun) Ensure(_ context.Context, o Owner, hosts []string, target string, ttl int64) error {
	for _, h := range sortedLower(hosts) {
		d.Log.Info("dns dry-run: would create (where free) or update (where owned) record", "instance", o.Instance, "name", h, "type", "CNAME", "value", target, "ttl", ttl,
			"marker", MarkerName(h), "marker_value", o.Marker())
	}
	return nil
}

// Remove logs each record it would delete.
func (d DryRun) Remove(_ context.Context, o Owner, hosts []string) error {
	for _, h := range sortedLower(hosts) {
		d.Log.Info("dns dry-run: would delete record if owned", "instance", o.Instance, "name", h, "type", "CNAME", "marker", MarkerName(h), "marker_value", o.Marker())
	}
	return nil
}

func sortedLower(hosts []string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = strings.ToLower(h)
	}
	sort.Strings(out)
	return out
}
