// Package store defines the broker's durable state and the revisioned route
// store the control plane consumes: service instances and bindings, each
// carrying its current OSB operation (with the outbox flag), the EdgeRoute
// specs at monotonically increasing store revisions, and the per-spec
// publication status the control plane reports back. Backends live in
// subpackages (sqlitestore, dynamostore) and pass the same conformance
// suite (storetest). It must not import the broker's api, queue or worker
// packages, nor the control plane.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns (wrapped, test with errors.Is).
var (
	// ErrNotFound: no such instance, binding, spec or publication.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a conditional write lost: the record changed since it was
	// read (version/revision mismatch), or a name is claimed by another
	// instance. Re-read and decide again.
	ErrConflict = errors.New("conditional write conflict")
)

// OpKind is what an operation does.
type OpKind string

// Operation kinds.
const (
	OpProvision   OpKind = "provision"
	OpUpdate      OpKind = "update"
	OpDeprovision OpKind = "deprovision"
	OpBind        OpKind = "bind"
	OpUnbind      OpKind = "unbind"
)

// OpState is an OSB last_operation state.
type OpState string

// Operation states, spelled as OSB spells them.
const (
	StateInProgress OpState = "in progress"
	StateSucceeded  OpState = "succeeded"
	StateFailed     OpState = "failed"
)

// Operation is one asynchronous OSB operation on an instance or binding.
type Operation struct {
	ID    string  `json:"id"`
	Kind  OpKind  `json:"kind"`
	State OpState `json:"state"`
	// Description is shown by last_operation: progress, or why it failed.
	Description string `json:"description,omitempty"`
	// OriginatingIdentity is the X-Broker-API-Originating-Identity header
	// as received ("platform base64-json"), recorded for audit.
	OriginatingIdentity string `json:"originating_identity,omitempty"`
	RequestIdentity     string `json:"request_identity,omitempty"`
	// Payload is what the operation applies: the requested canonical spec
	// JSON for provision/update; empty otherwise.
	Payload []byte `json:"payload,omitempty"`
	// ParamsHash identifies the request (see Instance.ParamsHash and
	// Binding.ParamsHash); it becomes the record's hash when the operation
	// succeeds.
	ParamsHash string `json:"params_hash,omitempty"`
	// Revision is the store revision the worker wrote for this operation
	// (0 until written); the operation succeeds once the control plane
	// reports it published.
	Revision int64 `json:"revision,omitempty"`
	// Enqueued is the outbox flag: false from the moment the operation is
	// written until the queue has accepted its message. The sweeper
	// enqueues every in-progress operation still false after a grace time.
	Enqueued  bool      `json:"enqueued"`
	Attempts  int       `json:"attempts,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// InProgress reports whether the operation still runs.
func (o Operation) InProgress() bool { return o.State == StateInProgress }

// OpRecord is a finished or replaced operation kept for audit.
type OpRecord struct {
	ID                  string    `json:"id"`
	Kind                OpKind    `json:"kind"`
	State               OpState   `json:"state"`
	OriginatingIdentity string    `json:"originating_identity,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
}

// MaxHistory bounds Instance.History.
const MaxHistory = 50

// Instance is one OSB service instance: one EdgeRoute.
type Instance struct {
	ID        string `json:"id"`
	ServiceID string `json:"service_id"`
	PlanID    string `json:"plan_id"`
	SpecName  string `json:"spec_name"`
	// Tenant owns the instance's hosts: from the OSB context at provision
	// (internal/tenancy.FromContext), else the spec's metadata.team
	// (tenancy.FromTeam). It never changes after provision.
	Tenant string `json:"tenant,omitempty"`
	// Spec is the canonical JSON of the spec as last applied successfully
	// (without binding keys); empty before the first provision succeeds.
	Spec []byte `json:"spec,omitempty"`
	// ParamsHash identifies the provision request (service, plan,
	// parameters) to tell an identical re-provision from a conflicting one.
	ParamsHash string `json:"params_hash"`
	// Deleted is set when deprovisioning succeeded; the record stays so
	// last_operation can answer for it.
	Deleted bool       `json:"deleted,omitempty"`
	Op      Operation  `json:"op"`
	History []OpRecord `json:"history,omitempty"`
	// Version is the record's version, bumped by every write; writes are
	// conditional on it.
	Version int64 `json:"-"`
}

// Binding is one OSB service binding: one API key.
type Binding struct {
	InstanceID string            `json:"instance_id"`
	ID         string            `json:"id"`
	ServiceID  string            `json:"service_id"`
	PlanID     string            `json:"plan_id"`
	Provider   string            `json:"provider"`
	KeyID      string            `json:"key_id"`
	SHA256     string            `json:"sha256"` // hex SHA-256 of the key; the key itself is never stored
	Labels     map[string]string `json:"labels,omitempty"`
	ParamsHash string            `json:"params_hash"`
	Deleted    bool              `json:"deleted,omitempty"`
	Op         Operation         `json:"op"`
	// SealedKey is the key of a bind that answered 202, encrypted with
	// the broker's binding key (AES-GCM, bound to instance, binding and
	// operation) until the platform fetches it once with GET binding. It is
	// wiped then, on unbind, and when found after SealedUntil.
	SealedKey   []byte    `json:"sealed_key,omitempty"`
	SealedUntil time.Time `json:"sealed_until,omitzero"`
	Version     int64     `json:"-"`
}

