package authz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/gatehouse-edge/gatehouse/authn"
	"github.com/gatehouse-edge/gatehouse/contract"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Request is what the engine needs of one HTTP request. Headers has
// lower-case names.
type Request struct {
	RouteID   string // context extension gatehouse.route
	Method    string
	Path      string // without the query
	Query     string // raw query, without '?'
	Host      string
	Headers   map[string]string
	SourceIP  string // client address Envoy reports (no port)
	Principal string // peer URI SAN Envoy reports for mTLS
	RequestID string
}

// Decision values of Metadata.Decision.
const (
	DecisionAllow      = "allow"
	DecisionDeny       = "deny"
	DecisionShadowDeny = "shadow-deny"
)

// Reason codes of a Decision besides authn's Code* values. All reason
// codes form a bounded set, used as a metric label.
const (
	ReasonAllowed       = "allowed"
	ReasonPublic        = "public"
	ReasonNoPolicy      = "no_policy"
	ReasonUnknownRoute  = "unknown_route"
	ReasonRuleDenied    = "rule_denied"
	ReasonNoRuleMatched = "no_rule_matched"
	ReasonRuleError     = "rule_error"
	ReasonInternal      = "internal_error"
)

// Header is one response header.
type Header struct{ Name, Value string }

// Metadata is the ext_authz dynamic metadata of the wire contract
// (namespace envoy.filters.http.ext_authz). Claims holds the claims the
// route's rate limits use, as strings.
type Metadata struct {
	Subject  string
	Provider string
	Kind     string
	APIKeyID string
	Rule     string
	Decision string // allow | deny | shadow-deny
	Claims   map[string]string
}

// Decision is the engine's answer for one Request.
type Decision struct {
	Allow      bool
	Status     int    // 200, 401 or 403
	ReasonCode string // bounded; an authn.Code* or Reason* constant
	Reason     string // for people; never contains a credential
	// On allow: headers to set upstream (overwriting any the client sent),
	// headers and query parameters to remove before it goes upstream.
	HeadersToSet    []Header
	HeadersToRemove []string
	QueryToRemove   []string
	// On deny: the RFC 6750 challenge (401 only), and the JSON body.
	WWWAuthenticate string
	Body            string
	Metadata        Metadata
	// Identity is the authenticated caller, nil when none.
	Identity *authn.Identity
}

// Decide evaluates req. It never returns an error: a failure is a denial.
func (e *Engine) Decide(ctx context.Context, req Request) Decision {
	start := time.Now()
	s := e.snap.Load()
	var d Decision
	var r *route
	switch {
	case s == nil:
		d = deny(403, ReasonNoPolicy, "no authz policy is loaded yet")
	default:
		r = s.routes[req.RouteID]
		if r == nil {
			if req.RouteID == "" {
				d = deny(403, ReasonUnknownRoute, "the request carries no "+contract.ContextRoute)
			} else {
				d = deny(403, ReasonUnknownRoute, "route "+strconv.Quote(req.RouteID)+" has no authz policy")
			}
		} else {
			d = e.decide(ctx, r, &req)
		}
	}
	if !d.Allow && d.Body == "" {
		d.Body = denyBody(d.Status, d.ReasonCode, d.Reason, req.RequestID)
	}
	if d.Allow {
		d.HeadersToRemove = removeReserved(d.HeadersToRemove, d.HeadersToSet, req.Headers)
	}
	e.metrics.observe(r, &d, time.Since(start))
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.LogAttrs(ctx, slog.LevelDebug, "authz decision", slog.Any("request", req), slog.Any("decision", d))
	}
	return d
}

func deny(status int, code, reason string) Decision {
	return Decision{Status: status, ReasonCode: code, Reason: reason, Metadata: Metadata{Decision: DecisionDeny}}
}

