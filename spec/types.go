package spec

import (
	"encoding/json"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion and Kind are the only accepted values of the document header.
const (
	APIVersion = "gatehouse/v1"
	Kind       = "EdgeRoute"
)

// Defaults that ROUTE_SPEC.md promises. Consumers use the accessor methods
// (Route.EffectiveTimeout, ...) instead of these constants where one exists.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultRouteTimeout   = 15 * time.Second
	DefaultClockSkew      = 30 * time.Second
	MaxClockSkew          = 5 * time.Minute
)

// DefaultJWTAlgorithms are used when a JWT provider lists none.
var defaultJWTAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// Auth modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
	ModePublic  = "public"
)

// Rate-limit algorithms and scopes.
const (
	AlgorithmFixedWindow   = "fixed-window"
	AlgorithmSlidingWindow = "sliding-window"
	AlgorithmTokenBucket   = "token-bucket"
	ScopeShared            = "shared"
	ScopeLocal             = "local"
)

// EdgeRoute is one service's edge policy: the whole user-facing contract.
type EdgeRoute struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion"`
	Kind       string   `json:"kind" yaml:"kind"`
	Metadata   Metadata `json:"metadata" yaml:"metadata"`
	Spec       Spec     `json:"spec" yaml:"spec"`
}

