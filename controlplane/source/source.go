// Package source is where the control plane gets EdgeRoute specs from: one
// small interface (Source) that delivers whole revisions, and one (Reporter)
// through which the control plane tells the store what became of each spec.
// Implementations here: a watched directory (file:DIR), an S3 prefix polled
// with ETags (s3://bucket/prefix) and the broker's route store (broker:URL).
//
// The package parses nothing: a Spec carries the document bytes and where
// they came from; compiling and validating is the compile package's job. It
// must not import the compile, envoy, snapshot or xds packages.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Spec is one stored EdgeRoute document (a file may hold several documents;
// compile splits them).
type Spec struct {
	// Name is the spec's metadata.name when the store knows it (the broker
	// does); "" when it is only known after parsing (a file).
	Name string
	// Origin says where the bytes came from, for error messages and for
	// spec.Parse's file name: a path, "broker:<name>", "s3://bucket/key".
	Origin string
	// Revision is the store's revision of this one spec (the broker bumps
	// it on every change); 0 when the store has none. Reported back
	// through Reporter.ReportPublished.
	Revision int64
	// Data is the document as YAML or JSON.
	Data []byte
	// Tenant claims the spec's hosts when the store knows it (the broker:
	// the service instance's tenant); "" means the spec's metadata.team.
	Tenant string
}

// Revision is the full set of specs at one point in time.
type Revision struct {
	// ID identifies the revision; it changes whenever any spec changes and
	// is the same for the same content. It becomes (part of) the xDS
	// version string.
	ID    string
	Specs []Spec
	// Deleted lists the specs removed since the previous revision this
	// source delivered (Name and the store Revision of the deletion). The
	// control plane reports each one to the Reporter, with a nil error,
	// once a version without it is live on the fleet.
	Deleted []Spec
	// EmptyOK vouches that a revision without specs is the store's true
	// content (every spec was deleted on purpose), not a glitch: the
	// control plane then publishes the empty configuration instead of
	// keeping the last one, and confirms the deletions. Only the broker's
	// route store can tell (tombstones); an empty directory or prefix
	// never sets it.
	EmptyOK bool
}

// Source delivers revisions.
type Source interface {
	// Watch calls fn with the current revision as soon as it is known and
	// again after every change, until ctx ends. Calls to fn are never
	// concurrent and fn must not block for long (the control plane only
	// queues the revision). Watch returns nil when ctx ends and an error
	// when the source cannot be used at all (bad URL, missing directory);
	// passing failures (a store briefly down) are logged and retried, and
	// the last revision stays in force.
	Watch(ctx context.Context, fn func(Revision)) error
}

// Func adapts a function to Source.
type Func func(ctx context.Context, fn func(Revision)) error

// Watch calls f.
func (f Func) Watch(ctx context.Context, fn func(Revision)) error { return f(ctx, fn) }

// Reporter receives, for every spec of every revision the control plane
// handled, whether it was published to the fleet (err == nil) or left out
// (err says why: validation, compile or a referential check). specName is
// metadata.name; revision is Spec.Revision of the spec as delivered.
// Implementations must be safe for concurrent use and should not block.
type Reporter interface {
	ReportPublished(ctx context.Context, specName string, revision int64, err error) error
}

// NoteReporter is a Reporter that can also report a spec published with
// a note for the product team (the broker's operation description), e.g.
// "published; no node of group G connected". The control plane uses it
// when its Reporter has it, else ReportPublished(…, nil).
type NoteReporter interface {
	Reporter
	ReportPublishedNote(ctx context.Context, specName string, revision int64, note string) error
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, specName string, revision int64, err error) error

// ReportPublished calls f.
func (f ReporterFunc) ReportPublished(ctx context.Context, specName string, revision int64, err error) error {
	return f(ctx, specName, revision, err)
}

// Discard is a Reporter that drops every report (file and S3 sources have
// no one to tell).
var Discard Reporter = ReporterFunc(func(context.Context, string, int64, error) error { return nil })

// RevisionID is a content-derived revision id: the same specs give the
// same id in any order. Sources without a revision counter of their own
// use it.
func RevisionID(specs []Spec) string {
	keys := make([]string, len(specs))
	for i, s := range specs {
		sum := sha256.Sum256(s.Data)
		keys[i] = s.Origin + "\x00" + s.Name + "\x00" + fmt.Sprint(s.Revision) + "\x00" + hex.EncodeToString(sum[:])
	}
	sort.Strings(keys)
	h := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(h[:6])
}

// Open builds the Source a --source flag names: "file:DIR",
// "s3://bucket/prefix" or "broker:<store URL>". Options carry what some
// sources need (a logger, S3 client settings).
func Open(ctx context.Context, ref string, o Options) (Source, Reporter, error) {
	switch {
	case strings.HasPrefix(ref, "file:"):
		dir := strings.TrimPrefix(ref, "file:")
		s, err := NewDir(dir, o)
		return s, Discard, err
	case strings.HasPrefix(ref, "s3://"):
		s, err := NewS3(ctx, ref, o)
		return s, Discard, err
	case strings.HasPrefix(ref, "broker:"):
		return OpenBroker(ctx, strings.TrimPrefix(ref, "broker:"), o)
	}
	return nil, nil, fmt.Errorf("source %q: want file:DIR, s3://bucket/prefix or broker:<store URL>", ref)
}
