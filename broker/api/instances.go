package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/broker/queue"
	"github.com/gatehouse-edge/gatehouse/broker/specio"
	"github.com/gatehouse-edge/gatehouse/broker/store"
	"github.com/gatehouse-edge/gatehouse/internal/tenancy"
	"github.com/gatehouse-edge/gatehouse/spec"
)

type provisionRequest struct {
	ServiceID        string          `json:"service_id"`
	PlanID           string          `json:"plan_id"`
	Parameters       json.RawMessage `json:"parameters"`
	Context          json.RawMessage `json:"context"`
	OrganizationGUID string          `json:"organization_guid"`
	SpaceGUID        string          `json:"space_guid"`
	MaintenanceInfo  json.RawMessage `json:"maintenance_info"`
	PreviousValues   json.RawMessage `json:"previous_values"`
}

// checkIDs answers 400 unless service and plan are this broker's.
func checkIDs(w http.ResponseWriter, serviceID, planID string, planRequired bool) bool {
	switch {
	case serviceID == "":
		writeError(w, http.StatusBadRequest, errBadRequest, "service_id is required")
	case serviceID != ServiceID:
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("service_id %q is not in the catalog (want %q, service %q)", serviceID, ServiceID, ServiceName))
	case planRequired && planID == "":
		writeError(w, http.StatusBadRequest, errBadRequest, "plan_id is required")
	case planID != "" && planID != PlanID && planID != cdn.PlanID:
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("plan_id %q is not a plan of service %q (want %q, plan %q, or %q, plan %q)", planID, ServiceName, PlanID, PlanName, cdn.PlanID, cdn.PlanName))
	default:
		return true
	}
	return false
}

// parseSpec validates the parameters as an EdgeRoute; on failure it
// answers 400 with every problem. The tenant rules are checkClaims'.
func (a *API) parseSpec(w http.ResponseWriter, r *http.Request, params json.RawMessage) (*spec.Document, []byte, bool) {
	if len(params) == 0 || string(params) == "null" {
		writeError(w, http.StatusBadRequest, errInvalidParams, "parameters: an EdgeRoute (apiVersion, kind, metadata, spec) is required")
		return nil, nil, false
	}
	d, err := specio.Reader{Policy: a.cfg.SpecPolicy}.Parse("parameters", params)
	if err != nil {
		if l := specio.Problems(err); l != nil {
			writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("the EdgeRoute has %d problem(s):\n%s", len(l), l.Error()))
			return nil, nil, false
		}
		writeError(w, http.StatusBadRequest, errInvalidParams, err.Error())
		return nil, nil, false
	}
	canon, err := specio.Canonical(d)
	if err != nil {
		a.internal(w, r, err)
		return nil, nil, false
	}
	return d, canon, true
}

func (a *API) provision(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	identity, ok := asyncRequest(w, r)
	if !ok {
		return
	}
	var req provisionRequest
	if !readBody(w, r, &req) || !checkIDs(w, req.ServiceID, req.PlanID, true) || !checkPlatformIDs(w, req) {
		return
	}
	d, canon, ok := a.parseSpec(w, r, req.Parameters)
	if !ok {
		return
	}
	tenant, err := instanceTenant(req, d)
	if err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest, err.Error())
		return
	}
	a.claimMu.Lock()
	defer a.claimMu.Unlock()
	if !a.checkClaims(w, r, d, tenant) {
		return
	}
	ctx := r.Context()
	hash := specio.Hash([]byte(req.ServiceID), []byte(req.PlanID), canon)
	cur, err := a.cfg.Store.GetInstance(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cur = store.Instance{ID: id}
	case err != nil:
		a.internal(w, r, err)
		return
	case !cur.Deleted:
		if cur.Op.InProgress() {
			switch {
			case cur.Op.Kind == store.OpProvision && cur.Op.ParamsHash == hash:
				writeJSON(w, http.StatusAccepted, operationBody{Operation: cur.Op.ID})
			case cur.Op.Kind == store.OpProvision:
				writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("instance %s is being provisioned with different parameters", id))
			default:
				writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s has a %s operation in progress", id, cur.Op.Kind))
			}
			return
		}
		live := len(cur.Spec) > 0
		if live && cur.ParamsHash == hash {
			writeJSON(w, http.StatusOK, struct{}{})
			return
		}
		if live {
			writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("instance %s already exists with different parameters (spec %q); use PATCH to change it", id, cur.SpecName))
			return
		}
		// The instance never went live (its provision failed): provision again.
	}
	if err := a.cfg.Store.ClaimName(ctx, d.Name(), id); err != nil {
		if errors.Is(err, store.ErrConflict) {
			writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("metadata.name %q is already used by another service instance; EdgeRoute names are unique platform-wide", d.Name()))
			return
		}
		a.internal(w, r, err)
		return
	}
	if cur.SpecName != "" && cur.SpecName != d.Name() {
		_ = a.cfg.Store.ReleaseName(ctx, cur.SpecName, id)
	}
	op := a.newOp(r, store.OpProvision, identity)
	op.Payload, op.ParamsHash = canon, hash
	next := store.Instance{
		ID: id, ServiceID: req.ServiceID, PlanID: req.PlanID, SpecName: d.Name(), Tenant: tenant,
		ParamsHash: hash, Op: op, History: pushHistory(cur.History, cur.Op), Version: cur.Version,
	}
	if _, err := a.cfg.Store.PutInstance(ctx, next); err != nil {
		if cur.Version == 0 {
			_ = a.cfg.Store.ReleaseName(ctx, d.Name(), id)
		}
		a.storeWriteFailed(w, r, err, "instance "+id)
		return
	}
	a.hosts.Reserve(d.Name(), id, tenant, d.EdgeRoute.Spec.Hosts)
	a.log.Info("provision accepted", "instance", id, "spec", d.Name(), "op", op.ID, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id})
	writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
}