func (e *Engine) decide(ctx context.Context, r *route, req *Request) Decision {
	if r.mode == spec.ModePublic {
		// No identity, so no claim header is vouched for: a client's own
		// value for one never reaches the upstream.
		return Decision{Allow: true, Status: 200, ReasonCode: ReasonPublic, Reason: "public route",
			HeadersToRemove: r.forwardHeaders, Metadata: Metadata{Decision: DecisionAllow, Rule: "public"}}
	}
	var (
		chosen *provider
		id     *authn.Identity
		err    error
		// With several JWT providers, a token goes to those whose issuer
		// its (unverified) iss names, in order; none: the first, as before.
		iss      string
		issKnown bool
		firstErr error
		firstP   *provider
	)
	if r.multiJWT {
		if tok, ok := authn.BearerToken(req.Headers["authorization"]); ok {
			iss = authn.UnverifiedIssuer(tok)
			issKnown = iss != "" && slices.ContainsFunc(r.providers, func(p *provider) bool { return p.jwt != nil && p.jwt.Issuer() == iss })
		}
	}
	for i, p := range r.providers {
		var present bool
		switch {
		case p.jwt != nil:
			if issKnown && p.jwt.Issuer() != iss {
				continue
			}
			var tok string
			if tok, present = authn.BearerToken(req.Headers["authorization"]); present {
				id, err = p.jwt.Authenticate(ctx, tok)
				if err != nil && issKnown && slices.ContainsFunc(r.providers[i+1:], func(q *provider) bool { return q.jwt != nil && q.jwt.Issuer() == iss }) {
					// Another provider of this issuer (another audience)
					// may accept it; report the first refusal if none does.
					if firstErr == nil {
						firstErr, firstP = err, p
					}
					continue
				}
			}
		case p.apiKey != nil:
			var key string
			if h := p.apiKey.Header(); h != "" {
				key = req.Headers[h]
			} else {
				key = queryValue(req.Query, p.apiKey.Query())
			}
			if present = key != ""; present {
				id, err = p.apiKey.Authenticate(key)
			}
		case p.mtls != nil:
			if present = req.Principal != ""; present {
				id, err = p.mtls.Authenticate(req.Principal)
			}
		}
		if present {
			chosen = p
			if err != nil && firstErr != nil {
				chosen, err = firstP, firstErr
			}
			break
		}
	}
	var d Decision
	switch {
	case chosen == nil:
		d = deny(401, authn.CodeNoCredentials, "no credentials for any of the route's identity providers")
		d.WWWAuthenticate = r.challenge
	case err != nil:
		var ae *authn.Error
		if !errors.As(err, &ae) {
			ae = &authn.Error{Provider: chosen.name, Code: ReasonInternal, Detail: "authentication failed"}
		}
		d = deny(401, ae.Code, ae.Detail)
		d.Metadata.Provider, d.Metadata.Kind = chosen.name, chosen.kind
		d.WWWAuthenticate = r.challenge + `, error="invalid_token", error_description="` + quoteSafe(ae.Detail) + `"`
	default:
		d = e.rules(ctx, r, req, id)
		d.Identity = id
		d.Metadata.Subject, d.Metadata.Provider, d.Metadata.Kind, d.Metadata.APIKeyID = id.Subject, id.Provider, id.Kind, id.APIKeyID
		if len(r.metadataClaims) > 0 {
			d.Metadata.Claims = make(map[string]string, len(r.metadataClaims))
			for _, c := range r.metadataClaims {
				if v, ok := claimString(id, c); ok {
					d.Metadata.Claims[c] = v
				}
			}
		}
	}
	if !d.Allow && r.mode == spec.ModeShadow {
		d.Allow, d.Status, d.WWWAuthenticate = true, 200, ""
		d.Metadata.Decision = DecisionShadowDeny
	}
	if d.Allow {
		e.upstreamHeaders(&d, chosen, id, r)
	}
	return d
}

func (e *Engine) rules(ctx context.Context, r *route, req *Request, id *authn.Identity) Decision {
	if len(r.rules) == 0 {
		return Decision{Allow: true, Status: 200, ReasonCode: ReasonAllowed, Reason: "authenticated; the route has no rules",
			Metadata: Metadata{Decision: DecisionAllow, Rule: "any-authenticated"}}
	}
	var act *activation
	defer func() {
		if act != nil {
			*act = activation{}
			e.acts.Put(act)
		}
	}()
	for _, ru := range r.rules {
		if !hasScopes(id, ru.scopes) || !hasClaims(id, ru.claims) {
			continue
		}
		if ru.prg != nil {
			if act == nil {
				// Pooled, with a copy of the request, so neither the
				// activation nor the request escapes per decision.
				act = e.acts.Get().(*activation)
				act.req = *req
				act.r.f.r, act.i.f.id = &act.req, id
			}
			// The cost limit bounds the evaluation; no context needed.
			out, _, err := ru.prg.Eval(act)
			if err != nil && ru.allow {
				// An allow rule that cannot be evaluated does not match:
				// that grants nothing a false condition would not.
				if e.log.Enabled(ctx, slog.LevelDebug) {
					e.log.Debug("authz rule error; allow rule skipped", "route", r.id, "rule", ru.name, "error", ru.evalError(err))
				}
				continue
			}
			if err != nil {
				// A deny rule that cannot be evaluated must not fall
				// through to a later allow: fail closed.
				d := deny(403, ReasonRuleError, ru.name+": `when` could not be evaluated")
				d.Metadata.Rule = ru.name
				if e.log.Enabled(ctx, slog.LevelDebug) {
					e.log.Debug("authz rule error", "route", r.id, "rule", ru.name, "error", ru.evalError(err))
				}
				return d
			}
			if out != types.True {
				continue
			}
		}
		if ru.allow {
			return Decision{Allow: true, Status: 200, ReasonCode: ReasonAllowed, Reason: "allowed by " + ru.name,
				Metadata: Metadata{Decision: DecisionAllow, Rule: ru.name}}
		}
		d := deny(403, ReasonRuleDenied, "denied by "+ru.name)
		d.Metadata.Rule = ru.name
		return d
	}
	d := deny(403, ReasonNoRuleMatched, "no rule of the route allows this caller")
	d.Metadata.Rule = "no-match"
	return d
}