// Active reports whether the binding's key belongs in the spec: bound or
// being bound, not failed, not being or already unbound.
func (b Binding) Active() bool {
	if b.Deleted {
		return false
	}
	switch b.Op.Kind {
	case OpBind:
		return b.Op.State != StateFailed
	case OpUnbind:
		return b.Op.State == StateFailed
	}
	return false
}

// StoredSpec is one EdgeRoute in the route store at a revision.
type StoredSpec struct {
	Name       string `json:"name"`
	InstanceID string `json:"instance_id"`
	// Revision is the store revision of this write; store revisions only
	// grow, across all specs.
	Revision int64 `json:"revision"`
	// JSON is the canonical EdgeRoute JSON with the binding keys merged
	// into their apiKeys providers; nil when Deleted.
	JSON    []byte `json:"json,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// WrittenBy is the operation that wrote this revision: a redelivered
	// message finds its own write here and does not write again.
	WrittenBy string `json:"written_by,omitempty"`
}

// Publication is what the control plane last reported for a spec.
type Publication struct {
	SpecName string `json:"spec_name"`
	Revision int64  `json:"revision"`
	// Error is empty when that revision is published; otherwise the
	// control plane's compile or validation error.
	Error string `json:"error,omitempty"`
	// Note, on a published revision, is what the control plane added for
	// the product team, e.g. "published; no node of group G connected".
	Note       string    `json:"note,omitempty"`
	ReportedAt time.Time `json:"reported_at"`
}

// OutboxItem names an operation whose message the queue has not accepted.
type OutboxItem struct {
	InstanceID string
	BindingID  string // empty for instance operations
	OpID       string
	CreatedAt  time.Time
}

// Feed is what the control plane consumes: the revisioned change feed and
// the status channel back to the broker.
type Feed interface {
	// Snapshot returns every live (not deleted) spec and the highest store
	// revision they reflect.
	Snapshot(ctx context.Context) (revision int64, specs []StoredSpec, err error)
	// Changes returns every spec write (including deletions, Deleted=true)
	// with a revision above since, in revision order, and the cursor to
	// pass next time.
	Changes(ctx context.Context, since int64) (next int64, changes []StoredSpec, err error)
	// ReportPublished records that revision of specName is live (err nil)
	// or was rejected (err's text is shown to the product team). Reports
	// for a revision older than the last one recorded are ignored.
	ReportPublished(ctx context.Context, specName string, revision int64, err error) error
	// ReportPublishedNote is ReportPublished(…, nil) with a note for the
	// operation's description (Publication.Note).
	ReportPublishedNote(ctx context.Context, specName string, revision int64, note string) error
}

// Store is the broker's whole durable state. Every write is conditional:
// Put* with the Version read (0 = must not exist) or ErrConflict.
type Store interface {
	Feed

	GetInstance(ctx context.Context, id string) (Instance, error)
	// PutInstance writes in if the stored version equals in.Version (0: no
	// record yet) and returns the new version.
	PutInstance(ctx context.Context, in Instance) (int64, error)

	GetBinding(ctx context.Context, instanceID, id string) (Binding, error)
	PutBinding(ctx context.Context, b Binding) (int64, error)
	ListBindings(ctx context.Context, instanceID string) ([]Binding, error)
	// ExpiredKeys lists bindings (with their Version) that still hold a
	// SealedKey whose SealedUntil is before before, at most limit: the
	// broker wipes them.
	ExpiredKeys(ctx context.Context, before time.Time, limit int) ([]Binding, error)

	// MarkEnqueued clears the outbox flag of the operation opID of the
	// instance (bindingID "") or binding, if it is still that operation.
	MarkEnqueued(ctx context.Context, instanceID, bindingID, opID string) error
	// PendingOutbox lists in-progress operations not yet enqueued that were
	// created before olderThan, at most limit.
	PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]OutboxItem, error)
	// Overdue lists in-progress operations (enqueued or not) created
	// before createdBefore, at most limit: the sweeper fails them (their
	// message was lost, e.g. dead-lettered after crash loops).
	Overdue(ctx context.Context, createdBefore time.Time, limit int) ([]OutboxItem, error)

	// ClaimName reserves a spec name for an instance (idempotent for the
	// same instance; ErrConflict if another holds it); ReleaseName frees it
	// if instanceID holds it.
	ClaimName(ctx context.Context, name, instanceID string) error
	ReleaseName(ctx context.Context, name, instanceID string) error

	// GetSpec returns the latest write of a spec, deleted or not.
	GetSpec(ctx context.Context, name string) (StoredSpec, error)
	// PutSpec writes s at a new store revision if the spec's current
	// revision equals prevRevision (0: never written) and returns the new
	// revision.
	PutSpec(ctx context.Context, s StoredSpec, prevRevision int64) (int64, error)

	// GetPublication returns the control plane's last report for a spec.
	GetPublication(ctx context.Context, specName string) (Publication, error)

	// Ping checks the backend answers (readiness).
	Ping(ctx context.Context) error
	Close() error
}
