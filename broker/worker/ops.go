package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/dns"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// errNoReport: the control plane did not report within PublishWait.
var errNoReport = errors.New("no report from the control plane")

// errStale: the operation was finished or replaced meanwhile.
var errStale = errors.New("operation no longer current")

const casTries = 10

// updateInstance applies f to the instance while opID is its current,
// in-progress operation, retrying lost conditional writes.
func (w *Worker) updateInstance(ctx context.Context, id, opID string, f func(*store.Instance)) error {
	return casUpdate(w, "instance", id, opID,
		func() (store.Instance, error) { return w.cfg.Store.GetInstance(ctx, id) },
		func(in *store.Instance) *store.Operation { return &in.Op },
		f,
		func(in store.Instance) error { _, err := w.cfg.Store.PutInstance(ctx, in); return err })
}

// updateBinding is updateInstance for a binding.
func (w *Worker) updateBinding(ctx context.Context, instanceID, id, opID string, f func(*store.Binding)) error {
	return casUpdate(w, "binding", id, opID,
		func() (store.Binding, error) { return w.cfg.Store.GetBinding(ctx, instanceID, id) },
		func(b *store.Binding) *store.Operation { return &b.Op },
		f,
		func(b store.Binding) error { _, err := w.cfg.Store.PutBinding(ctx, b); return err })
}

// casUpdate reads a record, applies f while opID is its current,
// in-progress operation (else errStale), stamps the operation and writes
// the record conditionally, reading again after a lost write, up to
// casTries times.
func casUpdate[T any](w *Worker, kind, id, opID string, get func() (T, error), op func(*T) *store.Operation, f func(*T), put func(T) error) error {
	for range casTries {
		rec, err := get()
		if err != nil {
			return retry("reading %s %s: %w", kind, id, err)
		}
		if o := op(&rec); o.ID != opID || !o.InProgress() {
			return errStale
		}
		f(&rec)
		op(&rec).UpdatedAt = w.cfg.Now().UTC()
		if err := put(rec); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrConflict) {
			return retry("writing %s %s: %w", kind, id, err)
		}
		w.m.conflicts.WithLabelValues(kind).Inc()
	}
	return retry("%s %s: %d conditional writes lost in a row", kind, id, casTries)
}

