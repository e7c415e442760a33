package accesslog

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse-edge/gatehouse/spec"
)

// SpecSettings is the access-log part of one compiled EdgeRoute: what the
// control plane ships to accesslog sidecars (contract.AccessLogSettingType,
// named contract.AccessLogPrefix + Spec) and what it uses to set Envoy's
// ALS additional_request_headers_to_log. It is plain JSON.
type SpecSettings struct {
	Spec   string                   `json:"spec"`
	Routes map[string]RouteSettings `json:"routes"` // by route id "<spec>/<route>"
}

// RouteSettings is the access-log policy of one route.
type RouteSettings struct {
	// Headers are the request headers to keep (lower case). Envoy must be
	// told to log them (additional_request_headers_to_log).
	Headers []string `json:"headers,omitempty"`
	// Redact are headers masked on top of DefaultRedactHeaders: the spec's
	// accessLog.redact plus the headers its API-key providers read.
	Redact []string `json:"redact,omitempty"`
	// RedactQuery are query parameters masked on top of
	// DefaultRedactQuery: the query parameters its API-key providers read.
	RedactQuery []string `json:"redactQuery,omitempty"`
	// SampleRate in (0, 1]: the share of allowed requests kept. Denied
	// requests are always kept.
	SampleRate float64 `json:"sampleRate"`
}

// DefaultRedactHeaders are masked on every route, whatever the spec says.
var DefaultRedactHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}

// DefaultRedactQuery are query parameter names masked on every route.
var DefaultRedactQuery = []string{
	"token", "access_token", "id_token", "refresh_token", "api_key", "apikey",
	"api-key", "key", "password", "passwd", "pwd", "secret", "client_secret",
	"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
	"code", "auth", "session", "sessionid", "sid", "jsessionid", "phpsessid", "jwt",
}

// Compile derives the access-log settings of one spec. It is pure: the
// same spec always gives the same settings.
func Compile(r *spec.EdgeRoute) (*SpecSettings, error) {
	if r == nil {
		return nil, fmt.Errorf("accesslog: compile: nil spec")
	}
	name := r.Metadata.Name
	if name == "" {
		return nil, fmt.Errorf("accesslog: compile: spec has no metadata.name")
	}
	var keyHeaders, keyQuery []string
	if r.Spec.Identity != nil {
		for _, p := range r.Spec.Identity.APIKeys {
			if p.Header != "" {
				keyHeaders = append(keyHeaders, strings.ToLower(p.Header))
			}
			if p.Query != "" {
				keyQuery = append(keyQuery, strings.ToLower(p.Query))
			}
		}
	}
	out := &SpecSettings{Spec: name, Routes: make(map[string]RouteSettings, len(r.Spec.Routes))}
	for i, rt := range r.Spec.Routes {
		id := spec.RouteID(name, rt.Name)
		if _, dup := out.Routes[id]; dup {
			return nil, fmt.Errorf("accesslog: compile %s: spec.routes[%d]: duplicate route name %q", name, i, rt.Name)
		}
		rs := RouteSettings{SampleRate: rt.AccessLog.EffectiveSampleRate()}
		if rs.SampleRate <= 0 || rs.SampleRate > 1 {
			return nil, fmt.Errorf("accesslog: compile %s: spec.routes[%d].accessLog.sampleRate: %v is not in (0, 1]", name, i, rs.SampleRate)
		}
		redact := slices.Clone(keyHeaders)
		if rt.AccessLog != nil {
			for _, h := range rt.AccessLog.Headers {
				rs.Headers = append(rs.Headers, strings.ToLower(h))
			}
			for _, h := range rt.AccessLog.Redact {
				redact = append(redact, strings.ToLower(h))
			}
		}
		rs.Headers = sortedUnique(rs.Headers)
		rs.Redact = sortedUnique(redact)
		rs.RedactQuery = sortedUnique(slices.Clone(keyQuery))
		out.Routes[id] = rs
	}
	return out, nil
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}
