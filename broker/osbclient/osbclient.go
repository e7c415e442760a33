// Package osbclient is a small Open Service Broker client for Gatehouse's
// broker, used by `gatehouse routes` and `gatehouse keys`: provision,
// update, deprovision, bind, unbind and last_operation polling with
// progress callbacks. It must not import the broker's server packages
// other than api (for the catalog ids and wire types).
package osbclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-edge/gatehouse/broker/api"
)

// Client talks to one broker.
type Client struct {
	BaseURL  string // http://127.0.0.1:8080
	Username string
	Password string // never printed
	// Identity, when set, is sent as X-Broker-API-Originating-Identity.
	Identity string
	HTTP     *http.Client
}

// LogValue keeps the password out of logs.
func (c *Client) LogValue() slog.Value {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return slog.GroupValue(slog.String("base_url", c.BaseURL), slog.String("username", c.Username), slog.String("password", pw))
}

// Error is a non-success OSB answer.
type Error struct {
	Method, Path string
	Code         int
	Kind         string // OSB "error" (AsyncRequired, ConcurrencyError, ...)
	Description  string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Code)
	if e.Kind != "" {
		s += " " + e.Kind
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Response is a decoded OSB answer.
type Response struct {
	Code        int
	Operation   string           `json:"operation"`
	State       string           `json:"state"`
	Description string           `json:"description"`
	Credentials *api.Credentials `json:"credentials"`
	Parameters  json.RawMessage  `json:"parameters"`
	RetryAfter  time.Duration
}

func (c *Client) do(ctx context.Context, method, path string, body any, ok ...int) (*Response, error) {
	code, raw, hdr, err := c.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	for _, want := range ok {
		if code == want {
			r := &Response{Code: code}
			if len(bytes.TrimSpace(raw)) > 0 {
				if err := json.Unmarshal(raw, r); err != nil {
					return nil, fmt.Errorf("%s %s: HTTP %d with a body that is not JSON: %w", method, path, code, err)
				}
			}
			if s := hdr.Get("Retry-After"); s != "" {
				if d, err := time.ParseDuration(s + "s"); err == nil {
					r.RetryAfter = d
				}
			}
			return r, nil
		}
	}
	return nil, answerError(method, path, code, raw)
}

func answerError(method, path string, code int, raw []byte) *Error {
	e := &Error{Method: method, Path: path, Code: code}
	var eb struct {
		Error       string `json:"error"`
		Description string `json:"description"`
	}
	if json.Unmarshal(raw, &eb) == nil {
		e.Kind, e.Description = eb.Error, eb.Description
	} else {
		e.Description = strings.TrimSpace(string(raw))
	}
	return e
}

// getJSON GETs one of the broker's own (non-OSB) endpoints into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	code, raw, _, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return answerError(http.MethodGet, path, code, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("GET %s: HTTP 200 with a body that is not the expected JSON: %w", path, err)
	}
	return nil
}

// Routes lists the broker's EdgeRoutes (GET /gatehouse/v1/instances).
func (c *Client) Routes(ctx context.Context) ([]api.RouteSummary, error) {
	var body struct {
		Routes []api.RouteSummary `json:"routes"`
	}
	err := c.getJSON(ctx, "/gatehouse/v1/instances", &body)
	return body.Routes, err
}

// Route is one EdgeRoute's summary, with its live revision.
func (c *Client) Route(ctx context.Context, id string) (api.RouteSummary, error) {
	var s api.RouteSummary
	err := c.getJSON(ctx, "/gatehouse/v1/instances/"+url.PathEscape(id), &s)
	return s, err
}

// Keys lists an EdgeRoute's API keys (never the keys themselves).
func (c *Client) Keys(ctx context.Context, id string) ([]api.KeySummary, error) {
	var body struct {
		Keys []api.KeySummary `json:"keys"`
	}
	err := c.getJSON(ctx, "/gatehouse/v1/instances/"+url.PathEscape(id)+"/bindings", &body)
	return body.Keys, err
}