// bindingBusy reports an in-progress binding operation of the instance.
func (a *API) bindingBusy(r *http.Request, id string) (string, error) {
	bs, err := a.cfg.Store.ListBindings(r.Context(), id)
	if err != nil {
		return "", err
	}
	for _, b := range bs {
		if !b.Deleted && b.Op.InProgress() {
			return b.ID, nil
		}
	}
	return "", nil
}

func (a *API) update(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	identity, ok := asyncRequest(w, r)
	if !ok {
		return
	}
	var req provisionRequest
	if !readBody(w, r, &req) || !checkIDs(w, req.ServiceID, req.PlanID, false) {
		return
	}
	ctx := r.Context()
	cur, err := a.cfg.Store.GetInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Deleted) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("instance %s does not exist", id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if cur.Op.InProgress() {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s has a %s operation in progress", id, cur.Op.Kind))
		return
	}
	if req.PlanID != "" && req.PlanID != cur.PlanID {
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("plan_id: instance %s is on plan %q; plans cannot change (plan_updateable is false): provision a new instance on the other plan", id, cur.PlanID))
		return
	}
	if len(cur.Spec) == 0 {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s was never provisioned successfully (last operation %s %s); provision it again", id, cur.Op.Kind, cur.Op.State))
		return
	}
	if bid, err := a.bindingBusy(r, id); err != nil {
		a.internal(w, r, err)
		return
	} else if bid != "" {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("binding %s of instance %s has an operation in progress", bid, id))
		return
	}
	if len(req.Parameters) == 0 || string(req.Parameters) == "null" {
		writeJSON(w, http.StatusOK, struct{}{}) // nothing to change (context-only update)
		return
	}
	d, canon, ok := a.parseSpec(w, r, req.Parameters)
	if !ok {
		return
	}
	if d.Name() != cur.SpecName {
		writeError(w, http.StatusBadRequest, errInvalidParams, fmt.Sprintf("metadata.name cannot change (%q -> %q): provision a new instance for a new name", cur.SpecName, d.Name()))
		return
	}
	tenant := cur.Tenant
	if tenant == "" { // an instance stored before tenants were recorded
		tenant = tenancy.FromTeam(d.EdgeRoute.Metadata.Team)
	}
	a.claimMu.Lock()
	defer a.claimMu.Unlock()
	if !a.checkClaims(w, r, d, tenant) {
		return
	}
	hash := specio.Hash([]byte(cur.ServiceID), []byte(cur.PlanID), canon)
	if hash == cur.ParamsHash {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	op := a.newOp(r, store.OpUpdate, identity)
	op.Payload, op.ParamsHash = canon, hash
	cur.History = pushHistory(cur.History, cur.Op)
	cur.Op = op
	if _, err := a.cfg.Store.PutInstance(ctx, cur); err != nil {
		a.storeWriteFailed(w, r, err, "instance "+id)
		return
	}
	a.hosts.Reserve(cur.SpecName, id, tenant, d.EdgeRoute.Spec.Hosts)
	a.log.Info("update accepted", "instance", id, "spec", cur.SpecName, "op", op.ID, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id})
	writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
}

// checkQueryIDs answers 400 unless service_id and plan_id query
// parameters are present and this broker's.
func checkQueryIDs(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if q.Get("plan_id") == "" && q.Get("service_id") != "" {
		writeError(w, http.StatusBadRequest, errBadRequest, "the plan_id query parameter is required")
		return false
	}
	return checkIDs(w, q.Get("service_id"), q.Get("plan_id"), true)
}

