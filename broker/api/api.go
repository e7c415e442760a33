// Package api is the broker's Open Service Broker v2.17 HTTP API: catalog,
// asynchronous service instances (one EdgeRoute each) and bindings (one
// API key each), last_operation polling. A request is checked, validated
// with the spec package, written to the store as an operation with its
// outbox flag set (one conditional write), then enqueued; the worker does
// the rest. It must not import the worker, the control plane or any
// enforcement library.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/sealbox"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// MinAPIVersion is the oldest X-Broker-API-Version accepted.
const MinAPIVersion = "2.13"

// Config is what the API needs. Store, Queue, Username and Password are
// required; Log defaults to discarding, Registry to a new registry.
type Config struct {
	Store    store.Store
	Queue    queue.Queue
	Log      *slog.Logger
	Registry *prometheus.Registry
	Username string
	Password string // never logged
	// BindWait is how long PUT binding waits for the key to be live before
	// answering 202 instead of 201 (default 20s; negative: never wait).
	BindWait time.Duration
	// KeyBox seals the key of a bind that answers 202 until the platform
	// fetches it with GET binding (default: a random key for this process
	// only, so pending keys do not survive a restart).
	KeyBox *sealbox.Box
	// PendingKeyTTL is how long such a key waits to be fetched before it
	// is wiped unseen (default 24h).
	PendingKeyTTL time.Duration
	// RetryAfter is the Retry-After hint of in-progress last_operation
	// answers (default 1s).
	RetryAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Tenancy is the operator's tenant policy (optional).
	Tenancy Tenancy
	// SpecPolicy is the validation policy of provisioned specs (the
	// operator's --upstream-allow, the broker's own addresses).
	SpecPolicy spec.Policy
}

// API is the OSB HTTP handler.
type API struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	m     *metrics
	hosts *store.HostIndex
	// claimMu makes checking a provision's or update's hosts and
	// reserving them one step, so two overlapping requests arriving
	// together cannot both pass.
	claimMu sync.Mutex
}

// New checks cfg and builds the handler.
func New(cfg Config) (*API, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("broker api: Store is required")
	case cfg.Queue == nil:
		return nil, errors.New("broker api: Queue is required")
	case cfg.Username == "" || cfg.Password == "":
		return nil, errors.New("broker api: a username and a password are required (basic auth protects every endpoint)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.BindWait == 0 {
		cfg.BindWait = 20 * time.Second
	}
	if cfg.KeyBox == nil {
		cfg.KeyBox = sealbox.Ephemeral()
	}
	if cfg.PendingKeyTTL <= 0 {
		cfg.PendingKeyTTL = DefaultPendingKeyTTL
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, log: cfg.Log.With("component", "broker-api"), mux: http.NewServeMux(), m: m, hosts: store.NewHostIndex()}
	a.routes()
	return a, nil
}

func (a *API) routes() {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request)) {
		a.mux.Handle(pattern, a.instrument(pattern, http.HandlerFunc(f)))
	}
	h("GET /v2/catalog", a.catalog)
	h("PUT /v2/service_instances/{id}", a.provision)
	h("PATCH /v2/service_instances/{id}", a.update)
	h("DELETE /v2/service_instances/{id}", a.deprovision)
	h("GET /v2/service_instances/{id}", a.getInstance)
	h("GET /v2/service_instances/{id}/last_operation", a.instanceLastOperation)
	h("PUT /v2/service_instances/{id}/service_bindings/{bid}", a.bind)
	h("DELETE /v2/service_instances/{id}/service_bindings/{bid}", a.unbind)
	h("GET /v2/service_instances/{id}/service_bindings/{bid}", a.getBinding)
	h("GET /v2/service_instances/{id}/service_bindings/{bid}/last_operation", a.bindingLastOperation)
	a.listRoutes()
}