// Metadata names and owns a spec.
type Metadata struct {
	Name   string            `json:"name" yaml:"name"`
	Team   string            `json:"team" yaml:"team"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// Spec is the body of an EdgeRoute.
type Spec struct {
	Hosts      []string   `json:"hosts" yaml:"hosts"`
	NodeGroups []string   `json:"nodeGroups,omitempty" yaml:"nodeGroups,omitempty"`
	Upstreams  []Upstream `json:"upstreams" yaml:"upstreams"`
	Identity   *Identity  `json:"identity,omitempty" yaml:"identity,omitempty"`
	Routes     []Route    `json:"routes" yaml:"routes"`
	// TLS, when set, serves the hosts over HTTPS too (Gatehouse extension).
	TLS *ListenerTLS `json:"tls,omitempty" yaml:"tls,omitempty"`
}

// ListenerTLS names the certificate the edge presents for the spec's hosts:
// the control plane's cert dir holds it as NAME.crt and NAME.key.
type ListenerTLS struct {
	Certificate string `json:"certificate" yaml:"certificate"`
}

// Upstream is a backend cluster: static endpoints or one DNS name.
type Upstream struct {
	Name           string       `json:"name" yaml:"name"`
	Endpoints      []string     `json:"endpoints,omitempty" yaml:"endpoints,omitempty"`
	DNS            string       `json:"dns,omitempty" yaml:"dns,omitempty"`
	TLS            *UpstreamTLS `json:"tls,omitempty" yaml:"tls,omitempty"`
	ConnectTimeout *Duration    `json:"connectTimeout,omitempty" yaml:"connectTimeout,omitempty"`
}

// EffectiveConnectTimeout is ConnectTimeout or its default.
func (u Upstream) EffectiveConnectTimeout() time.Duration {
	if u.ConnectTimeout == nil {
		return DefaultConnectTimeout
	}
	return u.ConnectTimeout.Duration
}

// UpstreamTLS turns on TLS towards the upstream.
type UpstreamTLS struct {
	SNI string `json:"sni,omitempty" yaml:"sni,omitempty"`
}

// Identity lists the ways a caller can prove who it is.
type Identity struct {
	JWT     []JWTProvider    `json:"jwt,omitempty" yaml:"jwt,omitempty"`
	APIKeys []APIKeyProvider `json:"apiKeys,omitempty" yaml:"apiKeys,omitempty"`
	MTLS    []MTLSProvider   `json:"mtls,omitempty" yaml:"mtls,omitempty"`
}

// ProviderKind reports the kind ("jwt", "apiKey", "mtls") of the named
// provider, or "" when the spec declares no such provider.
func (id *Identity) ProviderKind(name string) string {
	if id == nil {
		return ""
	}
	for _, p := range id.JWT {
		if p.Name == name {
			return "jwt"
		}
	}
	for _, p := range id.APIKeys {
		if p.Name == name {
			return "apiKey"
		}
	}
	for _, p := range id.MTLS {
		if p.Name == name {
			return "mtls"
		}
	}
	return ""
}

// JWTProvider validates bearer JWTs from one issuer.
type JWTProvider struct {
	Name          string            `json:"name" yaml:"name"`
	Issuer        string            `json:"issuer" yaml:"issuer"`
	Audiences     []string          `json:"audiences" yaml:"audiences"`
	JWKSURI       string            `json:"jwksUri,omitempty" yaml:"jwksUri,omitempty"`
	JWKS          InlineJWKS        `json:"jwks,omitempty" yaml:"jwks,omitempty"`
	Algorithms    []string          `json:"algorithms,omitempty" yaml:"algorithms,omitempty"`
	ClockSkew     *Duration         `json:"clockSkew,omitempty" yaml:"clockSkew,omitempty"`
	ForwardClaims map[string]string `json:"forwardClaims,omitempty" yaml:"forwardClaims,omitempty"`
}

// EffectiveAlgorithms is Algorithms or the default set.
func (p JWTProvider) EffectiveAlgorithms() []string {
	if len(p.Algorithms) == 0 {
		return append([]string(nil), defaultJWTAlgorithms...)
	}
	return p.Algorithms
}

// EffectiveClockSkew is ClockSkew or its default.
func (p JWTProvider) EffectiveClockSkew() time.Duration {
	if p.ClockSkew == nil {
		return DefaultClockSkew
	}
	return p.ClockSkew.Duration
}

// APIKeyProvider accepts API keys from one header or query parameter.
type APIKeyProvider struct {
	Name   string   `json:"name" yaml:"name"`
	Header string   `json:"header,omitempty" yaml:"header,omitempty"`
	Query  string   `json:"query,omitempty" yaml:"query,omitempty"`
	Keys   []APIKey `json:"keys,omitempty" yaml:"keys,omitempty"`
	// BindLabels lists the labels an OSB binding may give the keys it
	// issues for this provider: label key -> allowed values. Without it a
	// binding may set no labels at all (labels are authorization claims,
	// so the spec's owner decides them, not the binder).
	BindLabels map[string][]string `json:"bindLabels,omitempty" yaml:"bindLabels,omitempty"`
}

// APIKey is a key known only by the SHA-256 of its value.
type APIKey struct {
	ID     string            `json:"id" yaml:"id"`
	SHA256 string            `json:"sha256" yaml:"sha256"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// MTLSProvider accepts peers whose URI SAN matches one of Principals (globs).
type MTLSProvider struct {
	Name       string   `json:"name" yaml:"name"`
	Principals []string `json:"principals" yaml:"principals"`
}

// Route is one matched path of a spec; routes are matched in order.
type Route struct {
	Name          string      `json:"name" yaml:"name"`
	Match         Match       `json:"match" yaml:"match"`
	Upstream      string      `json:"upstream" yaml:"upstream"`
	Timeout       *Duration   `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	RewritePrefix string      `json:"rewritePrefix,omitempty" yaml:"rewritePrefix,omitempty"`
	Auth          *Auth       `json:"auth,omitempty" yaml:"auth,omitempty"`
	RateLimits    []RateLimit `json:"rateLimits,omitempty" yaml:"rateLimits,omitempty"`
	AccessLog     *AccessLog  `json:"accessLog,omitempty" yaml:"accessLog,omitempty"`
}

// EffectiveTimeout is Timeout or its default.
func (r Route) EffectiveTimeout() time.Duration {
	if r.Timeout == nil {
		return DefaultRouteTimeout
	}
	return r.Timeout.Duration
}

// AuthMode is the effective auth mode: public when Auth is absent, enforce
// when Auth.Mode is empty.
func (r Route) AuthMode() string {
	if r.Auth == nil {
		return ModePublic
	}
	if r.Auth.Mode == "" {
		return ModeEnforce
	}
	return r.Auth.Mode
}

// RouteID is the platform-wide id of a route: "<spec>/<route>".
func RouteID(specName, routeName string) string { return specName + "/" + routeName }

// Match selects requests for a route. Exactly one of Path, PathPrefix and
// PathRegex is set.
type Match struct {
	Path       string        `json:"path,omitempty" yaml:"path,omitempty"`
	PathPrefix string        `json:"pathPrefix,omitempty" yaml:"pathPrefix,omitempty"`
	PathRegex  string        `json:"pathRegex,omitempty" yaml:"pathRegex,omitempty"`
	Methods    []string      `json:"methods,omitempty" yaml:"methods,omitempty"`
	Headers    []HeaderMatch `json:"headers,omitempty" yaml:"headers,omitempty"`
}

// HeaderMatch matches one request header. Exactly one of Exact, Prefix,
// Regex and Present is set.
type HeaderMatch struct {
	Name    string `json:"name" yaml:"name"`
	Exact   string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty" yaml:"regex,omitempty"`
	Present *bool  `json:"present,omitempty" yaml:"present,omitempty"`
}

// Auth is a route's authentication and authorization policy.
type Auth struct {
	Mode  string   `json:"mode,omitempty" yaml:"mode,omitempty"`
	AnyOf []string `json:"anyOf,omitempty" yaml:"anyOf,omitempty"`
	Rules []Rule   `json:"rules,omitempty" yaml:"rules,omitempty"`
}

// Rule allows or denies when all of its conditions hold. The first matching
// rule decides.
type Rule struct {
	Allow  bool              `json:"allow" yaml:"allow"`
	Scopes []string          `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	Claims map[string]string `json:"claims,omitempty" yaml:"claims,omitempty"`
	When   string            `json:"when,omitempty" yaml:"when,omitempty"`
}

// RateLimit is one limit of a route; every limit is checked.
type RateLimit struct {
	Name      string   `json:"name" yaml:"name"`
	By        []string `json:"by" yaml:"by"`
	Limit     string   `json:"limit" yaml:"limit"`
	Algorithm string   `json:"algorithm,omitempty" yaml:"algorithm,omitempty"`
	Burst     uint32   `json:"burst,omitempty" yaml:"burst,omitempty"`
	Scope     string   `json:"scope,omitempty" yaml:"scope,omitempty"`
	Shadow    bool     `json:"shadow,omitempty" yaml:"shadow,omitempty"`
	// OnFailure (allow|deny) overrides the sidecar's failure mode for
	// this limit; see limit.go.
	OnFailure string `json:"onFailure,omitempty" yaml:"onFailure,omitempty"`
}

// EffectiveAlgorithm is Algorithm or fixed-window.
func (l RateLimit) EffectiveAlgorithm() string {
	if l.Algorithm == "" {
		return AlgorithmFixedWindow
	}
	return l.Algorithm
}

// EffectiveScope is Scope or shared.
func (l RateLimit) EffectiveScope() string {
	if l.Scope == "" {
		return ScopeShared
	}
	return l.Scope
}

// AccessLog is a route's access-log policy.
type AccessLog struct {
	Headers    []string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Redact     []string `json:"redact,omitempty" yaml:"redact,omitempty"`
	SampleRate *float64 `json:"sampleRate,omitempty" yaml:"sampleRate,omitempty"`
}

// EffectiveSampleRate is SampleRate or 1.
func (a *AccessLog) EffectiveSampleRate() float64 {
	if a == nil || a.SampleRate == nil {
		return 1
	}
	return *a.SampleRate
}

// Duration is a time.Duration written as a Go duration string ("2s", "1m30s").
type Duration struct{ time.Duration }

// MarshalJSON writes the canonical duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"2s\"")
	}
	return d.parse(s)
}

// MarshalYAML writes the canonical duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "duration must be a string such as \"2s\"")
	}
	if err := d.parse(n.Value); err != nil {
		return typeError(n, err.Error())
	}
	return nil
}

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as \"2s\" or \"1m30s\"", s)
	}
	d.Duration = v
	return nil
}

// typeError reports a field error in the form yaml.v3 collects (and keeps
// decoding after), so one bad value does not hide the rest of the document.
func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// InlineJWKS is a JWKS document given inline, either as a JSON string or as
// a YAML/JSON object. It is kept as compact JSON text.
type InlineJWKS string

// UnmarshalYAML accepts a string or a mapping.
func (j *InlineJWKS) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*j = InlineJWKS(n.Value)
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return typeError(n, "inline jwks: "+err.Error())
	}
	b, err := json.Marshal(v)
	if err != nil {
		return typeError(n, "inline jwks is not representable as JSON: "+err.Error())
	}
	*j = InlineJWKS(b)
	return nil
}

// UnmarshalJSON accepts a string or an object.
func (j *InlineJWKS) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*j = InlineJWKS(s)
		return nil
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("jwks must be a JWKS object or a JSON string")
	}
	c, _ := json.Marshal(v)
	*j = InlineJWKS(c)
	return nil
}