func hasScopes(id *authn.Identity, want []string) bool {
	for _, w := range want {
		if !slices.Contains(id.Scopes, w) {
			return false
		}
	}
	return true
}

// hasClaims matches JWT claims (equal, or array contains) or, for API
// keys, labels.
func hasClaims(id *authn.Identity, want []claimMatch) bool {
	for _, w := range want {
		if id.Kind == authn.KindAPIKey {
			if id.Labels[w.name] != w.value {
				return false
			}
			continue
		}
		v, _ := id.Claim(w.name)
		switch v := v.(type) {
		case string:
			if v != w.value {
				return false
			}
		case []any:
			found := false
			for _, x := range v {
				if s, ok := scalarString(x); ok && s == w.value {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		default:
			if s, ok := scalarString(v); !ok || s != w.value {
				return false
			}
		}
	}
	return true
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// claimString is the string form of a claim for metadata and headers:
// scalars as text, anything else as JSON. Values with control characters
// are dropped (they cannot travel in a header).
func claimString(id *authn.Identity, name string) (string, bool) {
	var s string
	switch name {
	case "sub":
		if id.Kind != authn.KindJWT {
			return id.Subject, id.Subject != ""
		}
	}
	v, ok := id.Claim(name)
	if !ok {
		if id.Kind == authn.KindAPIKey {
			l, ok := id.Labels[name]
			return l, ok
		}
		return "", false
	}
	if str, ok := scalarString(v); ok {
		s = str
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

func (e *Engine) upstreamHeaders(d *Decision, p *provider, id *authn.Identity, r *route) {
	if p == nil || id == nil {
		// Shadow mode with bad credentials: still strip headers a client
		// could use to pose as someone.
		d.HeadersToRemove = r.forwardHeaders
		return
	}
	d.QueryToRemove = p.removeQuery
	if len(p.forward) == 0 {
		d.HeadersToRemove = p.remove
		return
	}
	d.HeadersToSet = make([]Header, 0, len(p.forward))
	var remove []string
	for _, f := range p.forward {
		if v, ok := claimString(id, f.claim); ok {
			d.HeadersToSet = append(d.HeadersToSet, Header{Name: f.header, Value: v})
		}
	}
	if len(d.HeadersToSet) == len(p.forward) {
		d.HeadersToRemove = p.removeAllSet
		return
	}
	for _, h := range p.remove {
		set := false
		for _, s := range d.HeadersToSet {
			if s.Name == h {
				set = true
				break
			}
		}
		if !set {
			remove = append(remove, h)
		}
	}
	d.HeadersToRemove = remove
}

// removeReserved adds to remove every x-gatehouse-* header
// (contract.ReservedHeaderPrefix: Envoy's header-mutation filter removes
// them before ext_authz runs; the engine removes any that reach it as well) the client
// sent that the decision does not set itself. remove may be shared by
// many decisions: it is copied before it grows.
func removeReserved(remove []string, set []Header, headers map[string]string) []string {
	var extra []string
	for name := range headers {
		if !strings.HasPrefix(name, contract.ReservedHeaderPrefix) || slices.Contains(remove, name) ||
			slices.ContainsFunc(set, func(h Header) bool { return h.Name == name }) {
			continue
		}
		extra = append(extra, name)
	}
	if len(extra) == 0 {
		return remove
	}
	slices.Sort(extra)
	return append(slices.Clip(remove), extra...)
}

// queryValue returns the first value of name in a raw query.
func queryValue(raw, name string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			return uv
		}
		return ""
	}
	return ""
}

type denyJSON struct {
	Status    int    `json:"status"`
	Error     string `json:"error"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id,omitempty"`
}

func denyBody(status int, code, reason, requestID string) string {
	b, _ := json.Marshal(denyJSON{Status: status, Error: code, Reason: reason, RequestID: requestID})
	return string(b)
}

// LogValue prints the request without credentials: header names only, and
// no query (API keys may travel in it), even when a caller left it on
// Path.
func (r Request) LogValue() slog.Value {
	path, _, _ := strings.Cut(r.Path, "?")
	names := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	return slog.GroupValue(
		slog.String("route", r.RouteID), slog.String("method", r.Method), slog.String("path", path),
		slog.String("host", r.Host), slog.String("source_ip", r.SourceIP), slog.String("principal", r.Principal),
		slog.String("request_id", r.RequestID), slog.Any("header_names", names),
	)
}

// LogValue prints the outcome without header values or claims.
func (d Decision) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("allow", d.Allow), slog.Int("status", d.Status),
		slog.String("reason_code", d.ReasonCode), slog.String("reason", d.Reason),
		slog.String("decision", d.Metadata.Decision), slog.String("rule", d.Metadata.Rule),
		slog.String("provider", d.Metadata.Provider), slog.String("subject", d.Metadata.Subject),
	)
}
