package api

import (
	"bytes"
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
	"github.com/gatehouse-edge/gatehouse/broker/specs"
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

// Credentials are what a binding returns. APIKey is only ever present in
// the response to the PUT that created the key.
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

func (a *API) bind(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	identity, ok := asyncRequest(w, r)
	if !ok {
		return
	}
	var req bindRequest
	if !readBody(w, r, &req) || !checkIDs(w, req.ServiceID, req.PlanID, true) {
		return
	}
	var params BindParameters
	dec := json.NewDecoder(bytes.NewReader(req.Parameters))
	dec.DisallowUnknownFields()
	if len(req.Parameters) == 0 {
		writeError(w, http.StatusBadRequest, errInvalidParams, `parameters are required: {"provider": "<apiKeys provider>", "labels": {...}}`)
		return
	}
	if err := dec.Decode(&params); err != nil {
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf(`parameters: want {"provider": "<apiKeys provider>", "labels": {...}}: %v`, err))
		return
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
	if params.Provider == "" || er.Spec.Identity.ProviderKind(params.Provider) != "apiKey" {
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("parameters.provider %q is not an apiKeys provider of EdgeRoute %q (it has: %s)",
			params.Provider, in.SpecName, strings.Join(apiKeyProviders(er), ", ")))
		return
	}
	canonParams, _ := json.Marshal(params)
	hash := specs.Hash([]byte(req.ServiceID), []byte(req.PlanID), canonParams)
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
		case cur.Op.InProgress() && cur.Op.Kind == store.OpBind && same:
			writeJSON(w, http.StatusAccepted, bindingBody{Operation: cur.Op.ID})
		case cur.Op.InProgress() && cur.Op.Kind == store.OpUnbind:
			writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("binding %s is being deleted", bid))
		case !same:
			writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("binding %s already exists with different parameters", bid))
		default: // identical and bound: the key itself was shown once and is not stored
			writeJSON(w, http.StatusOK, bindingBody{Credentials: credentialsFor(er, cur), Parameters: &params})
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
	}
	if _, err := a.cfg.Store.PutBinding(ctx, next); err != nil {
		a.storeWriteFailed(w, r, err, "binding "+bid)
		return
	}
	a.log.Info("bind accepted", "instance", id, "binding", bid, "provider", params.Provider, "op", op.ID, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id, BindingID: bid})
	creds := credentialsFor(er, next)
	creds.APIKey = key
	// Wait a little for the key to go live, so most platforms get a plain
	// synchronous 201; past BindWait answer 202 and let them poll.
	final, err := a.waitBinding(r, id, bid, op.ID)
	switch {
	case err != nil || final.Op.InProgress():
		// Nonstandard but necessary: the key is never stored, so this is
		// the only response that can carry it.
		writeJSON(w, http.StatusAccepted, bindingBody{Operation: op.ID, Credentials: creds})
	case final.Op.State == store.StateSucceeded:
		writeJSON(w, http.StatusCreated, bindingBody{Credentials: creds})
	default:
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("binding %s failed: %s", bid, final.Op.Description))
	}
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

func (a *API) unbind(w http.ResponseWriter, r *http.Request) {
	id, bid := r.PathValue("id"), r.PathValue("bid")
	identity, ok := asyncRequest(w, r)
	if !ok {
		return
	}
	if !checkQueryIDs(w, r) {
		return
	}
	ctx := r.Context()
	cur, err := a.cfg.Store.GetBinding(ctx, id, bid)
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
	if _, err := a.cfg.Store.PutBinding(ctx, cur); err != nil {
		a.storeWriteFailed(w, r, err, "binding "+bid)
		return
	}
	a.log.Info("unbind accepted", "instance", id, "binding", bid, "op", op.ID, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id, BindingID: bid})
	writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
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
	writeJSON(w, http.StatusOK, bindingBody{Credentials: credentialsFor(er, b), Parameters: &BindParameters{Provider: b.Provider, Labels: b.Labels}})
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
