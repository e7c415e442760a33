package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/store"
)

// Gatehouse's own read-only listing endpoints, beside the OSB API and
// behind the same basic auth: what `gatehouse routes list|status` and
// `gatehouse keys list` show. They never carry a key or its hash.

// RouteSummary is one EdgeRoute (service instance) as a product team sees it.
type RouteSummary struct {
	ID       string   `json:"id"`
	SpecName string   `json:"spec_name"`
	Hosts    []string `json:"hosts"`
	// State is the last operation's state (in progress, succeeded,
	// failed), or "deleted".
	State     string `json:"state"`
	Operation string `json:"operation,omitempty"` // provision, update, deprovision
	// LiveRevision is the store revision the control plane last reported
	// published for this route (0: none reported yet, or its last report
	// was a rejection, then in LastError, while it keeps serving the last
	// good revision).
	LiveRevision int64     `json:"live_revision"`
	PublishedAt  time.Time `json:"published_at,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// KeySummary is one API key (binding): never the key or its hash.
type KeySummary struct {
	ID       string            `json:"id"`
	KeyID    string            `json:"key_id"`
	Provider string            `json:"provider"`
	Labels   map[string]string `json:"labels,omitempty"`
	State    string            `json:"state"`
	Created  time.Time         `json:"created"`
}

func (a *API) listRoutes() {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request)) {
		a.mux.Handle(pattern, a.instrument(pattern, http.HandlerFunc(f)))
	}
	h("GET /gatehouse/v1/instances", a.listInstances)
	h("GET /gatehouse/v1/instances/{id}", a.instanceSummary)
	h("GET /gatehouse/v1/instances/{id}/bindings", a.listBindings)
}

// listInstances lists the routes in the route store (every live spec).
func (a *API) listInstances(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, specs, err := a.cfg.Store.Snapshot(ctx)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := []RouteSummary{}
	for _, sp := range specs {
		cur, err := a.cfg.Store.GetInstance(ctx, sp.InstanceID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			a.internal(w, r, err)
			return
		}
		s, err := a.summary(r, cur)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"routes": out})
}

func (a *API) instanceSummary(w http.ResponseWriter, r *http.Request) {
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
	s, err := a.summary(r, cur)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (a *API) summary(r *http.Request, cur store.Instance) (RouteSummary, error) {
	s := RouteSummary{ID: cur.ID, SpecName: cur.SpecName, State: string(cur.Op.State), Operation: string(cur.Op.Kind), Hosts: []string{}}
	if cur.Deleted {
		s.State = "deleted"
	}
	if cur.Op.State == store.StateFailed {
		s.LastError = cur.Op.Description
	}
	body := cur.Spec
	if len(body) == 0 {
		body = cur.Op.Payload
	}
	var sp struct {
		Spec struct {
			Hosts []string `json:"hosts"`
		} `json:"spec"`
	}
	if json.Unmarshal(body, &sp) == nil && sp.Spec.Hosts != nil {
		s.Hosts = sp.Spec.Hosts
	}
	if cur.SpecName == "" {
		return s, nil
	}
	p, err := a.cfg.Store.GetPublication(r.Context(), cur.SpecName)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return s, err
	case p.Error == "":
		s.LiveRevision, s.PublishedAt = p.Revision, p.ReportedAt
	case s.LastError == "":
		s.LastError = p.Error
	}
	return s, nil
}

// listBindings lists an instance's keys: id, provider, labels, created.
func (a *API) listBindings(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx := r.Context()
	if _, err := a.cfg.Store.GetInstance(ctx, id); errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, errNotFound, fmt.Sprintf("instance %s does not exist", id))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	bs, err := a.cfg.Store.ListBindings(ctx, id)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := []KeySummary{}
	for _, b := range bs {
		if b.Deleted {
			continue
		}
		k := KeySummary{ID: b.ID, KeyID: b.KeyID, Provider: b.Provider, Labels: b.Labels, State: string(b.Op.State), Created: b.Op.CreatedAt}
		if b.Op.Kind == store.OpUnbind && b.Op.State == store.StateInProgress {
			k.State = "revoking"
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}