// ServeHTTP applies, in order: Request-Identity echo, basic auth (401),
// X-Broker-API-Version (412), then routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Broker-API-Request-Identity"); id != "" {
		w.Header().Set("X-Broker-API-Request-Identity", id)
	}
	user, pass, ok := r.BasicAuth()
	if !ok || !equal(user, a.cfg.Username) || !equal(pass, a.cfg.Password) {
		a.m.requests.WithLabelValues("auth", "401").Inc()
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse-broker"`)
		writeError(w, http.StatusUnauthorized, "Unauthorized", "missing or wrong basic-auth credentials")
		return
	}
	if v := r.Header.Get("X-Broker-API-Version"); !versionOK(v) {
		a.m.requests.WithLabelValues("version", "412").Inc()
		desc := fmt.Sprintf("X-Broker-API-Version %q is not supported: this broker speaks OSB %s and up to 2.17", v, MinAPIVersion)
		if v == "" {
			desc = "the X-Broker-API-Version header is required (this broker speaks OSB " + MinAPIVersion + " to 2.17)"
		}
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", desc)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// equal compares in constant time (for equal lengths).
func equal(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// versionOK accepts "2.x" with x >= 13.
func versionOK(v string) bool {
	major, minor, ok := strings.Cut(strings.TrimSpace(v), ".")
	if !ok {
		return false
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma == 2 && mi >= 13
}

// errorBody is the OSB error response.
type errorBody struct {
	Error       string `json:"error,omitempty"`
	Description string `json:"description"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, desc string) {
	writeJSON(w, code, errorBody{Error: kind, Description: desc})
}

// OSB error codes (spec: "Service Broker Errors").
const (
	errAsyncRequired    = "AsyncRequired"
	errConcurrency      = "ConcurrencyError"
	errInvalidParams    = "InvalidParameters"
	errBadRequest       = "BadRequest"
	errConflict         = "Conflict"
	errNotFound         = "NotFound"
	errGone             = "Gone"
	errInternal         = "InternalError"
	errMaintenanceInfo  = "MaintenanceInfoConflict"
	maxBodyBytes        = 1<<20 + 64<<10 // a spec (spec.MaxDocumentSize) plus the OSB envelope
	asyncRequiredDetail = "this broker provisions asynchronously: send accepts_incomplete=true and poll last_operation"
)

// internal answers 500 without leaking details and logs the cause.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, errInternal, "the broker could not complete the request; try again (details are in the broker log)")
}

// readBody decodes the JSON body into v; 400 on failure.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("reading the request body: %v", err))
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		writeError(w, http.StatusBadRequest, errBadRequest, "the request body is empty; a JSON object is required")
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("the request body is not a valid OSB JSON object: %v", err))
		return false
	}
	return true
}

// originatingIdentity validates the header ("platform base64(json)") and
// returns it for the operation record; 400 when malformed.
// storeWriteFailed answers a failed conditional write of what (e.g.
// "instance i-1"): a lost race is the OSB ConcurrencyError (422, retry),
// anything else an internal error.
func (a *API) storeWriteFailed(w http.ResponseWriter, r *http.Request, err error, what string) {
	if errors.Is(err, store.ErrConflict) {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, what+" changed while this request was handled; retry")
		return
	}
	a.internal(w, r, err)
}

// asyncRequest checks what every state-changing OSB call needs —
// accepts_incomplete=true (this broker is async only) and a well-formed
// originating identity — and answers the error itself when one is missing.
func asyncRequest(w http.ResponseWriter, r *http.Request) (identity string, ok bool) {
	if !acceptsIncomplete(r) {
		writeError(w, http.StatusUnprocessableEntity, errAsyncRequired, asyncRequiredDetail)
		return "", false
	}
	identity, err := originatingIdentity(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, err.Error())
		return "", false
	}
	return identity, true
}

func originatingIdentity(r *http.Request) (string, error) {
	v := r.Header.Get("X-Broker-API-Originating-Identity")
	if v == "" {
		return "", nil
	}
	platform, value, ok := strings.Cut(v, " ")
	if !ok || platform == "" {
		return "", fmt.Errorf("X-Broker-API-Originating-Identity must be \"<platform> <base64 JSON>\"")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return "", fmt.Errorf("X-Broker-API-Originating-Identity: the value is not base64: %v", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("X-Broker-API-Originating-Identity: the value is not a base64-encoded JSON object: %v", err)
	}
	return v, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func acceptsIncomplete(r *http.Request) bool {
	return r.URL.Query().Get("accepts_incomplete") == "true"
}

// enqueue sends the task and clears the outbox flag. A failure is logged,
// not returned: the operation is durable and the sweeper retries.
func (a *API) enqueue(ctx context.Context, t queue.Task) {
	if err := a.cfg.Queue.Send(ctx, t.Encode()); err != nil {
		a.m.enqueueFailures.Inc()
		a.log.Warn("enqueue failed; the outbox sweeper will retry", "op", t.OpID, "instance", t.InstanceID, "binding", t.BindingID, "err", err)
		return
	}
	if err := a.cfg.Store.MarkEnqueued(ctx, t.InstanceID, t.BindingID, t.OpID); err != nil {
		a.log.Warn("clearing the outbox flag failed; the sweeper may enqueue once more (the worker is idempotent)", "op", t.OpID, "err", err)
	}
}

func (a *API) newOp(r *http.Request, kind store.OpKind, identity string) store.Operation {
	now := a.cfg.Now().UTC()
	return store.Operation{
		ID: newID(), Kind: kind, State: store.StateInProgress,
		Description:         fmt.Sprintf("%s accepted, waiting for a worker", kind),
		OriginatingIdentity: identity,
		RequestIdentity:     r.Header.Get("X-Broker-API-Request-Identity"),
		CreatedAt:           now, UpdatedAt: now,
	}
}

// pushHistory records the replaced operation for audit.
func pushHistory(h []store.OpRecord, op store.Operation) []store.OpRecord {
	if op.ID == "" {
		return h
	}
	h = append(h, store.OpRecord{ID: op.ID, Kind: op.Kind, State: op.State, OriginatingIdentity: op.OriginatingIdentity, CreatedAt: op.CreatedAt})
	if len(h) > store.MaxHistory {
		h = h[len(h)-store.MaxHistory:]
	}
	return h
}

type operationBody struct {
	Operation string `json:"operation,omitempty"`
}
