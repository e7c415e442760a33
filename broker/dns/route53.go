package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// Route53API is the part of the Route 53 client the step uses.
type Route53API interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
}

// Route53 manages owned records in one hosted zone. Every change is one
// atomic change batch per host using CREATE and DELETE of the exact
// record read (never UPSERT), so a record somebody else wrote between
// the read and the write makes the batch fail instead of being
// overwritten; the host is then looked at again.
type Route53 struct {
	Client Route53API
	ZoneID string
	Log    *slog.Logger
}

// rrset is a record set as read from the zone.
type rrset = types.ResourceRecordSet

// state is what the zone holds for one host.
type state struct {
	records []rrset // every record set at the host's name
	marker  *rrset  // the TXT at MarkerName(host), if any
}

func (s state) cname() *rrset {
	for i := range s.records {
		if s.records[i].Type == types.RRTypeCname {
			return &s.records[i]
		}
	}
	return nil
}

// markerValue is the marker's text, unquoted ("" when none).
func (s state) markerValue() string {
	if s.marker == nil {
		return ""
	}
	var parts []string
	for _, r := range s.marker.ResourceRecords {
		v := aws.ToString(r.Value)
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		parts = append(parts, v)
	}
	return strings.Join(parts, "")
}

// adoptable reports whether the unmarked record at host is owner's own
// from before markers (see Owner.Legacy).
func (s state) adoptable(owner Owner, host string) bool {
	c := s.cname()
	return s.marker == nil && c != nil && len(s.records) == 1 && len(c.ResourceRecords) == 1 &&
		owner.legacy(host, aws.ToString(c.ResourceRecords[0].Value))
}

// verdict decides whether owner may touch host: nil, or *NotOwnedError.
func (s state) verdict(owner Owner, host string) error {
	mv := s.markerValue()
	switch {
	case s.adoptable(owner, host):
		return nil
	case s.marker != nil && mv != owner.Marker():
		if strings.HasPrefix(mv, "heritage=gatehouse,") {
			return &NotOwnedError{Host: host, Reason: fmt.Sprintf("its record belongs to another instance (marker %s: %.200q)", MarkerName(host), mv)}
		}
		return &NotOwnedError{Host: host, Reason: fmt.Sprintf("a TXT record %s exists that Gatehouse did not write", MarkerName(host))}
	case s.marker == nil && len(s.records) > 0:
		var kinds []string
		for _, r := range s.records {
			kinds = append(kinds, string(r.Type))
		}
		return &NotOwnedError{Host: host, Reason: fmt.Sprintf("a %s record exists that Gatehouse did not create (no ownership marker %s)", strings.Join(kinds, "/"), MarkerName(host))}
	case s.marker != nil:
		for _, r := range s.records {
			if r.Type != types.RRTypeCname {
				return &NotOwnedError{Host: host, Reason: fmt.Sprintf("a %s record was added next to Gatehouse's record", r.Type)}
			}
		}
	}
	return nil
}

func normName(n string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSuffix(n, ".")), `\052`, "*")
}

// lookup returns every record set named name.
func (r *Route53) lookup(ctx context.Context, name string) ([]rrset, error) {
	var out []rrset
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(r.ZoneID), StartRecordName: aws.String(name), MaxItems: aws.Int32(20)}
	for range 50 {
		page, err := r.Client.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("route53 zone %s: reading %s: %w", r.ZoneID, name, err)
		}
		for _, s := range page.ResourceRecordSets {
			if normName(aws.ToString(s.Name)) != name {
				return out, nil // listing is ordered: past the name
			}
			out = append(out, s)
		}
		if !page.IsTruncated {
			return out, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = page.NextRecordName, page.NextRecordType, page.NextRecordIdentifier
	}
	return nil, fmt.Errorf("route53 zone %s: reading %s: too many record sets", r.ZoneID, name)
}

func (r *Route53) read(ctx context.Context, host string) (state, error) {
	var s state
	var err error
	if s.records, err = r.lookup(ctx, host); err != nil {
		return s, err
	}
	marks, err := r.lookup(ctx, MarkerName(host))
	if err != nil {
		return s, err
	}
	for i := range marks {
		if marks[i].Type == types.RRTypeTxt {
			s.marker = &marks[i]
		}
	}
	return s, nil
}