func (a *API) deprovision(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	identity, ok := asyncRequest(w, r)
	if !ok {
		return
	}
	if !checkQueryIDs(w, r) {
		return
	}
	ctx := r.Context()
	cur, err := a.cfg.Store.GetInstance(ctx, id)
	if a.answeredDelete(w, r, "instance "+id, cur.Deleted, cur.Op, err, store.OpDeprovision) {
		return
	}
	if bid, err := a.bindingBusy(r, id); err != nil {
		a.internal(w, r, err)
		return
	} else if bid != "" {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("binding %s of instance %s has an operation in progress", bid, id))
		return
	}
	op := a.newOp(r, store.OpDeprovision, identity)
	cur.History = pushHistory(cur.History, cur.Op)
	cur.Op = op
	if _, err := a.cfg.Store.PutInstance(ctx, cur); err != nil {
		a.storeWriteFailed(w, r, err, "instance "+id)
		return
	}
	a.log.Info("deprovision accepted", "instance", id, "spec", cur.SpecName, "op", op.ID, "originating_identity", identity)
	a.enqueue(ctx, queue.Task{OpID: op.ID, InstanceID: id})
	writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
}

type instanceBody struct {
	ServiceID  string          `json:"service_id"`
	PlanID     string          `json:"plan_id"`
	Parameters json.RawMessage `json:"parameters"`
	Metadata   map[string]any  `json:"metadata,omitempty"`
}

func (a *API) getInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cur, err := a.cfg.Store.GetInstance(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (cur.Deleted || len(cur.Spec) == 0)) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("instance %s does not exist (or its provisioning has not succeeded)", id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if cur.Op.InProgress() && cur.Op.Kind == store.OpUpdate {
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("instance %s is being updated", id))
		return
	}
	writeJSON(w, http.StatusOK, instanceBody{ServiceID: cur.ServiceID, PlanID: cur.PlanID, Parameters: cur.Spec,
		Metadata: map[string]any{"labels": map[string]string{"gatehouse.spec": cur.SpecName}}})
}

type lastOperationBody struct {
	State            store.OpState `json:"state"`
	Description      string        `json:"description,omitempty"`
	InstanceUsable   *bool         `json:"instance_usable,omitempty"`
	UpdateRepeatable *bool         `json:"update_repeatable,omitempty"`
}

func boolp(b bool) *bool { return &b }

// opFor picks the operation the request asks about (the current one, or
// one from the history); ok false when the id names none of them.
func opFor(op store.Operation, history []store.OpRecord, want string) (store.Operation, bool) {
	if want == "" || want == op.ID {
		return op, op.ID != ""
	}
	for _, h := range history {
		if h.ID == want {
			return store.Operation{ID: h.ID, Kind: h.Kind, State: h.State}, true
		}
	}
	return store.Operation{}, false
}

func (a *API) writeLastOperation(w http.ResponseWriter, op store.Operation, usable bool) {
	body := lastOperationBody{State: op.State, Description: op.Description}
	switch op.Kind {
	case store.OpUpdate:
		body.InstanceUsable = boolp(usable)
		body.UpdateRepeatable = boolp(true)
	case store.OpDeprovision:
		body.InstanceUsable = boolp(op.State != store.StateSucceeded)
	case store.OpProvision:
		// OSB v2.17 allows instance_usable only for a failed update or
		// deprovision.
	}
	if op.InProgress() {
		w.Header().Set("Retry-After", fmt.Sprint(int(a.cfg.RetryAfter.Round(1e9).Seconds())))
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) instanceLastOperation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cur, err := a.cfg.Store.GetInstance(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("instance %s does not exist", id))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if cur.Deleted {
		writeJSON(w, http.StatusGone, struct{}{})
		return
	}
	op, ok := opFor(cur.Op, cur.History, r.URL.Query().Get("operation"))
	if !ok {
		writeError(w, http.StatusBadRequest, errBadRequest, fmt.Sprintf("instance %s has no operation %q", id, strings.TrimSpace(r.URL.Query().Get("operation"))))
		return
	}
	a.writeLastOperation(w, op, len(cur.Spec) > 0)
}

// answeredDelete answers a DELETE from what the store read of the thing
// (deleted, its current operation, the read's error) when that settles
// it: 410 when it is gone, the running operation when a delete of the
// same kind is already in progress (a repeated DELETE is idempotent), 422
// ConcurrencyError when another operation is. It reports whether it
// answered.
func (a *API) answeredDelete(w http.ResponseWriter, r *http.Request, what string, deleted bool, op store.Operation, err error, kind store.OpKind) bool {
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && deleted):
		writeJSON(w, http.StatusGone, struct{}{})
	case err != nil:
		a.internal(w, r, err)
	case op.InProgress() && op.Kind == kind:
		writeJSON(w, http.StatusAccepted, operationBody{Operation: op.ID})
	case op.InProgress():
		writeError(w, http.StatusUnprocessableEntity, errConcurrency, fmt.Sprintf("%s has a %s operation in progress", what, op.Kind))
	default:
		return false
	}
	return true
}