// done turns errStale into success (somebody else finished the job).
func done(err error) error {
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

// writeSpec writes the spec at a new revision, once per operation: if the
// latest write is already this operation's (a redelivery after a crash),
// its revision is returned. build runs again after every lost race, so a
// concurrent writer's change (another binding's key) is never dropped.
func (w *Worker) writeSpec(ctx context.Context, name, instanceID, opID string, deleted bool, build func() ([]byte, error)) (int64, error) {
	for range casTries {
		prev := int64(0)
		cur, err := w.cfg.Store.GetSpec(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return 0, retry("reading spec %q: %w", name, err)
		case cur.WrittenBy == opID:
			return cur.Revision, nil
		default:
			prev = cur.Revision
		}
		var body []byte
		if !deleted {
			if body, err = build(); err != nil {
				return 0, err
			}
		}
		rev, err := w.cfg.Store.PutSpec(ctx, store.StoredSpec{Name: name, InstanceID: instanceID, JSON: body, Deleted: deleted, WrittenBy: opID}, prev)
		if err == nil {
			w.m.specWrites.Inc()
			return rev, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, retry("writing spec %q: %w", name, err)
		}
		w.m.conflicts.WithLabelValues("spec").Inc()
	}
	return 0, retry("spec %q: %d conditional writes lost in a row", name, casTries)
}

// waitPublished waits for the control plane's verdict on revision rev.
// It returns the control plane's error text ("" = published) and, when
// published, its note (e.g. "published; no node of group G connected"),
// or a retryable error when no verdict came within PublishWait.
func (w *Worker) waitPublished(ctx context.Context, name string, rev int64) (cpErr, note string, err error) {
	deadline := time.NewTimer(w.cfg.PublishWait)
	defer deadline.Stop()
	// Poll often at first (the usual wait is a few milliseconds), then
	// back off so many waiting tasks do not flood the store.
	delay := w.cfg.Poll
	for {
		p, err := w.cfg.Store.GetPublication(ctx, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return "", "", retry("reading the publication of %q: %w", name, err)
		case p.Revision >= rev && p.Error == "":
			return "", p.Note, nil
		case p.Revision == rev:
			return p.Error, "", nil
		case p.Revision > rev:
			return fmt.Sprintf("a later revision %d was rejected: %s", p.Revision, p.Error), "", nil
		}
		select {
		case <-ctx.Done():
			return "", "", retry("waiting for revision %d of %q: %w", rev, name, ctx.Err())
		case <-deadline.C:
			w.m.publishTimeouts.Inc()
			return "", "", retryable{fmt.Errorf("the control plane has not reported revision %d of EdgeRoute %q published within %s: %w", rev, name, w.cfg.PublishWait, errNoReport)}
		case <-time.After(delay):
		}
		delay = min(delay*3/2+time.Millisecond, 25*time.Millisecond)
	}
}

// problemsText is the operation description for an invalid spec.
func problemsText(what string, err error) string {
	if l := specio.Problems(err); l != nil {
		return fmt.Sprintf("%s has %d problem(s):\n%s", what, len(l), l.Error())
	}
	return fmt.Sprintf("%s: %v", what, err)
}

// check validates a spec the way the control plane will, against the
// other stored specs (hosts claimed by tenant).
func (w *Worker) check(ctx context.Context, payload []byte, tenant string) (*spec.Document, string, error) {
	d, err := specio.Reader{Policy: w.cfg.SpecPolicy}.Parse("parameters", payload)
	if err != nil {
		return nil, problemsText("the EdgeRoute", err), nil
	}
	if tenant == "" {
		tenant = tenancy.FromTeam(d.EdgeRoute.Metadata.Team)
	}
	if err := specio.CheckHostNames(d, tenant, nil); err != nil {
		return nil, problemsText("the EdgeRoute", err), nil
	}
	if err := w.hosts.Refresh(ctx, w.cfg.Store); err != nil {
		return nil, "", retry("%w", err)
	}
	if err := specio.CheckHosts(w.hosts, d, tenant); err != nil {
		return nil, problemsText("the EdgeRoute", err), nil
	}
	if w.cfg.Compile != nil {
		if err := w.cfg.Compile(d, tenant); err != nil {
			return nil, problemsText("compiling the EdgeRoute", err), nil
		}
	}
	return d, "", nil
}

func (w *Worker) finishInstance(ctx context.Context, in store.Instance, state store.OpState, desc string, f func(*store.Instance)) error {
	return done(w.updateInstance(ctx, in.ID, in.Op.ID, func(i *store.Instance) {
		i.Op.State, i.Op.Description = state, desc
		if f != nil {
			f(i)
		}
	}))
}

// failInstance fails an instance operation; a provision that never went
// live gives its name back.
func (w *Worker) failInstance(ctx context.Context, in store.Instance, desc string) error {
	if err := w.finishInstance(ctx, in, store.StateFailed, desc, nil); err != nil {
		return err
	}
	w.m.ops.WithLabelValues(string(in.Op.Kind), "failed").Inc()
	if in.Op.Kind == store.OpProvision && len(in.Spec) == 0 {
		if err := w.cfg.Store.ReleaseName(ctx, in.SpecName, in.ID); err != nil {
			w.log.Warn("releasing the name of a failed provision", "instance", in.ID, "spec", in.SpecName, "err", err)
		}
	}
	return nil
}

// rollback restores the spec the instance had before opID wrote it (a
// deletion when it had none), if opID's write is still the latest.
func (w *Worker) rollback(ctx context.Context, in store.Instance, opID string) {
	cur, err := w.cfg.Store.GetSpec(ctx, in.SpecName)
	if err != nil || cur.WrittenBy != opID {
		return
	}
	live, _ := w.cfg.Store.GetInstance(ctx, in.ID)
	deleted := len(live.Spec) == 0 || live.Deleted
	_, err = w.writeSpec(ctx, in.SpecName, in.ID, opID+"/rollback", deleted, func() ([]byte, error) {
		bs, err := w.cfg.Store.ListBindings(ctx, in.ID)
		if err != nil {
			return nil, retry("listing bindings: %w", err)
		}
		return specio.Reader{Policy: w.cfg.SpecPolicy}.Merge(in.SpecName, live.Spec, bs)
	})
	if err != nil {
		w.log.Error("rolling back the spec failed; the control plane keeps serving its last good version", "spec", in.SpecName, "err", err)
	}
}

func (w *Worker) applySpec(ctx context.Context, in store.Instance, attempt int) error {
	op := in.Op
	rev := op.Revision
	if rev == 0 {
		d, problems, err := w.check(ctx, op.Payload, in.Tenant)
		if err != nil {
			return err
		}
		if problems != "" {
			return w.failInstance(ctx, in, problems)
		}
		if problems, err := w.checkOwnership(ctx, in, d.EdgeRoute.Spec.Hosts); err != nil {
			return err
		} else if problems != "" {
			return w.failInstance(ctx, in, problems)
		}
		rev, err = w.writeSpec(ctx, d.Name(), in.ID, op.ID, false, func() ([]byte, error) {
			bs, err := w.cfg.Store.ListBindings(ctx, in.ID)
			if err != nil {
				return nil, retry("listing bindings of %s: %w", in.ID, err)
			}
			return specio.Reader{Policy: w.cfg.SpecPolicy}.Merge(d.Name(), op.Payload, bs)
		})
		if err != nil {
			var r retryable
			if !errors.As(err, &r) {
				return w.failInstance(ctx, in, problemsText("merging binding keys into the EdgeRoute", err))
			}
			return err
		}
		if err := w.updateInstance(ctx, in.ID, op.ID, func(i *store.Instance) {
			i.Op.Revision = rev
			i.Op.Description = fmt.Sprintf("revision %d written; waiting for the control plane to publish it", rev)
		}); err != nil {
			return done(err)
		}
	}
	cpErr, note, err := w.waitPublished(ctx, in.SpecName, rev)
	if err != nil {
		return err
	}
	if cpErr != "" {
		if err := w.failInstance(ctx, in, fmt.Sprintf("the control plane rejected revision %d of EdgeRoute %q: %s", rev, in.SpecName, cpErr)); err != nil {
			return err
		}
		w.rollback(ctx, in, op.ID)
		return nil
	}
	target, err := w.cdnStep(ctx, in, op.Payload)
	if err == nil {
		err = w.dnsStep(ctx, in, op.Payload, target)
	}
	if errors.Is(err, dns.ErrNotOwned) || errors.Is(err, cdn.ErrNotOwned) {
		// Somebody wrote a record between the check and now: take the
		// spec back rather than serve a host whose name points elsewhere.
		if err := w.failInstance(ctx, in, err.Error()); err != nil {
			return err
		}
		w.rollback(ctx, in, op.ID)
		return nil
	} else if err != nil {
		return err
	}
	desc := fmt.Sprintf("EdgeRoute %q is live at store revision %d", in.SpecName, rev)
	if note != "" {
		desc = fmt.Sprintf("EdgeRoute %q at store revision %d: %s", in.SpecName, rev, note)
	}
	if err := w.finishInstance(ctx, in, store.StateSucceeded, desc, func(i *store.Instance) {
		i.Spec, i.ParamsHash = op.Payload, op.ParamsHash
	}); err != nil {
		return err
	}
	w.m.ops.WithLabelValues(string(op.Kind), "succeeded").Inc()
	w.log.Info("operation succeeded", "op", op.ID, "kind", string(op.Kind), "instance", in.ID, "spec", in.SpecName, "revision", rev, "attempt", attempt)
	return nil
}

func hostsOf(payload []byte) []string {
	if len(payload) == 0 {
		return nil
	}
	// The stored spec was validated when it was accepted (under the
	// operator's policy); only its hosts are needed here.
	docs, err := spec.Parse("stored", payload)
	if err != nil || len(docs) != 1 {
		return nil
	}
	return docs[0].EdgeRoute.Spec.Hosts
}

// dnsOwner is who the DNS ownership markers of an instance name.
func (w *Worker) dnsOwner(in store.Instance) dns.Owner {
	return dns.Owner{ID: w.cfg.DNSOwnerID, Instance: in.ID, Legacy: hostsOf(in.Spec), LegacyTarget: w.cfg.DNSTarget}
}

// cdnOwner is who the CDN ownership marker of an instance names.
func (w *Worker) cdnOwner(in store.Instance) cdn.Owner {
	return cdn.Owner{ID: w.cfg.DNSOwnerID, Instance: in.ID}
}

// onCDNPlan reports whether the instance gets a CDN front.
func onCDNPlan(in store.Instance) bool { return in.PlanID == cdn.PlanID }

// checkOwnership looks, before anything is published, whether the DNS
// records and CDN aliases of hosts are this instance's to take: problems
// fails the operation; err is retried.
func (w *Worker) checkOwnership(ctx context.Context, in store.Instance, hosts []string) (problems string, err error) {
	if onCDNPlan(in) {
		if w.cfg.CDN == nil {
			return fmt.Sprintf("plan %s is not available: this broker's worker runs without a CDN (gatehouse worker --cdn-origin)", cdn.PlanName), nil
		}
		if err := w.cfg.CDN.Check(ctx, w.cdnOwner(in), hosts); errors.Is(err, cdn.ErrNotOwned) {
			return "cdn step: " + err.Error(), nil
		} else if err != nil {
			return "", retry("cdn step: %w", err)
		}
	}
	if w.cfg.DNS != nil {
		if err := w.cfg.DNS.Check(ctx, w.dnsOwner(in), hosts); errors.Is(err, dns.ErrNotOwned) {
			return "dns step: " + err.Error(), nil
		} else if err != nil {
			return "", retry("dns step: %w", err)
		}
	}
	return "", nil
}

// cdnStep creates or updates the instance's distribution (CDN plan only)
// and returns what its DNS records point at: the distribution's domain,
// or the fleet (DNSTarget).
func (w *Worker) cdnStep(ctx context.Context, in store.Instance, payload []byte) (string, error) {
	if !onCDNPlan(in) || w.cfg.CDN == nil {
		return w.cfg.DNSTarget, nil
	}
	domain, err := w.cfg.CDN.Ensure(ctx, w.cdnOwner(in), hostsOf(payload))
	switch {
	case errors.Is(err, cdn.ErrNotOwned):
		return "", fmt.Errorf("cdn step: %w", err)
	case err != nil:
		return "", retry("cdn step: %w", err)
	case domain == "": // dry run
		return w.cfg.DNSTarget, nil
	}
	return domain, nil
}

// dnsStep points the new spec's hosts at target and removes the records
// of hosts it no longer has, touching only records this instance owns
// (ErrNotOwned otherwise). Idempotent.
func (w *Worker) dnsStep(ctx context.Context, in store.Instance, payload []byte, target string) error {
	if w.cfg.DNS == nil {
		return nil
	}
	want := hostsOf(payload)
	keep := map[string]bool{}
	for _, h := range want {
		keep[h] = true
	}
	var gone []string
	for _, h := range hostsOf(in.Spec) {
		if !keep[h] {
			gone = append(gone, h)
		}
	}
	if len(want) > 0 {
		if err := w.cfg.DNS.Ensure(ctx, w.dnsOwner(in), want, target, w.cfg.DNSTTL); errors.Is(err, dns.ErrNotOwned) {
			return fmt.Errorf("dns step: %w", err)
		} else if err != nil {
			return retry("dns step: %w", err)
		}
	}
	if len(gone) > 0 {
		if err := w.cfg.DNS.Remove(ctx, w.dnsOwner(in), gone); err != nil {
			return retry("dns step: %w", err)
		}
	}
	return nil
}

func (w *Worker) removeSpec(ctx context.Context, in store.Instance, attempt int) error {
	op := in.Op
	rev := op.Revision
	if rev == 0 {
		cur, err := w.cfg.Store.GetSpec(ctx, in.SpecName)
		switch {
		case errors.Is(err, store.ErrNotFound), err == nil && cur.Deleted && cur.WrittenBy != op.ID, err == nil && cur.InstanceID != in.ID:
			rev = -1 // nothing of ours in the route store
		case err != nil:
			return retry("reading spec %q: %w", in.SpecName, err)
		default:
			if rev, err = w.writeSpec(ctx, in.SpecName, in.ID, op.ID, true, nil); err != nil {
				return err
			}
		}
		if err := w.updateInstance(ctx, in.ID, op.ID, func(i *store.Instance) {
			i.Op.Revision = rev
			i.Op.Description = fmt.Sprintf("deletion written at revision %d; waiting for the control plane to publish it", rev)
		}); err != nil {
			return done(err)
		}
	}
	confirmed := "published"
	if rev > 0 {
		cpErr, _, err := w.waitPublished(ctx, in.SpecName, rev)
		if errors.Is(err, errNoReport) && w.cfg.UnconfirmedDeleteAfter > 0 && w.cfg.Now().Sub(op.CreatedAt) >= w.cfg.UnconfirmedDeleteAfter {
			w.log.Warn("the control plane did not report the deletion; finishing the deprovision anyway", "spec", in.SpecName, "revision", rev, "waited", w.cfg.Now().Sub(op.CreatedAt).Round(time.Second))
			confirmed, err = "not confirmed by the control plane", nil
		}
		if err != nil {
			return err
		}
		if cpErr != "" {
			return w.failInstance(ctx, in, fmt.Sprintf("the control plane rejected the deletion of EdgeRoute %q (revision %d): %s", in.SpecName, rev, cpErr))
		}
	}
	if w.cfg.DNS != nil {
		if hs := hostsOf(in.Spec); len(hs) > 0 {
			if err := w.cfg.DNS.Remove(ctx, w.dnsOwner(in), hs); err != nil {
				return retry("dns step: %w", err)
			}
		}
	}
	if onCDNPlan(in) && w.cfg.CDN != nil {
		// Disable, wait until CloudFront deployed that, delete.
		if err := w.cfg.CDN.Remove(ctx, w.cdnOwner(in)); err != nil {
			return retry("cdn step: %w", err)
		}
	}
	bs, err := w.cfg.Store.ListBindings(ctx, in.ID)
	if err != nil {
		return retry("listing bindings of %s: %w", in.ID, err)
	}
	for _, b := range bs {
		if b.Deleted {
			continue
		}
		b.Deleted = true
		b.SealedKey, b.SealedUntil = nil, time.Time{} // a key never fetched goes with it
		if _, err := w.cfg.Store.PutBinding(ctx, b); err != nil {
			return retry("deleting binding %s with its instance: %w", b.ID, err)
		}
	}
	if err := w.cfg.Store.ReleaseName(ctx, in.SpecName, in.ID); err != nil {
		return retry("%w", err)
	}
	if err := w.finishInstance(ctx, in, store.StateSucceeded, fmt.Sprintf("EdgeRoute %q deleted (store revision %d, %s)", in.SpecName, rev, confirmed), func(i *store.Instance) {
		i.Deleted, i.Spec = true, nil
	}); err != nil {
		return err
	}
	w.m.ops.WithLabelValues(string(op.Kind), "succeeded").Inc()
	w.log.Info("operation succeeded", "op", op.ID, "kind", string(op.Kind), "instance", in.ID, "spec", in.SpecName, "revision", rev, "attempt", attempt)
	return nil
}

func (w *Worker) finishBinding(ctx context.Context, b store.Binding, state store.OpState, desc string, f func(*store.Binding)) error {
	err := done(w.updateBinding(ctx, b.InstanceID, b.ID, b.Op.ID, func(x *store.Binding) {
		x.Op.State, x.Op.Description = state, desc
		if f != nil {
			f(x)
		}
	}))
	if err == nil {
		w.m.ops.WithLabelValues(string(b.Op.Kind), string(state)).Inc()
	}
	return err
}

func (w *Worker) applyBinding(ctx context.Context, b store.Binding, attempt int) error {
	op := b.Op
	in, err := w.cfg.Store.GetInstance(ctx, b.InstanceID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return retry("reading instance %s: %w", b.InstanceID, err)
	}
	if err != nil || in.Deleted || len(in.Spec) == 0 {
		if op.Kind == store.OpUnbind {
			return w.finishBinding(ctx, b, store.StateSucceeded, "the instance is gone, and its keys with it", func(x *store.Binding) { x.Deleted = true })
		}
		return w.finishBinding(ctx, b, store.StateFailed, fmt.Sprintf("instance %s has no live EdgeRoute to add the key to", b.InstanceID), nil)
	}
	rev := op.Revision
	if rev == 0 {
		rev, err = w.writeSpec(ctx, in.SpecName, in.ID, op.ID, false, func() ([]byte, error) {
			bs, err := w.cfg.Store.ListBindings(ctx, in.ID)
			if err != nil {
				return nil, retry("listing bindings of %s: %w", in.ID, err)
			}
			return specio.Reader{Policy: w.cfg.SpecPolicy}.Merge(in.SpecName, in.Spec, bs)
		})
		if err != nil {
			var r retryable
			if !errors.As(err, &r) {
				return w.finishBinding(ctx, b, store.StateFailed, problemsText("adding the key to the EdgeRoute", err), nil)
			}
			return err
		}
		if err := w.updateBinding(ctx, b.InstanceID, b.ID, op.ID, func(x *store.Binding) {
			x.Op.Revision = rev
			x.Op.Description = fmt.Sprintf("revision %d written; waiting for the control plane to publish it", rev)
		}); err != nil {
			return done(err)
		}
	}
	cpErr, note, err := w.waitPublished(ctx, in.SpecName, rev)
	if err != nil {
		return err
	}
	if cpErr != "" {
		if err := w.finishBinding(ctx, b, store.StateFailed, fmt.Sprintf("the control plane rejected revision %d of EdgeRoute %q: %s", rev, in.SpecName, cpErr), nil); err != nil {
			return err
		}
		w.rollback(ctx, in, op.ID)
		return nil
	}
	if op.Kind == store.OpUnbind {
		err = w.finishBinding(ctx, b, store.StateSucceeded, fmt.Sprintf("key %q revoked at store revision %d", b.KeyID, rev), func(x *store.Binding) { x.Deleted = true })
	} else {
		desc := fmt.Sprintf("key %q is live at store revision %d", b.KeyID, rev)
		if note != "" {
			desc = fmt.Sprintf("key %q at store revision %d: %s", b.KeyID, rev, note)
		}
		err = w.finishBinding(ctx, b, store.StateSucceeded, desc, nil)
	}
	if err == nil {
		w.log.Info("operation succeeded", "op", op.ID, "kind", string(op.Kind), "instance", in.ID, "binding", b.ID, "revision", rev, "attempt", attempt)
	}
	return err
}

// failOp fails a task's operation after the last attempt.
func (w *Worker) failOp(ctx context.Context, t queue.Task, reason string) error {
	if t.BindingID != "" {
		b, err := w.cfg.Store.GetBinding(ctx, t.InstanceID, t.BindingID)
		if err != nil || b.Op.ID != t.OpID || !b.Op.InProgress() {
			return err
		}
		if err := w.finishBinding(ctx, b, store.StateFailed, reason, nil); err != nil {
			return err
		}
		// Put the spec back as the bindings now say (a failed bind's key
		// leaves it, a failed unbind's key stays).
		if in, err := w.cfg.Store.GetInstance(ctx, t.InstanceID); err == nil && !in.Deleted && len(in.Spec) > 0 {
			w.rollback(ctx, in, b.Op.ID)
		}
		return nil
	}
	in, err := w.cfg.Store.GetInstance(ctx, t.InstanceID)
	if err != nil || in.Op.ID != t.OpID || !in.Op.InProgress() {
		return err
	}
	if err := w.failInstance(ctx, in, reason); err != nil {
		return err
	}
	if in.Op.Kind != store.OpDeprovision {
		w.rollback(ctx, in, in.Op.ID)
	}
	return nil
}