func (c *Client) send(ctx context.Context, method, path string, body any) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.SetBasicAuth(c.Username, c.Password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("X-Broker-API-Request-Identity", newID())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Identity != "" {
		req.Header.Set("X-Broker-API-Originating-Identity", c.Identity)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return res.StatusCode, raw, res.Header, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func instancePath(id string) string { return "/v2/service_instances/" + url.PathEscape(id) }

func bindingPath(id, bid string) string {
	return instancePath(id) + "/service_bindings/" + url.PathEscape(bid)
}

var idsQuery = "service_id=" + api.ServiceID + "&plan_id=" + api.PlanID

// Provision sends PUT (202 started, 200 already so).
func (c *Client) Provision(ctx context.Context, id string, spec json.RawMessage) (*Response, error) {
	return c.ProvisionIn(ctx, id, spec, "gatehouse-cli", "gatehouse-cli", nil)
}

// ProvisionIn provisions as a platform does for one of its tenants: with
// its organization_guid and space_guid and, when osbContext is not nil,
// the OSB context object the broker takes the instance's tenant from
// (Cloud Foundry organization_guid/space_guid, Kubernetes
// clusterid/namespace, or a platform-neutral tenant).
func (c *Client) ProvisionIn(ctx context.Context, id string, spec json.RawMessage, org, space string, osbContext map[string]any) (*Response, error) {
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": spec,
		"organization_guid": org, "space_guid": space}
	if osbContext != nil {
		body["context"] = osbContext
	}
	return c.do(ctx, "PUT", instancePath(id)+"?accepts_incomplete=true", body, 200, 201, 202)
}

// Update sends PATCH.
func (c *Client) Update(ctx context.Context, id string, spec json.RawMessage) (*Response, error) {
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID, "parameters": spec}
	return c.do(ctx, "PATCH", instancePath(id)+"?accepts_incomplete=true", body, 200, 202)
}

// Deprovision sends DELETE (410 means already gone).
func (c *Client) Deprovision(ctx context.Context, id string) (*Response, error) {
	return c.do(ctx, "DELETE", instancePath(id)+"?accepts_incomplete=true&"+idsQuery, nil, 200, 202, 410)
}

// Instance fetches the instance (its parameters are the spec).
func (c *Client) Instance(ctx context.Context, id string) (*Response, error) {
	return c.do(ctx, "GET", instancePath(id), nil, 200)
}

// LastOperation polls once; Code 410 means the instance is gone.
func (c *Client) LastOperation(ctx context.Context, id, op string) (*Response, error) {
	q := "?" + idsQuery
	if op != "" {
		q += "&operation=" + url.QueryEscape(op)
	}
	return c.do(ctx, "GET", instancePath(id)+"/last_operation"+q, nil, 200, 410)
}

// Bind creates a binding asynchronously: an API key for provider. A 201
// carries the key; after a 202 poll BindingLastOperation, then Binding
// returns the key (once).
func (c *Client) Bind(ctx context.Context, id, bid, provider string, labels map[string]string) (*Response, error) {
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID,
		"parameters": api.BindParameters{Provider: provider, Labels: labels}}
	return c.do(ctx, "PUT", bindingPath(id, bid)+"?accepts_incomplete=true", body, 200, 201, 202)
}

// BindSync creates a binding the way platforms without asynchronous
// bindings do (no accepts_incomplete): the answer (201) always carries
// the key; BindingLastOperation tells when it is live.
func (c *Client) BindSync(ctx context.Context, id, bid, provider string, labels map[string]string) (*Response, error) {
	body := map[string]any{"service_id": api.ServiceID, "plan_id": api.PlanID,
		"parameters": api.BindParameters{Provider: provider, Labels: labels}}
	return c.do(ctx, "PUT", bindingPath(id, bid), body, 200, 201)
}

// Binding fetches a binding; its credentials carry the key the first time
// after an asynchronous bind succeeded.
func (c *Client) Binding(ctx context.Context, id, bid string) (*Response, error) {
	return c.do(ctx, "GET", bindingPath(id, bid), nil, 200)
}

// Unbind revokes a binding's key.
func (c *Client) Unbind(ctx context.Context, id, bid string) (*Response, error) {
	return c.do(ctx, "DELETE", bindingPath(id, bid)+"?accepts_incomplete=true&"+idsQuery, nil, 200, 202, 410)
}

// BindingLastOperation polls a binding once; 410 means it is gone.
func (c *Client) BindingLastOperation(ctx context.Context, id, bid, op string) (*Response, error) {
	q := "?" + idsQuery
	if op != "" {
		q += "&operation=" + url.QueryEscape(op)
	}
	return c.do(ctx, "GET", bindingPath(id, bid)+"/last_operation"+q, nil, 200, 410)
}

// Wait polls until the operation leaves "in progress" (or the resource
// is gone), calling progress whenever the description changes. It is
// bounded by ctx and by timeout.
func Wait(ctx context.Context, timeout time.Duration, poll func(context.Context) (*Response, error), progress func(*Response)) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	delay := 100 * time.Millisecond
	for {
		r, err := poll(ctx)
		if err != nil {
			return nil, err
		}
		if r.Code == http.StatusGone || r.State != "in progress" {
			return r, nil
		}
		if progress != nil && r.Description != last {
			progress(r)
			last = r.Description
		}
		if r.RetryAfter > 0 && r.RetryAfter < delay {
			delay = r.RetryAfter
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("still in progress after %s: %s", timeout, r.Description)
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}
