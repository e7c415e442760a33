// Package dns is the broker's optional provisioning step: one DNS record
// per EdgeRoute host pointing at the edge fleet, applied through Route 53
// (aws-sdk-go-v2) or, in dry-run mode, only logged as a change set. It is
// off unless configured. It must not import the api, queue, store or
// worker packages.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// Action is what a change does.
type Action string

// Actions, as Route 53 spells them.
const (
	Upsert Action = "UPSERT"
	Delete Action = "DELETE"
)

// Change is one record change.
type Change struct {
	Action Action
	Name   string // the host; "*.x.example.com" wildcards are allowed
	Type   string // CNAME
	Value  string // the edge fleet's name
	TTL    int64
}

// Provisioner applies the record changes of one spec. Apply must be
// idempotent: the worker may run it again after a crash.
type Provisioner interface {
	Apply(ctx context.Context, specName string, changes []Change) error
}

// Changes builds one CNAME change per host towards target.
func Changes(action Action, hosts []string, target string, ttl int64) []Change {
	out := make([]Change, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, Change{Action: action, Name: strings.ToLower(h), Type: "CNAME", Value: target, TTL: ttl})
	}
	return out
}

// DryRun logs the change set and changes nothing.
type DryRun struct{ Log *slog.Logger }

// Apply logs each change.
func (d DryRun) Apply(_ context.Context, specName string, changes []Change) error {
	for _, c := range changes {
		d.Log.Info("dns dry-run: would change record", "spec", specName, "action", string(c.Action), "name", c.Name, "type", c.Type, "value", c.Value, "ttl", c.TTL)
	}
	return nil
}

// Route53API is the part of the Route 53 client the step uses.
type Route53API interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
}

// Route53 applies changes to one hosted zone.
type Route53 struct {
	Client Route53API
	ZoneID string
	Log    *slog.Logger
}

// Apply sends the changes as one batch. Deleting a record that is already
// gone counts as done (the step is idempotent); a delete is retried alone
// per record so one missing record does not block the rest.
func (r *Route53) Apply(ctx context.Context, specName string, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	err := r.send(ctx, specName, changes)
	if err == nil || changes[0].Action != Delete || !isMissingRecord(err) {
		return err
	}
	var errs []error
	for _, c := range changes {
		if err := r.send(ctx, specName, []Change{c}); err != nil && !isMissingRecord(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Route53) send(ctx context.Context, specName string, changes []Change) error {
	batch := &types.ChangeBatch{Comment: aws.String("gatehouse broker: EdgeRoute " + specName)}
	for _, c := range changes {
		batch.Changes = append(batch.Changes, types.Change{
			Action: types.ChangeAction(c.Action),
			ResourceRecordSet: &types.ResourceRecordSet{
				Name:            aws.String(c.Name),
				Type:            types.RRType(c.Type),
				TTL:             aws.Int64(c.TTL),
				ResourceRecords: []types.ResourceRecord{{Value: aws.String(c.Value)}},
			},
		})
	}
	out, err := r.Client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(r.ZoneID), ChangeBatch: batch})
	if err != nil {
		return fmt.Errorf("route53 zone %s: %d change(s) for EdgeRoute %q: %w", r.ZoneID, len(changes), specName, err)
	}
	if r.Log != nil && out.ChangeInfo != nil {
		r.Log.Info("dns changes submitted", "spec", specName, "zone", r.ZoneID, "changes", len(changes), "change_id", aws.ToString(out.ChangeInfo.Id))
	}
	return nil
}

func isMissingRecord(err error) bool {
	var ic *types.InvalidChangeBatch
	return errors.As(err, &ic) && strings.Contains(strings.ToLower(ic.ErrorMessage()), "not found")
}