// Check reads every host and reports those Ensure would refuse.
func (r *Route53) Check(ctx context.Context, owner Owner, hosts []string) error {
	var errs []error
	for _, h := range sortedLower(hosts) {
		s, err := r.read(ctx, h)
		if err != nil {
			return err
		}
		if err := s.verdict(owner, h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ensure creates or updates each host's record where owner may.
func (r *Route53) Ensure(ctx context.Context, owner Owner, hosts []string, target string, ttl int64) error {
	var errs []error
	for _, h := range sortedLower(hosts) {
		if err := r.retry(ctx, h, func(s state) ([]types.Change, error) {
			if err := s.verdict(owner, h); err != nil {
				return nil, err
			}
			want := cname(h, target, ttl)
			var ch []types.Change
			if s.marker == nil {
				ch = append(ch, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: marker(owner, h, ttl)})
			}
			if c := s.cname(); c != nil {
				if len(c.ResourceRecords) == 1 && strings.EqualFold(strings.TrimSuffix(aws.ToString(c.ResourceRecords[0].Value), "."), target) && aws.ToInt64(c.TTL) == ttl {
					return ch, nil // already so
				}
				ch = append(ch, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: c})
			}
			return append(ch, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: want}), nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove deletes each owned record and its marker.
func (r *Route53) Remove(ctx context.Context, owner Owner, hosts []string) error {
	var errs []error
	for _, h := range sortedLower(hosts) {
		if err := r.retry(ctx, h, func(s state) ([]types.Change, error) {
			if s.adoptable(owner, h) {
				c := s.cname()
				return []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: c}}, nil
			}
			if s.marker == nil || s.markerValue() != owner.Marker() {
				if r.Log != nil && (s.marker != nil || len(s.records) > 0) {
					r.Log.Warn("dns: leaving a record this instance does not own", "name", h, "instance", owner.Instance)
				}
				return nil, nil
			}
			var ch []types.Change
			if c := s.cname(); c != nil {
				ch = append(ch, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: c})
			}
			return append(ch, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: s.marker}), nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retry reads host, asks plan for the change batch and sends it; a batch
// Route 53 refuses (the zone changed since the read) is planned again
// from a fresh read, up to three times.
func (r *Route53) retry(ctx context.Context, host string, plan func(state) ([]types.Change, error)) error {
	var last error
	for range 3 {
		s, err := r.read(ctx, host)
		if err != nil {
			return err
		}
		ch, err := plan(s)
		if err != nil || len(ch) == 0 {
			return err
		}
		last = r.send(ctx, host, ch)
		var icb *types.InvalidChangeBatch
		if last == nil || !errors.As(last, &icb) {
			return last
		}
	}
	return last
}

func (r *Route53) send(ctx context.Context, host string, changes []types.Change) error {
	batch := &types.ChangeBatch{Comment: aws.String("gatehouse broker: " + host), Changes: changes}
	out, err := r.Client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(r.ZoneID), ChangeBatch: batch})
	if err != nil {
		return fmt.Errorf("route53 zone %s: %d change(s) for %s: %w", r.ZoneID, len(changes), host, err)
	}
	if r.Log != nil {
		for _, c := range changes {
			r.Log.Info("dns change submitted", "zone", r.ZoneID, "action", string(c.Action), "name", normName(aws.ToString(c.ResourceRecordSet.Name)), "type", string(c.ResourceRecordSet.Type),
				"change_id", aws.ToString(out.ChangeInfo.Id))
		}
	}
	return nil
}

func cname(host, target string, ttl int64) *rrset {
	return &rrset{Name: aws.String(host), Type: types.RRTypeCname, TTL: aws.Int64(ttl),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(target)}}}
}

func marker(o Owner, host string, ttl int64) *rrset {
	return &rrset{Name: aws.String(MarkerName(host)), Type: types.RRTypeTxt, TTL: aws.Int64(ttl),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(strconv.Quote(o.Marker()))}}}
}
