package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// KeyPrefix starts every API key the broker issues, so leaked keys are
// recognisable by secret scanners.
const KeyPrefix = "gh_"

type bindRequest struct {
	ServiceID    string          `json:"service_id"`
	PlanID       string          `json:"plan_id"`
	Parameters   json.RawMessage `json:"parameters"`
	BindResource json.RawMessage `json:"bind_resource"`
	Context      json.RawMessage `json:"context"`
	AppGUID      string          `json:"app_guid"`
}

// BindParameters are a binding's parameters.
type BindParameters struct {
	Provider string            `json:"provider"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Credentials are what a binding returns. APIKey is present in exactly
// one response: the PUT that created the key (201), or, after a 202, the
// first GET binding once the bind succeeded.
type Credentials struct {
	APIKey   string   `json:"api_key,omitempty"`
	APIKeyID string   `json:"api_key_id"`
	Provider string   `json:"provider"`
	Header   string   `json:"header,omitempty"`
	Query    string   `json:"query,omitempty"`
	Hosts    []string `json:"hosts"`
}

type bindingBody struct {
	Operation   string          `json:"operation,omitempty"`
	Credentials *Credentials    `json:"credentials,omitempty"`
	Parameters  *BindParameters `json:"parameters,omitempty"`
}

func newKey() (key, sum string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	s := sha256.Sum256([]byte(key))
	return key, hex.EncodeToString(s[:])
}

// liveSpec decodes an instance's applied spec.
func liveSpec(in store.Instance) (*spec.EdgeRoute, error) {
	var er spec.EdgeRoute
	if err := json.Unmarshal(in.Spec, &er); err != nil {
		return nil, fmt.Errorf("instance %s: decoding its stored spec: %w", in.ID, err)
	}
	return &er, nil
}

func credentialsFor(er *spec.EdgeRoute, b store.Binding) *Credentials {
	c := &Credentials{APIKeyID: b.KeyID, Provider: b.Provider, Hosts: er.Spec.Hosts}
	if er.Spec.Identity != nil {
		for _, p := range er.Spec.Identity.APIKeys {
			if p.Name == b.Provider {
				c.Header, c.Query = p.Header, p.Query
			}
		}
	}
	return c
}

func apiKeyProviders(er *spec.EdgeRoute) []string {
	var names []string
	if er.Spec.Identity != nil {
		for _, p := range er.Spec.Identity.APIKeys {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// DefaultPendingKeyTTL is how long the key of a bind answered 202 stays
// sealed in the store waiting for the platform's GET binding.
const DefaultPendingKeyTTL = 24 * time.Hour

// apiKeyProvider returns the named apiKeys provider of the spec, or nil.
func apiKeyProvider(er *spec.EdgeRoute, name string) *spec.APIKeyProvider {
	if er.Spec.Identity == nil || name == "" {
		return nil
	}
	for i := range er.Spec.Identity.APIKeys {
		if p := &er.Spec.Identity.APIKeys[i]; p.Name == name {
			return p
		}
	}
	return nil
}

// keyAAD binds a sealed key to its binding and bind operation.
func keyAAD(instanceID, bindingID, opID string) []byte {
	return []byte("gatehouse-binding-key\x00" + instanceID + "\x00" + bindingID + "\x00" + opID)
}

// bind creates a binding: one API key, its SHA-256 merged into the spec
// by the worker. The key is sealed in the binding record until one
// response carries it:
//   - without accepts_incomplete: 201 with the key, after waiting up to
//     BindWait for it to go live (binding last_operation tells when it is
//     live if it is not yet);
//   - with accepts_incomplete=true: 201 with the key if it went live
//     within BindWait, else 202 with the operation only; the platform
//     then gets the key once from GET binding after "succeeded".
func (a *API) bind(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	async := acceptsIncomplete(r)
	identity, err := originatingIdentity(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, err.Error())
		return
	}
	var req bindRequest
	if !readBody(w, r, &req) || !checkIDs(w, req.ServiceID, req.PlanID, true) {
		return
	}
	var params BindParameters
	if len(req.Parameters) > 0 && string(req.Parameters) != "null" {
		dec := json.NewDecoder(bytes.NewReader(req.Parameters))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&params); err != nil {
			writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf(`parameters: want {"provider": "<apiKeys provider>", "labels": {...}}: %v`, err))
			return
		}
	}
	ctx := r.Context()
	in, err := a.cfg.Store.GetInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (in.Deleted || len(in.Spec) == 0)) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("instance %s does not exist (or its provisioning has not succeeded)", id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if in.Op.InProgress() {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s has a %s operation in progress", id, in.Op.Kind))
		return
	}
	er, err := liveSpec(in)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if names := apiKeyProviders(er); params.Provider == "" && len(names) == 1 {
		params.Provider = names[0] // a bind without parameters: the spec's only apiKeys provider
	}
	prov := apiKeyProvider(er, params.Provider)
	if prov == nil {
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("parameters.provider %q is not an apiKeys provider of EdgeRoute %q (it has: %s)",
			params.Provider, in.SpecName, strings.Join(apiKeyProviders(er), ", ")))
		return
	}
	if problems := spec.CheckBindLabels(*prov, params.Labels); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, errInvalidParams, "parameters.labels: "+strings.Join(problems, "; "))
		return
	}
	canonParams, _ := json.Marshal(params)
	hash := specio.Hash([]byte(req.ServiceID), []byte(req.PlanID), canonParams)
	cur, err := a.cfg.Store.GetBinding(ctx, id, bid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cur = store.Binding{InstanceID: id, ID: bid}
	case err != nil:
		a.internal(w, r, err)
		return
	case !cur.Deleted && !(cur.Op.Kind == store.OpBind && cur.Op.State == store.StateFailed):
		same := cur.ParamsHash == hash
		switch {
		case cur.Op.InProgress() && cur.Op.Kind == store.OpUnbind:
			writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("binding %s is being deleted", bid))
		case !same:
			writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("binding %s already exists with different parameters", bid))
		case cur.Op.InProgress() && async:
			writeJSON(w, http.StatusAccepted, bindingBody{Operation: cur.Op.ID})
		default:
			// Identical and bound, or a platform repeating a synchronous
			// bind whose first answer it lost: (wait like the first request
			// did, then) 200 with the key if no answer carried it yet.
			a.answerBind(w, r, er, cur, "", false)
		}
		return
	}
	key, sum := newKey()
	op := a.newOp(r, store.OpBind, identity)
	op.ParamsHash = hash
	next := store.Binding{
		InstanceID: id, ID: bid, ServiceID: req.ServiceID, PlanID: req.PlanID,
		Provider: params.Provider, KeyID: bid, SHA256: sum, Labels: params.Labels,
		ParamsHash: hash, Op: op, Version: cur.Version,
		SealedKey:   a.cfg.KeyBox.Seal([]byte(key), keyAAD(id, bid, op.ID)),
		SealedUntil: a.cfg.Now().Add(a.cfg.PendingKeyTTL).UTC(),
	}
	if _, err := a.cfg.Store.PutBinding(ctx, next); err != nil {
		a.storeWriteFailed(w, r, err, "binding "+bid)
		return
	}
	a.log.Info("bind accepted", "instance", id, "binding", bid, "provider", params.Provider, "op", op.ID, "async", async, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id, BindingID: bid})
	a.answerBind(w, r, er, next, key, async)
}

// answerBind waits up to BindWait for the bind operation of b to finish,
// then answers: 400 if it failed; 202 with the operation only if it is
// still running and the request was asynchronous; otherwise 201 (first
// answer, fresh is the key) or 200 (a repeat) with the credentials and the
// key, which leaves the store in the same step (only one answer ever
// carries it).
func (a *API) answerBind(w http.ResponseWriter, r *http.Request, er *spec.EdgeRoute, b store.Binding, fresh string, async bool) {
	final, err := a.waitBinding(r, b.InstanceID, b.ID, b.Op.ID)
	switch {
	case err == nil && final.Op.ID == b.Op.ID && final.Op.State == store.StateFailed:
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("binding %s failed: %s", b.ID, final.Op.Description))
		return
	case async && (err != nil || final.Op.InProgress()):
		writeJSON(w, http.StatusAccepted, bindingBody{Operation: b.Op.ID})
		return
	}
	key, err := a.takeKey(r.Context(), b.InstanceID, b.ID, b.Op.ID)
	if err != nil {
		// The key stays sealed: a repeated PUT (or GET once live) gets it.
		a.internal(w, r, err)
		return
	}
	code := http.StatusOK
	if fresh != "" && key == fresh {
		code = http.StatusCreated
	}
	creds := credentialsFor(er, b)
	creds.APIKey = key
	writeJSON(w, code, bindingBody{Credentials: creds})
}

// takeKey removes the sealed key of binding bid (bind operation opID)
// from the store and returns it; "" when there is none (handed over
// already) or it expired (then it is wiped unseen). Conditional writes
// make sure only one caller ever gets it.
func (a *API) takeKey(ctx context.Context, id, bid, opID string) (string, error) {
	for range 10 {
		b, err := a.cfg.Store.GetBinding(ctx, id, bid)
		if err != nil {
			return "", err
		}
		if b.Op.ID != opID || len(b.SealedKey) == 0 {
			return "", nil
		}
		var key []byte
		expired := a.cfg.Now().After(b.SealedUntil)
		if !expired {
			if key, err = a.cfg.KeyBox.Open(b.SealedKey, keyAAD(id, bid, opID)); err != nil {
				// Another replica's key, or a restart without
				// --binding-key-file: leave it for a broker that can open it
				// (or for expiry).
				a.log.Warn("a pending binding key cannot be opened with this broker's binding key (replicas need the same --binding-key-file; a restart without one loses pending keys)", "instance", id, "binding", bid)
				return "", nil
			}
		}
		b.SealedKey, b.SealedUntil = nil, time.Time{}
		if _, err := a.cfg.Store.PutBinding(ctx, b); err != nil {
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return "", err
		}
		if expired {
			a.log.Info("a pending binding key expired unfetched and was wiped", "instance", id, "binding", bid)
		}
		return string(key), nil
	}
	return "", fmt.Errorf("binding %s: handing over its key: 10 conditional writes lost in a row", bid)
}

func (a *API) waitBinding(r *http.Request, id, bid, opID string) (store.Binding, error) {
	var b store.Binding
	if a.cfg.BindWait < 0 {
		return b, errors.New("not waiting")
	}
	deadline := time.NewTimer(a.cfg.BindWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var err error
		b, err = a.cfg.Store.GetBinding(r.Context(), id, bid)
		if err != nil || b.Op.ID != opID || !b.Op.InProgress() {
			return b, err
		}
		select {
		case <-r.Context().Done():
			return b, r.Context().Err()
		case <-deadline.C:
			return b, nil
		case <-tick.C:
		}
	}
}

// unbind revokes a binding's key: 202 with accepts_incomplete=true;
// without it (platforms without asynchronous bindings) the answer waits
// up to BindWait for the revocation to be live: 200, or 422
// ConcurrencyError while it is still in progress (a repeated DELETE waits
// again).
func (a *API) unbind(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	async := acceptsIncomplete(r)
	identity, err := originatingIdentity(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, err.Error())
		return
	}
	if !checkQueryIDs(w, r) {
		return
	}
	ctx := r.Context()
	cur, err := a.cfg.Store.GetBinding(ctx, id, bid)
	if !async && err == nil && !cur.Deleted && cur.Op.InProgress() && cur.Op.Kind == store.OpUnbind {
		a.answerUnbind(w, r, id, bid, cur.Op.ID)
		return
	}
	if a.answeredDelete(w, r, "binding "+bid, cur.Deleted, cur.Op, err, store.OpUnbind) {
		return
	}
	in, err := a.cfg.Store.GetInstance(ctx, id)
	if err == nil && in.Op.InProgress() {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s has a %s operation in progress", id, in.Op.Kind))
		return
	}
	op := a.newOp(r, store.OpUnbind, identity)
	cur.Op = op
	cur.SealedKey, cur.SealedUntil = nil, time.Time{}
	if _, err := a.cfg.Store.PutBinding(ctx, cur); err != nil {
		a.storeWriteFailed(w, r, err, "binding "+bid)
		return
	}
	a.log.Info("unbind accepted", "instance", id, "binding", bid, "op", op.ID, "async", async, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id, BindingID: bid})
	if !async {
		a.answerUnbind(w, r, id, bid, op.ID)
		return
	}
	writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
}

// answerUnbind answers a synchronous unbind once its operation opID has
// finished, or says it is still running.
func (a *API) answerUnbind(w http.ResponseWriter, r *http.Request, id, bid, opID string) {
	final, err := a.waitBinding(r, id, bid, opID)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && final.Deleted):
		writeJSON(w, http.StatusOK, struct{}{})
	case err == nil && final.Op.ID == opID && final.Op.State == store.StateFailed:
		a.log.Warn("synchronous unbind failed", "instance", id, "binding", bid, "op", opID, "reason", final.Op.Description)
		writeError(w, http.StatusInternalServerError, errInternal, fmt.Sprintf("revoking binding %s failed: %s", bid, final.Op.Description))
	default:
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("the revocation of binding %s is still in progress; retry the DELETE (or send accepts_incomplete=true and poll last_operation)", bid))
	}
}

func (a *API) getBinding(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	ctx := r.Context()
	b, err := a.cfg.Store.GetBinding(ctx, id, bid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (b.Deleted || (b.Op.Kind == store.OpBind && b.Op.State != store.StateSucceeded))) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("binding %s of instance %s does not exist (or its creation has not succeeded)", bid, id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	in, err := a.cfg.Store.GetInstance(ctx, id)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	er, err := liveSpec(in)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	creds := credentialsFor(er, b)
	if b.Op.Kind == store.OpBind && len(b.SealedKey) > 0 {
		// The key of a bind answered 202: handed over exactly once.
		if creds.APIKey, err = a.takeKey(ctx, id, bid, b.Op.ID); err != nil {
			a.internal(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, bindingBody{Credentials: creds, Parameters: &BindParameters{Provider: b.Provider, Labels: b.Labels}})
}

func (a *API) bindingLastOperation(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	b, err := a.cfg.Store.GetBinding(r.Context(), id, bid)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("binding %s of instance %s does not exist", bid, id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if b.Deleted {
		writeJSON(w, http.StatusGone, struct{}{})
		return
	}
	if want := r.URL.Query().Get("operation"); want != "" && want != b.Op.ID {
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("binding %s has no operation %q", bid, want))
		return
	}
	body := lastOperationBody{State: b.Op.State, Description: b.Op.Description}
	if b.Op.InProgress() {
		w.Header().Set("Retry-After", fmt.Sprint(int(a.cfg.RetryAfter.Round(1e9).Seconds())))
	}
	writeJSON(w, http.StatusOK, body)
}

// WipeExpiredKeys wipes up to 100 pending binding keys whose expiry
// (PendingKeyTTL) has passed and returns how many; a binding that changed
// meanwhile is left for the next call.
func (a *API) WipeExpiredKeys(ctx context.Context) (int, error) {
	bs, err := a.cfg.Store.ExpiredKeys(ctx, a.cfg.Now(), 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bs {
		b.SealedKey, b.SealedUntil = nil, time.Time{}
		switch _, err := a.cfg.Store.PutBinding(ctx, b); {
		case err == nil:
			n++
			a.log.Info("a pending binding key expired unfetched and was wiped", "instance", b.InstanceID, "binding", b.ID)
		case !errors.Is(err, store.ErrConflict):
			return n, err
		}
	}
	return n, nil
}

// LogValue keeps the key out of logs: only whether it is set.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("api_key", redacted(c.APIKey)),
		slog.String("api_key_id", c.APIKeyID),
		slog.String("provider", c.Provider),
		slog.Any("hosts", c.Hosts),
	)
}

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}
