package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/backend"
	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// Feed reads the broker's revisioned route store: a snapshot at start,
// then the change feed, polled. Each spec carries its store revision, and
// the store is also the Reporter the control plane tells what became of
// each revision.
type Feed struct {
	feed store.Feed
	poll time.Duration
	log  *slog.Logger
	// tenants caches each instance's tenant (it never changes).
	tenants map[string]string
}

// NewFeed wraps a broker store feed.
func NewFeed(f store.Feed, o Options) *Feed {
	poll := o.PollInterval
	if poll <= 0 {
		poll = 5 * time.Second
	}
	return &Feed{feed: f, poll: poll, log: o.log().With("component", "source", "source", "broker"), tenants: map[string]string{}}
}

// OpenBroker opens the broker's route store at storeURL (sqlite:PATH or
// dynamodb://TABLE, as `gatehouse broker --store` takes) as a Source and a
// Reporter.
func OpenBroker(ctx context.Context, storeURL string, o Options) (Source, Reporter, error) {
	st, err := backend.OpenStore(ctx, storeURL, backend.Options{AWSEndpoint: o.AWSEndpoint, AWSRegion: o.S3Region})
	if err != nil {
		return nil, nil, fmt.Errorf("broker source: %w", err)
	}
	return NewFeed(st, o), NewBrokerReporter(st), nil
}

// Publications is the part of the broker's store a BrokerReporter uses:
// the status channel and a read of what it holds.
type Publications interface {
	ReportPublished(ctx context.Context, specName string, revision int64, err error) error
	ReportPublishedNote(ctx context.Context, specName string, revision int64, note string) error
	GetPublication(ctx context.Context, specName string) (store.Publication, error)
}

// BrokerReporter reports to the broker's store so that any number of
// control-plane replicas can report the same specs: a report that would
// not change what the store holds is not written (two replicas publishing
// the same revision record it once), a report older than the one held is
// dropped (the store also refuses it), and an error for a revision some
// replica already reported published is dropped: that revision is live on
// the fleet (on that replica's nodes at least), and the broker's worker
// must not see its success turn into a failure. Errors a compile gives
// are the same on every replica (same content, same options); only
// replica-local ones (a publish refused, a canary rolled back) can differ.
// The read and the write are two requests: two replicas reporting the
// same revision at the same instant, one published and one failed, may
// still leave the error; the replica that published it reports every
// published spec again after its next rebuild, which puts it right.
type BrokerReporter struct{ st Publications }

// NewBrokerReporter wraps the broker's store.
func NewBrokerReporter(st Publications) *BrokerReporter { return &BrokerReporter{st: st} }

// ReportPublished implements Reporter.
func (r *BrokerReporter) ReportPublished(ctx context.Context, specName string, revision int64, perr error) error {
	p, err := r.st.GetPublication(ctx, specName)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("reporting revision %d of %q: %w", revision, specName, err)
	case p.Revision > revision:
		return nil // a newer revision is reported: never go back
	case p.Revision == revision && p.Error == "" && (p.Note == "" || perr != nil):
		return nil // published already, by this replica or another
	case p.Revision == revision && perr != nil && p.Error == perr.Error():
		return nil // the same verdict
	}
	// A report without a note replaces a published one with a note: some
	// replica reached every node group serving the spec.
	return r.st.ReportPublished(ctx, specName, revision, perr)
}

// ReportPublishedNote implements source.NoteReporter, with the rules of
// ReportPublished; a revision some replica reported published (with or
// without a note) keeps what is held, so replicas never flap between
// notes.
func (r *BrokerReporter) ReportPublishedNote(ctx context.Context, specName string, revision int64, note string) error {
	p, err := r.st.GetPublication(ctx, specName)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("reporting revision %d of %q: %w", revision, specName, err)
	case p.Revision > revision:
		return nil
	case p.Revision == revision && p.Error == "":
		return nil
	}
	return r.st.ReportPublishedNote(ctx, specName, revision, note)
}

// Watch implements Source.
func (f *Feed) Watch(ctx context.Context, fn func(Revision)) error {
	specs := map[string]store.StoredSpec{}
	var cursor int64
	var deleted []Spec         // since the last revision delivered
	seen := map[string]int64{} // newest store revision applied, per spec
	loaded := false
	t := time.NewTicker(f.poll)
	defer t.Stop()
	for {
		changed := false
		if !loaded {
			rev, all, err := f.feed.Snapshot(ctx)
			if err == nil {
				for _, s := range all {
					specs[s.Name] = s
					seen[s.Name] = s.Revision
				}
				cursor, loaded, changed = rev, true, true
			} else if ctx.Err() == nil {
				f.log.Warn("reading the route store failed; retrying", "error", err)
			}
		} else {
			next, changes, err := f.feed.Changes(ctx, cursor)
			switch {
			case err != nil && ctx.Err() == nil:
				f.log.Warn("reading the change feed failed; keeping the last revision", "error", err)
			case err == nil:
				for _, c := range changes {
					// A store may hand a recent change out again (DynamoDB's
					// feed does, for a few seconds): only newer revisions count.
					if c.Revision <= seen[c.Name] {
						continue
					}
					seen[c.Name] = c.Revision
					if c.Deleted {
						delete(specs, c.Name)
						deleted = append(deleted, Spec{Name: c.Name, Origin: "broker:" + c.Name, Revision: c.Revision})
					} else {
						specs[c.Name] = c
					}
					changed = true
				}
				cursor = next
			}
		}
		if changed {
			rev := f.revision(ctx, cursor, specs)
			rev.Deleted, deleted = deleted, nil
			// Read without error, and every spec has its tombstone.
			rev.EmptyOK = len(rev.Specs) == 0
			fn(rev)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (f *Feed) revision(ctx context.Context, cursor int64, specs map[string]store.StoredSpec) Revision {
	out := make([]Spec, 0, len(specs))
	for _, s := range specs {
		out = append(out, Spec{Name: s.Name, Origin: "broker:" + s.Name, Revision: s.Revision, Data: s.JSON, Tenant: f.tenant(ctx, s)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return Revision{ID: fmt.Sprintf("b%d", cursor), Specs: out}
}

// tenant is the tenant of a stored spec's instance when the feed is a
// whole store (cached: it never changes); "" (the spec's metadata.team
// then) when it is not, or the instance records none.
func (f *Feed) tenant(ctx context.Context, s store.StoredSpec) string {
	ir, ok := f.feed.(interface {
		GetInstance(ctx context.Context, id string) (store.Instance, error)
	})
	if !ok || s.InstanceID == "" {
		return ""
	}
	if t, ok := f.tenants[s.InstanceID]; ok {
		return t
	}
	in, err := ir.GetInstance(ctx, s.InstanceID)
	if err != nil {
		f.log.Warn("reading the tenant of a spec failed; using its metadata.team", "spec", s.Name, "instance", s.InstanceID, "error", err)
		return ""
	}
	f.tenants[s.InstanceID] = in.Tenant
	return in.Tenant
}
