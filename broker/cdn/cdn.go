// Package cdn is the broker's optional CDN step: a CloudFront distribution
// (aws-sdk-go-v2) in front of the edge fleet for each instance on the CDN
// plan, serving the instance's hosts from the fleet's load balancer. The
// distribution is owned like a DNS record: its caller reference and
// comment name this Gatehouse deployment and the instance, and the step
// only ever updates, disables or deletes a distribution that carries its
// own marker; a host that is an alias of anybody else's distribution is
// refused (ErrNotOwned). Every update and delete is conditional on the
// ETag read (If-Match); deletion disables first and waits for CloudFront
// to deploy that. In dry-run mode the step only logs. It must not import
// the api, queue, store or worker packages.
package cdn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// PlanID is the catalog plan whose instances get a CDN front; PlanName is
// its name. They never change: platforms store them.
const (
	PlanID   = "c1d8e5f2-4a7b-4c3e-9f60-8b2d7a1e3c94"
	PlanName = "standard-cdn"
)

// ErrNotOwned: a host is an alias of a distribution this instance does
// not own. Not worth a retry.
var ErrNotOwned = errors.New("CDN distribution not owned by this instance")

// NotOwnedError says which host and why (wraps ErrNotOwned).
type NotOwnedError struct {
	Host   string
	Reason string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("host %s: %s; Gatehouse changes only distributions it created for this instance", e.Host, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotOwned) true.
func (e *NotOwnedError) Unwrap() error { return ErrNotOwned }

// Owner names who may change a distribution: the Gatehouse deployment
// and the service instance.
type Owner struct {
	ID       string
	Instance string
}

// Marker is the distribution's caller reference and comment.
func (o Owner) Marker() string { return "gatehouse:" + o.ID + ":" + o.Instance }

// Provisioner manages the distribution of one owner. Every method is
// idempotent.
type Provisioner interface {
	// Check reports (as *NotOwnedError, joined) every host that is an
	// alias of a distribution owner does not own, changing nothing.
	Check(ctx context.Context, owner Owner, hosts []string) error
	// Ensure creates owner's distribution for hosts, or updates it to
	// them, and returns its domain name (what DNS records point at).
	Ensure(ctx context.Context, owner Owner, hosts []string) (domain string, err error)
	// Remove disables owner's distribution, waits until CloudFront has
	// deployed that, and deletes it (bounded by ctx). Nothing to do when
	// there is none.
	Remove(ctx context.Context, owner Owner) error
}

// DryRun logs what it would do and changes nothing. Ensure returns ""
// (DNS records then point at the fleet as without the CDN).
type DryRun struct {
	Log    *slog.Logger
	Origin string
}

// Check refuses nothing.
func (d DryRun) Check(context.Context, Owner, []string) error { return nil }

// Ensure logs the distribution it would create or update.
func (d DryRun) Ensure(_ context.Context, o Owner, hosts []string) (string, error) {
	d.Log.Info("cdn dry-run: would create or update distribution", "instance", o.Instance, "marker", o.Marker(), "aliases", strings.Join(sortedLower(hosts), ","), "origin", d.Origin)
	return "", nil
}

// Remove logs the distribution it would disable and delete.
func (d DryRun) Remove(_ context.Context, o Owner) error {
	d.Log.Info("cdn dry-run: would disable, then delete distribution", "instance", o.Instance, "marker", o.Marker())
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
